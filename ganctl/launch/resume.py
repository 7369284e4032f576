"""Resume planning: the config a continued run trains with, and what a job continues or keeps."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ganctl.errors import ConfigError, RunExists
from ganctl.launch.compose import GROUPS, compose_run_config
from ganctl.launch.overrides import as_override, given_values, literal_override, resume_target, split_override
from ganctl.runfolder import RunFolder


def config_overrides(overrides: Sequence[str]) -> list:
    """A resume's overrides of the run's config, parsed (not resume= nor hydra.*): one value each."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = [
        o
        for o in OverridesParser.create().parse_overrides(list(overrides))
        if o.key_or_group != "resume" and not o.key_or_group.startswith("hydra")
    ]
    if any(o.is_sweep_override() for o in parsed):
        raise ConfigError("resume=... runs one job; sweep values (a,b or range()) are not accepted with it")
    return parsed


def resume_config(ckpt: dict, overrides: Sequence[str], composed=None):
    """The config to resume with, and the keys that differ from the checkpoint's.

    Plain key=value overrides apply on top of the checkpoint's own config. A command line that
    selects config groups (the original command with resume= appended, as a requeued cluster
    job runs it) is composed in full instead.
    """
    from omegaconf import OmegaConf

    from ganctl.config import RunConfig, flatten, to_dict, to_run_config

    base = to_run_config(ckpt["config"])
    parsed = config_overrides(overrides)
    if any(o.key_or_group in GROUPS for o in parsed):
        # Composed already when Hydra composed this very command line.
        cfg: RunConfig = composed if composed is not None else compose_run_config([o.input_line for o in parsed])
    else:
        node = OmegaConf.structured(base)
        for o in parsed:
            OmegaConf.update(node, o.key_or_group, o.value(), merge=True)
        cfg = OmegaConf.to_object(node)  # type: ignore[assignment]
    cfg.resume = None
    _keep_recorded_length(base, cfg, [o.input_line for o in parsed])
    before, after = flatten(to_dict(base)), flatten(to_dict(cfg))
    changed = [f"{k}: {before.get(k)!r} -> {after[k]!r}" for k in after if after[k] != before.get(k)]
    return cfg, changed


def _keep_recorded_length(base, cfg, overrides: list[str]) -> None:
    """A run of trainer.minutes continues to the trainer.steps its checkpoint recorded (a command
    composed in full would bring the recipe's steps back), unless the resume sets the length."""
    t = cfg.trainer
    if t.minutes is None or base.trainer.minutes is None:
        return
    given = given_values(overrides, ("trainer.minutes", "trainer.steps", "trainer.epochs"))
    if "trainer.minutes" in given and t.minutes != base.trainer.minutes:
        raise ConfigError(
            f"trainer.minutes={given['trainer.minutes']}: a time budget sets a new run's length, and this run "
            f"recorded trainer.steps={base.trainer.steps} from trainer.minutes={base.trainer.minutes:g}; "
            "accepted: trainer.steps=K to end it elsewhere"
        )
    if "trainer.steps" not in given and "trainer.epochs" not in given:
        t.steps, t.epochs = base.trainer.steps, base.trainer.epochs


@dataclass
class Resume:
    """A `resume=CHECKPOINT` located before Hydra starts: the checkpoint and where its job writes."""

    ckpt: dict
    args: list[str]  # Hydra's arguments, pointed at the run folder the job writes into
    run_dir: str | None  # that folder; None when only Hydra can resolve it
    own: bool  # it is the checkpoint's own run folder: the job continues the run there
    ckpt_run_dir: str  # the run folder the checkpoint belongs to

    def note(self, changed: list[str]) -> str:
        """The line that announces the resume."""
        return f"ganctl: resuming {self.ckpt_run_dir} from step {self.ckpt['step']}" + (
            f"; changed: {', '.join(changed)}" if changed else " with its own config"
        )


def locate_resume(target: str, args: list[str]) -> Resume:
    """Load the checkpoint `resume=` names and point Hydra at the checkpoint's own run folder,
    unless hydra.run.dir names another."""
    from ganctl.training import checkpoint

    path = checkpoint.resolve_path(target)
    ckpt = checkpoint.load(path)
    run_dir = str(path.resolve().parent.parent)
    # Keep the first run's .hydra/ as it was; the resumed job's Hydra files go beside it.
    extra = [f"hydra.output_subdir=.hydra/resume_step_{ckpt['step']}"]
    if any((split := split_override(a)) is not None and split[0] == "hydra.run.dir" for a in args):
        given = literal_override(args, "hydra.run.dir")
        own = given is not None and os.path.realpath(given) == os.path.realpath(run_dir)
        return Resume(ckpt, [*args, *extra], given, own, run_dir)
    return Resume(ckpt, [*args, as_override("hydra.run.dir", run_dir), *extra], run_dir, True, run_dir)


def _same_config(saved: dict, cfg) -> bool:
    """A checkpoint's config and `cfg` train the same run (`resume` says how a run started, not what it is)."""
    from ganctl.config import flatten, to_dict, to_run_config

    a, b = flatten(to_dict(to_run_config(saved))), flatten(to_dict(cfg))
    ignored = ["resume"]
    if a.get("trainer.minutes") is not None:  # the length a time budget chose, in the checkpoint only
        ignored += ["trainer.steps", "trainer.epochs"]
    for key in ignored:
        a.pop(key, None)
        b.pop(key, None)
    return a == b


def planned_steps(cfg) -> int:
    """The step a run of `cfg` ends at, from the dataset's size alone (no data loaded)."""
    from ganctl.data import dataset_size
    from ganctl.training.build import total_steps

    return total_steps(cfg, dataset_size(cfg.dataset) // cfg.trainer.batch_size)


@dataclass
class JobPlan:
    """What one job does: train `cfg`, continuing `ckpt` when there is one, or keep a finished run."""

    cfg: object
    ckpt: dict | None
    finished: bool


def plan_job(composed, overrides: Sequence[str], run_dir: Path, sweep: bool, ckpt: dict | None = None) -> JobPlan:
    """The plan for the job of `composed` (a RunConfig) in `run_dir`; `ckpt` is the checkpoint
    resume= names when it is loaded already."""
    from ganctl.training import checkpoint

    target = resume_target(overrides)
    last = RunFolder(run_dir).last
    continue_here = target == "auto"
    if continue_here:  # a requeued cluster job: continue this job folder's run if it has one
        target = str(run_dir) if last.is_file() else None
        ckpt = None
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
        return JobPlan(composed, None, False)
    if ckpt is None:
        ckpt = checkpoint.load(target)
    typed, _ = resume_config(ckpt, overrides, composed=composed)
    return JobPlan(typed, ckpt, continue_here and ckpt["step"] >= planned_steps(typed))
