"""Command-line entry point: `train` goes to Hydra, the other subcommands to argparse."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from ganctl.errors import ConfigError, GanctlError, Interrupted, StorageError

USAGE = """\
usage: ganctl <command> [args]

commands:
  train        train a GAN from Hydra configs    ganctl train +experiment=mnist_bce
  sample       draw samples from a checkpoint    ganctl sample outputs/.../checkpoints/last.pt -o s.png
  interpolate  walk the latent space             ganctl interpolate RUN_DIR -o walk.gif
  eval         score samples against real data   ganctl eval RUN_DIR
  report       summarise a sweep                 ganctl report multirun/DATE/TIME

`ganctl train --help` lists the config groups and options; `ganctl COMMAND --help` the others.
"""

GROUPS = ("dataset", "model", "loss", "optim", "trainer", "experiment", "hparams_search")


def conf_dir() -> Path:
    """Configs of an installed wheel (ganctl/conf), else of a source checkout (<repo>/conf)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise RuntimeError(f"ganctl's conf/ folder is missing next to {here}; reinstall ganctl")


def register_schema() -> None:
    """The typed schema as Hydra's `schema` config, which conf/train.yaml lists first."""
    from hydra.core.config_store import ConfigStore

    from ganctl.config import RunConfig

    ConfigStore.instance().store(name="schema", node=RunConfig)


def fail(err: GanctlError) -> None:
    for line in err.lines:
        print(f"ganctl: {err.prefix}{line}", file=sys.stderr)
    sys.exit(err.exit_code)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def _split_override(arg: str) -> tuple[str, str] | None:
    if "=" not in arg or arg.startswith("-"):
        return None
    key, value = arg.split("=", 1)
    return key.lstrip("+~"), value


def check_group_options(overrides: Sequence[str]) -> None:
    """`loss=foo` -> one line naming the value and the options; also for each value of a sweep."""
    problems = []
    for arg in overrides:
        split = _split_override(arg)
        if split is None or split[0] not in GROUPS:
            continue
        key, value = split
        if any(tok in value for tok in ("(", "${")):
            continue  # glob(...), range(...), interpolations: Hydra expands these
        known = options(key)
        for choice in value.split(","):
            if choice.strip() not in known:
                problems.append(f"{key}={choice.strip()!r} is not a known option; accepted: {', '.join(known)}")
    if problems:
        raise ConfigError(*problems)


def _hydra_message(exc: BaseException) -> str:
    """One line from Hydra/OmegaConf's multi-line errors: the key and the first real reason."""
    texts = []
    while exc is not None:
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    lines = [ln.strip() for t in texts for ln in t.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("full_key", "object_type", "reference_type",
                                                     "Set the environment", "To append"))]
    full_key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key")), None)
    msg = "; ".join(dict.fromkeys(keep[:2]))
    return f"{full_key}: {msg}" if full_key and full_key not in msg else msg


def compose_run_config(overrides: Sequence[str] = ()):
    """The typed RunConfig that `ganctl train OVERRIDES` would run (for tests and benchmarks too)."""
    from hydra import compose, initialize_config_dir

    from ganctl.config import to_run_config

    register_schema()
    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name="train"):
        return to_run_config(compose("train", overrides=list(overrides)))


def check_output_folder(overrides: Sequence[str]) -> None:
    """The run folder can be created: its nearest existing ancestor is a writable folder."""
    import os

    target = next((a.split("=", 1)[1] for a in overrides if a.startswith("hydra.run.dir=")), "outputs")
    probe = Path(target).absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise StorageError(f"cannot create the run folder {target}: {probe} is not a writable folder; "
                           "accepted: hydra.run.dir=DIR under a writable folder")


def prevalidate(overrides: list[str]) -> None:
    """Compose and check the whole config before Hydra creates a run folder."""
    from omegaconf.errors import OmegaConfBaseException

    from ganctl.training.validate import check_data, training_device, validate

    try:
        typed = compose_run_config(overrides)
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        raise ConfigError(_hydra_message(exc)) from None
    except Exception as exc:  # Hydra's composition errors share no public base class
        if type(exc).__module__.startswith(("hydra", "omegaconf")):
            raise ConfigError(_hydra_message(exc)) from None
        raise
    validate(typed)
    training_device(typed)
    check_output_folder(overrides)
    check_data(typed)


def resume_config(ckpt: dict, overrides: Sequence[str], composed=None):
    """The config to resume with, and the keys that differ from the checkpoint's.

    Plain key=value overrides apply on top of the checkpoint's own config. A command line that
    selects config groups (the original command with resume= appended, as a requeued cluster
    job runs it) is composed in full instead.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from ganctl.config import RunConfig, to_dict, to_run_config

    base = to_run_config(ckpt["config"])
    parsed = [o for o in OverridesParser.create().parse_overrides(list(overrides))
              if o.key_or_group != "resume" and not o.key_or_group.startswith("hydra")]
    if any(o.is_sweep_override() for o in parsed):
        raise ConfigError("resume=... runs one job; sweep values (a,b or range()) are not accepted with it")
    if any(o.key_or_group in GROUPS for o in parsed):
        # Inside a Hydra job the config is already composed from this very command line.
        cfg: RunConfig = composed if composed is not None else compose_run_config([o.input_line for o in parsed])
    else:
        node = OmegaConf.structured(base)
        for o in parsed:
            OmegaConf.update(node, o.key_or_group, o.value(), merge=True)
        cfg = OmegaConf.to_object(node)  # type: ignore[assignment]
    cfg.resume = None
    before, after = _flatten(to_dict(base)), _flatten(to_dict(cfg))
    changed = [f"{k}: {before.get(k)!r} -> {after[k]!r}" for k in after if after[k] != before.get(k)]
    return cfg, changed


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _resume_target(overrides: Sequence[str]) -> str | None:
    for arg in overrides:
        split = _split_override(arg)
        if split and split[0] == "resume" and split[1] not in ("", "null"):
            return split[1]
    return None


def prepare_resume(target: str, overrides: list[str], args: list[str]) -> list[str]:
    """Check a resume before Hydra starts; point Hydra at the checkpoint's own run folder."""
    from ganctl.training import checkpoint
    from ganctl.training.validate import check_data, training_device, validate

    path = checkpoint.resolve_path(target)
    ckpt = checkpoint.load(path)
    cfg, changed = resume_config(ckpt, overrides)
    validate(cfg)
    training_device(cfg)
    check_data(cfg)
    run_dir = path.resolve().parent.parent
    print(f"ganctl: resuming {run_dir} from step {ckpt['step']}"
          + (f"; changed: {', '.join(changed)}" if changed else " with its own config"))
    extra = [] if any(a.startswith("hydra.run.dir=") for a in args) else [f"hydra.run.dir={run_dir}"]
    # Keep the first run's .hydra/ as it was; the resumed job's Hydra files go beside it.
    return [*args, *extra, f"hydra.output_subdir=.hydra/resume_step_{ckpt['step']}"]


def _train_task(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ganctl import train
    from ganctl.config import to_run_config
    from ganctl.training import checkpoint

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if "optuna" in str(hc.sweeper.get("_target_", "")).lower() and cfg.trainer.eval_every is None:
        # Every trial would return nothing to minimise: stop the whole study before its first step.
        fail(ConfigError("hydra/sweeper=optuna minimises the evaluation metric, but trainer.eval_every=null; "
                         "accepted: trainer.eval_every=K (a multiple of trainer.log_every), as "
                         "conf/hparams_search/*.yaml set it"))
    try:
        target = _resume_target(hc.overrides.task)
        if target == "auto":  # a requeued cluster job: continue this job folder's run if it has one
            target = str(run_dir) if (run_dir / "checkpoints" / "last.pt").is_file() else None
        if target is not None:
            ckpt = checkpoint.load(target)
            typed, _ = resume_config(ckpt, hc.overrides.task, composed=to_run_config(cfg))
            summary = train.run(typed, run_dir, resume=ckpt)
        else:
            summary = train.run(to_run_config(cfg), run_dir)
    except (GanctlError, OSError) as exc:
        err = exc if isinstance(exc, GanctlError) else StorageError(
            f"could not write to {run_dir}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
        if hc.mode != RunMode.MULTIRUN or isinstance(err, Interrupted):
            fail(err)
        # One bad job of a sweep is reported in its folder, and the sweep goes on.
        (run_dir / "error.txt").write_text(str(err) + "\n")
        print(f"ganctl: error: job {hc.job.num} ({' '.join(hc.overrides.task)}): {err}", file=sys.stderr)
        # NaN: Optuna records the trial as failed and samples on; the basic sweeper ignores it.
        return float("nan")
    metric = summary.get("metric")
    scored = f"; {metric} {summary['metric_value']:.4g}" if summary.get("metric_value") is not None else ""
    print(f"ganctl: {summary['steps']} steps at {summary['steps_per_s']} steps/s{scored}; outputs in {run_dir}:"
          " metrics.csv, samples/, checkpoints/last.pt")
    # What a sweeper minimises (hydra/sweeper=optuna): the final evaluation metric, FD or W1.
    return summary.get("metric_value")


def train_main(args: list[str]) -> None:
    import hydra

    register_schema()
    overrides = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    check_group_options(overrides)
    target = _resume_target(overrides)
    if target is not None and target != "auto":
        args = prepare_resume(target, overrides, args)
    elif not flags:
        prevalidate(overrides)
    sys.argv = ["ganctl train", *args]
    hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")(_train_task)()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return
    if args[0] in ("-sc", "--shell-completion") or args[0].startswith(("-sc=", "--shell-completion=")):
        args = ["train", *args]  # Hydra's completion lives on the train command
    command, rest = args[0], args[1:]
    try:
        if command == "train":
            train_main(rest)
        elif command == "sample":
            from ganctl.sample import main as sample_main

            sample_main(rest)
        elif command == "interpolate":
            from ganctl.interpolate import main as interpolate_main

            interpolate_main(rest)
        elif command == "eval":
            from ganctl.evaluate import main as eval_main

            eval_main(rest)
        elif command == "report":
            from ganctl.report import main as report_main

            report_main(rest)
        else:
            raise ConfigError(f"unknown command {command!r}; accepted: train, sample, interpolate, eval, report")
    except GanctlError as err:
        fail(err)


if __name__ == "__main__":
    main()
