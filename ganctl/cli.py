"""Command-line entry point: `train` goes to Hydra, the other subcommands to argparse."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Sequence

from ganctl import files
from ganctl.errors import ConfigError, FolderInUse, GanctlError, Interrupted, RunExists, StorageError

USAGE = """\
usage: ganctl <command> [args]

commands:
  train        train a GAN from Hydra configs    ganctl train +experiment=mnist_bce
  sample       draw samples from a checkpoint    ganctl sample outputs/.../checkpoints/last.pt -o s.png
  interpolate  walk the latent space             ganctl interpolate RUN_DIR -o walk.gif
  eval         score samples against real data   ganctl eval RUN_DIR
  report       a run's pictures, a sweep's table ganctl report RUN_DIR (or multirun/DATE/TIME)
  inspect      show what a checkpoint holds      ganctl inspect RUN_DIR [--json]

`ganctl train --help` lists the config groups and options; `ganctl COMMAND --help` the others;
`ganctl --version` the version.
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
    keep = [
        ln
        for ln in lines
        if not ln.startswith(("full_key", "object_type", "reference_type", "Set the environment", "To append"))
    ]
    full_key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key")), None)
    msg = "; ".join(dict.fromkeys(keep[:2]))
    return f"{full_key}: {msg}" if full_key and full_key not in msg else msg


def _compose(overrides: Sequence[str], hydra_config: bool = False):
    from hydra import compose, initialize_config_dir

    register_schema()
    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name="train"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra_config)


def compose_run_config(overrides: Sequence[str] = ()):
    """The typed RunConfig that `ganctl train OVERRIDES` would run (for tests and benchmarks too)."""
    from ganctl.config import to_run_config

    return to_run_config(_compose(overrides))


def _split_hydra(composed) -> tuple[object, str | None]:
    """The task config without its `hydra` node, and the run folder Hydra would create (None if it
    cannot be known before Hydra starts)."""
    from omegaconf import OmegaConf, open_dict, read_write

    try:
        run_dir = OmegaConf.select(composed, "hydra.run.dir", throw_on_resolution_failure=True)
    except Exception:  # an interpolation only Hydra's job can resolve (hydra.job.*)
        run_dir = None
    with read_write(composed), open_dict(composed):
        del composed["hydra"]
    return composed, None if run_dir is None else str(run_dir)


def check_output_folder(target: str) -> None:
    """The run folder can be created: its nearest existing ancestor is a writable folder."""
    probe = Path(target).absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise StorageError(
            f"cannot create the run folder {target}: {probe} is not a writable folder; "
            "accepted: hydra.run.dir=DIR under a writable folder"
        )


def prevalidate(overrides: list[str]) -> str | None:
    """Compose and check the whole config before Hydra creates a run folder; returns that folder."""
    from omegaconf.errors import OmegaConfBaseException

    from ganctl.config import to_run_config
    from ganctl.training.validate import check_data, training_device, validate

    try:
        task, run_dir = _split_hydra(_compose(overrides, hydra_config=True))
        typed = to_run_config(task)
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        raise ConfigError(_hydra_message(exc)) from None
    except Exception as exc:  # Hydra's composition errors share no public base class
        if type(exc).__module__.startswith(("hydra", "omegaconf")):
            raise ConfigError(_hydra_message(exc)) from None
        raise
    validate(typed)
    training_device(typed)
    check_output_folder(run_dir or "outputs")
    check_data(typed)
    return run_dir


def resume_config(ckpt: dict, overrides: Sequence[str], composed=None):
    """The config to resume with, and the keys that differ from the checkpoint's.

    Plain key=value overrides apply on top of the checkpoint's own config. A command line that
    selects config groups (the original command with resume= appended, as a requeued cluster
    job runs it) is composed in full instead.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from ganctl.config import RunConfig, flatten, to_dict, to_run_config

    base = to_run_config(ckpt["config"])
    parsed = [
        o
        for o in OverridesParser.create().parse_overrides(list(overrides))
        if o.key_or_group != "resume" and not o.key_or_group.startswith("hydra")
    ]
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
    before, after = flatten(to_dict(base)), flatten(to_dict(cfg))
    changed = [f"{k}: {before.get(k)!r} -> {after[k]!r}" for k in after if after[k] != before.get(k)]
    return cfg, changed


def _resume_target(overrides: Sequence[str]) -> str | None:
    for arg in overrides:
        split = _split_override(arg)
        if split and split[0] == "resume" and split[1] not in ("", "null"):
            return split[1]
    return None


def prepare_resume(target: str, overrides: list[str], args: list[str]) -> tuple[list[str], str | None, bool, str]:
    """Check a resume before Hydra starts; point Hydra at the checkpoint's own run folder.

    Returns Hydra's arguments, the run folder the resumed job writes into (None when only Hydra
    can resolve it), whether that folder is the checkpoint's own, and the line to announce it with.
    """
    from ganctl.training import checkpoint
    from ganctl.training.validate import check_data, training_device, validate

    path = checkpoint.resolve_path(target)
    ckpt = checkpoint.load(path)
    cfg, changed = resume_config(ckpt, overrides)
    validate(cfg)
    training_device(cfg)
    check_data(cfg)
    run_dir = str(path.resolve().parent.parent)
    note = f"ganctl: resuming {run_dir} from step {ckpt['step']}" + (
        f"; changed: {', '.join(changed)}" if changed else " with its own config"
    )
    # Keep the first run's .hydra/ as it was; the resumed job's Hydra files go beside it.
    extra = [f"hydra.output_subdir=.hydra/resume_step_{ckpt['step']}"]
    if any(_split_override(a) is not None and _split_override(a)[0] == "hydra.run.dir" for a in args):
        given = _literal_override(args, "hydra.run.dir")
        own = given is not None and os.path.realpath(given) == os.path.realpath(run_dir)
        return [*args, *extra], given, own, note
    return [*args, _as_override("hydra.run.dir", run_dir), *extra], run_dir, True, note


# ---- Who may write into a folder -------------------------------------------------------------
# A run folder belongs to one process: `ganctl train` holds an flock on RUN/.ganctl.lock from
# before Hydra writes its .hydra/ files until the process ends. A folder that already holds a run
# is continued only when asked (resume=), moved aside only when asked (overwrite=true).

SWEEP_RECORD = ".ganctl-sweep.json"  # the command a named sweep folder was started with
# Hydra flags after which no job runs: nothing to claim, nothing to move aside.
NO_JOB_FLAGS = (
    "--cfg",
    "-c",
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--resolve",
    "--version",
    "-sc",
    "--shell-completion",
)
_overwrite = False  # overwrite=true, for a claim that can only happen inside the job (see _train_task)


def _literal_override(args: Sequence[str], key: str) -> str | None:
    """The value of the last `key=VALUE` in args as Hydra reads it; None when absent or when only
    Hydra can resolve it (an interpolation)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [a for a in args if (split := _split_override(a)) is not None and split[0] == key]
    if not given:
        return None
    try:
        value = OverridesParser.create().parse_overrides(given[-1:])[0].value()
    except Exception:  # a malformed override: Hydra itself reports it
        return None
    return value if isinstance(value, str) and "${" not in value else None


def _as_override(key: str, value: str) -> str:
    """`key=value` that Hydra's override parser reads back as `value` (a path with spaces, say)."""
    if re.fullmatch(r"[\w./@:+~-]+", value) or "\\" in value:
        return f"{key}={value}"  # backslashes inside quotes have escaping rules of their own: left as typed
    quote = "'" if "'" not in value else '"'
    return f"{key}={quote}{value}{quote}" if quote not in value else f"{key}={value}"


def _take_overwrite(args: list[str]) -> tuple[list[str], bool]:
    """`overwrite=true` is ganctl's, not a config key: it is taken out before Hydra sees the command."""
    rest, overwrite = [], False
    for arg in args:
        split = _split_override(arg)
        if split is None or split[0] != "overwrite":
            rest.append(arg)
        elif split[1].lower() in ("true", "false"):
            overwrite = split[1].lower() == "true"
        else:
            raise ConfigError(
                f"overwrite={split[1]} is invalid; accepted: overwrite=true (moves the run in the "
                "folder aside to FOLDER.old-N/) or overwrite=false"
            )
    return rest, overwrite


def _is_hydra_override(arg: str) -> bool:
    split = _split_override(arg)
    return split is not None and split[0].startswith(("hydra.", "hydra/"))


def _main_process() -> bool:
    """False on torchrun's ranks > 0: rank 0 alone claims the run folder they share."""
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or os.environ.get("RANK", "0") == "0"


def holds_run(folder: Path) -> bool:
    """A ganctl run has trained here: it left a checkpoint or a metrics log."""
    return (folder / "checkpoints" / "last.pt").is_file() or (folder / "metrics.csv").is_file()


def claim_run_folder(run_dir: Path, continuing: bool, overwrite: bool) -> None:
    """Lock `run_dir` for this process; refuse to write over a run in it unless the command
    continues that run (`continuing`) or asks to move it aside (`overwrite`)."""
    files.lock_folder(run_dir)
    if holds_run(run_dir) and not continuing:
        if not overwrite:
            files.unlock_folder(run_dir)
            raise RunExists(
                f"{run_dir} already holds a ganctl run (checkpoints/last.pt or metrics.csv); accepted: "
                f"resume={shlex.quote(str(run_dir))} to continue it, hydra.run.dir=ANOTHER_FOLDER for a "
                f"new run, or overwrite=true to move it aside to {run_dir}.old-N/"
            )
        aside = files.move_aside(run_dir)
        files.unlock_folder(run_dir)
        print(f"ganctl: overwrite=true: moved the previous run aside to {aside}")
        files.lock_folder(run_dir)
    # Under the lock no live process writes here: temporary files are a killed run's leftovers.
    files.remove_temporaries(run_dir)


def _job_folders(sweep_dir: Path) -> list[Path]:
    return [d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()] if sweep_dir.is_dir() else []


def _recorded_command(sweep_dir: Path) -> list[str] | None:
    """The task overrides a sweep folder was started with: ganctl's record, else Hydra's multirun.yaml."""
    try:
        return json.loads((sweep_dir / SWEEP_RECORD).read_text())["overrides"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        from omegaconf import OmegaConf

        return list(OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task)
    except Exception:  # missing or unreadable: the command is unknown
        return None


def claim_sweep_folder(args: list[str], overwrite: bool) -> None:
    """Before a sweep starts in a named folder (hydra.sweep.dir=DIR): the same command continues the
    sweep there, another command stops, overwrite=true moves the old sweep aside.

    Checked before Hydra starts because Hydra rewrites each job's .hydra/ before ganctl's job runs.
    """
    given = _literal_override(args, "hydra.sweep.dir")
    if given is None:
        return  # Hydra's dated folder, new for each command (or one only Hydra can resolve)
    sweep_dir = Path(given)
    command = [a for a in args if not a.startswith("-") and not _is_hydra_override(a)]
    ran = [d for d in _job_folders(sweep_dir) if holds_run(d)]
    if ran and overwrite:
        for job_dir in ran:
            files.lock_folder(job_dir)  # refuses while a process still trains in it
        aside = files.move_aside(sweep_dir)
        for job_dir in ran:
            files.unlock_folder(job_dir)
        print(f"ganctl: overwrite=true: moved the previous sweep aside to {aside}")
    elif ran and _recorded_command(sweep_dir) != command:
        before = _recorded_command(sweep_dir)
        raise RunExists(
            f"{sweep_dir} holds a sweep started with another command "
            f"({' '.join(before) if before is not None else 'unknown'}); accepted: that same command "
            f"to continue it, hydra.sweep.dir=ANOTHER_FOLDER, or overwrite=true to move it aside to "
            f"{sweep_dir}.old-N/"
        )
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise files.refused(sweep_dir, exc, doing="create") from None
    text = json.dumps({"overrides": command}, indent=1) + "\n"
    files.atomic_write(sweep_dir / SWEEP_RECORD, lambda f: f.write(text.encode()))


def _same_config(saved: dict, cfg) -> bool:
    """A checkpoint's config and `cfg` train the same run (`resume` says how a run started, not what it is)."""
    from ganctl.config import flatten, to_dict, to_run_config

    a, b = flatten(to_dict(to_run_config(saved))), flatten(to_dict(cfg))
    a.pop("resume", None)
    b.pop("resume", None)
    return a == b


def planned_steps(cfg) -> int:
    """The step a run of `cfg` ends at, from the dataset's size alone (no data loaded)."""
    from ganctl.data import dataset_size
    from ganctl.training.build import total_steps

    return total_steps(cfg, dataset_size(cfg.dataset) // cfg.trainer.batch_size)


def final_metric(run_dir: Path, cfg) -> float | None:
    """The last evaluation a finished run logged in metrics.csv: what a sweeper minimises."""
    import csv

    if cfg.trainer.eval_every is None:
        return None
    metric = cfg.trainer.eval_metric
    if metric == "auto":
        metric = "w1" if cfg.dataset.name == "gaussian1d" else "fd"
    try:
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get(metric)]
        return float(rows[-1][metric]) if rows else None
    except (OSError, ValueError):
        return None


def plan_job(cfg, overrides: Sequence[str], run_dir: Path, sweep: bool):
    """What this job does: (config, checkpoint to continue or None, whether the run is finished and kept)."""
    from ganctl.config import to_run_config
    from ganctl.training import checkpoint

    composed = to_run_config(cfg)
    target = _resume_target(overrides)
    last = run_dir / "checkpoints" / "last.pt"
    continue_here = target == "auto"
    if continue_here:  # a requeued cluster job: continue this job folder's run if it has one
        target = str(run_dir) if last.is_file() else None
    elif target is None and sweep and last.is_file():
        # The sweep's command is the one it started with (claim_sweep_folder): this folder holds
        # this job's run, finished or interrupted, unless the config files changed since.
        if not _same_config(checkpoint.load(last)["config"], composed):
            raise RunExists(
                f"{run_dir} holds a run of another config than this job's (were conf/ files edited?); "
                "accepted: hydra.sweep.dir=ANOTHER_FOLDER, or overwrite=true to move the sweep aside"
            )
        target, continue_here = str(run_dir), True
    if target is None:
        return composed, None, False
    ckpt = checkpoint.load(target)
    typed, _ = resume_config(ckpt, overrides, composed=composed)
    return typed, ckpt, continue_here and ckpt["step"] >= planned_steps(typed)


def _train_task(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ganctl.commands.train import run as run_training

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    sweep = hc.mode == RunMode.MULTIRUN
    if "optuna" in str(hc.sweeper.get("_target_", "")).lower() and cfg.trainer.eval_every is None:
        # Every trial would return nothing to minimise: stop the whole study before its first step.
        fail(
            ConfigError(
                "hydra/sweeper=optuna minimises the evaluation metric, but trainer.eval_every=null; "
                "accepted: trainer.eval_every=K (a multiple of trainer.log_every), as "
                "conf/hparams_search/*.yaml set it"
            )
        )
    # A single run holds its folder from train_main on; a sweep job locks its folder for the job.
    claim = _main_process() and not files.holds_lock(run_dir)
    try:
        if claim and sweep:
            files.lock_folder(run_dir)
            files.remove_temporaries(run_dir)
            (run_dir / "error.txt").unlink(missing_ok=True)  # this job is being tried again
        elif claim:  # Hydra flags (--config-dir, ...) skipped the claim before Hydra started
            claim_run_folder(run_dir, _resume_target(hc.overrides.task) is not None, _overwrite)
        typed, ckpt, finished = plan_job(cfg, hc.overrides.task, run_dir, sweep and claim)
        if finished:
            what = f"job {hc.job.num}: " if sweep else ""
            print(f"ganctl: {what}{run_dir} holds this run, finished at step {ckpt['step']}; kept, not rerun")
            return final_metric(run_dir, typed)
        summary = run_training(typed, run_dir, resume=ckpt)
    except (GanctlError, OSError) as exc:
        err = exc if isinstance(exc, GanctlError) else files.refused(exc.filename or run_dir, exc)
        last = run_dir / "checkpoints" / "last.pt"
        if isinstance(err, StorageError) and last.is_file():
            err = StorageError(
                f"{err}; the last good checkpoint {last} is intact: once the folder takes writes "
                f"again, ganctl train resume={shlex.quote(str(run_dir))}"
            )
        if not sweep or isinstance(err, Interrupted):
            fail(err)
        if not isinstance(err, (FolderInUse, RunExists)):  # those folders hold someone else's run
            try:
                # One bad job of a sweep is reported in its folder, and the sweep goes on.
                (run_dir / "error.txt").write_text(str(err) + "\n")
            except OSError:
                pass  # the folder refuses writes: the line below is the report
        print(f"ganctl: error: job {hc.job.num} ({' '.join(hc.overrides.task)}): {err}", file=sys.stderr)
        # NaN: Optuna records the trial as failed and samples on; the basic sweeper ignores it.
        return math.nan
    finally:
        if claim and sweep:
            files.unlock_folder(run_dir)
    metric = summary.get("metric")
    scored = f"; {metric} {summary['metric_value']:.4g}" if summary.get("metric_value") is not None else ""
    print(
        f"ganctl: {summary['steps']} steps at {summary['steps_per_s']} steps/s{scored}; outputs in {run_dir}:"
        " metrics.csv, curves.png, samples/ (progress.gif), checkpoints/last.pt"
    )
    # What a sweeper minimises (hydra/sweeper=optuna): the final evaluation metric, FD or W1.
    return summary.get("metric_value")


def train_main(args: list[str]) -> None:
    import hydra

    global _overwrite
    register_schema()
    args, _overwrite = _take_overwrite(args)
    overrides = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    multirun = any(f in ("-m", "--multirun") for f in flags)
    job_runs = not any(f.split("=", 1)[0] in NO_JOB_FLAGS for f in flags)
    check_group_options(overrides)
    target = _resume_target(overrides)
    if _overwrite and target is not None:
        raise ConfigError(f"overwrite=true starts a new run and resume={target} continues one; accepted: one of them")
    run_dir, continuing, note = None, target is not None, None
    if target is not None and target != "auto":
        # Into another folder than the checkpoint's, a resume starts a new run there.
        args, run_dir, continuing, note = prepare_resume(target, overrides, args)
    elif not flags:
        run_dir = prevalidate(overrides)
        if run_dir is not None:
            # Hydra resolves ${now:...} again when its job starts, a second later perhaps: pin the folder.
            args = [*args, _as_override("hydra.run.dir", run_dir)]
    claimed = None
    if job_runs and _main_process():
        # Claimed before Hydra starts, so that Hydra's own .hydra/ files never land in a folder in use.
        if multirun:
            claim_sweep_folder(args, _overwrite)
        elif run_dir is not None:
            claimed = Path(run_dir)
            claim_run_folder(claimed, continuing, _overwrite)
    if note:
        print(note)
    sys.argv = ["ganctl train", *args]
    try:
        hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")(_train_task)()
    finally:
        if claimed is not None:  # the process may go on (the Python API, tests); the run has ended
            files.unlock_folder(claimed)


def _leave_process_group() -> None:
    """Under torchrun, leave the process group and exit at once once the run is written.

    About one torchrun worker in eight aborted in the interpreter's own exit after finishing
    (a native thread of the process group still joinable at static destruction): torchrun then
    reports the whole run failed. Spawned workers (trainer.devices=N) leave the same way.
    """
    import os

    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return
    if args[0] in ("-V", "--version"):
        from ganctl.version import __version__

        print(f"ganctl {__version__}")
        return
    if args[0] in ("-sc", "--shell-completion") or args[0].startswith(("-sc=", "--shell-completion=")):
        args = ["train", *args]  # Hydra's completion lives on the train command
    command, rest = args[0], args[1:]
    try:
        if command == "train":
            train_main(rest)
            _leave_process_group()
        elif command == "sample":
            from ganctl.commands.sample import main as sample_main

            sample_main(rest)
        elif command == "interpolate":
            from ganctl.commands.interpolate import main as interpolate_main

            interpolate_main(rest)
        elif command == "eval":
            from ganctl.commands.evaluate import main as eval_main

            eval_main(rest)
        elif command == "report":
            from ganctl.commands.report import main as report_main

            report_main(rest)
        elif command == "inspect":
            from ganctl.commands.inspect import main as inspect_main

            inspect_main(rest)
        else:
            raise ConfigError(
                f"unknown command {command!r}; accepted: train, sample, interpolate, eval, report, inspect"
            )
    except GanctlError as err:
        fail(err)


if __name__ == "__main__":
    main()
