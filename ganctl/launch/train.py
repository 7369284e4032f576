"""`ganctl train`: check the command, claim the run folder, then start Hydra's job.

One run without Hydra flags is composed once: the config Hydra's job runs is the one checked
here before any folder is made. Sweeps and Hydra's flags (--cfg, --config-dir, -m, ...) go
through `hydra.main`, which composes for itself.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ganctl import files
from ganctl.errors import ConfigError
from ganctl.launch import compose
from ganctl.launch.folders import check_output_folder, claim_run_folder, claim_sweep_folder, main_process
from ganctl.launch.overrides import NO_JOB_FLAGS, as_override, resume_target, take_overwrite
from ganctl.launch.recipe import in_front
from ganctl.launch.resume import Resume, config_overrides, locate_resume, resume_config
from ganctl.launch.task import TrainTask


@dataclass
class Command:
    """`ganctl train ARGS` read: Hydra's arguments split into overrides and flags, and ganctl's own."""

    args: list[str]
    overwrite: bool
    overrides: list[str] = field(init=False)
    flags: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.overrides = [a for a in self.args if not a.startswith("-")]
        self.flags = [a for a in self.args if a.startswith("-")]

    @property
    def multirun(self) -> bool:
        return any(f in ("-m", "--multirun") for f in self.flags)

    @property
    def job_runs(self) -> bool:
        return not any(f.split("=", 1)[0] in NO_JOB_FLAGS for f in self.flags)


def _check_run(cfg, new_folder: str | None = None) -> None:
    """Everything about a run that can fail before its folder exists: config, device, the folder
    a new run creates, data."""
    from ganctl.training.validate import check_data, training_device, validate

    validate(cfg)
    training_device(cfg)
    if new_folder is not None:
        check_output_folder(new_folder)
    check_data(cfg)


def _put_in_front(added: list[str], args: list[str]) -> list[str]:
    """`added` just before the user's first override: Hydra's argparse takes the overrides as one
    run of positional arguments, so they may not come before a leading flag (`-m a=1,2`, `--cfg job
    a=1`, where `job` is the flag's value and no override)."""
    first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return [*args[:first], *added, *args[first:]]


def train_main(args: list[str]) -> None:
    """Run `ganctl train ARGS` (Hydra's overrides and flags, plus ganctl's overwrite=)."""
    args, overwrite = take_overwrite(args)
    # Image data without an experiment gets the modern recipe, and a trainer.epochs outranks an
    # experiment's trainer.steps: overrides in front of the user's, whose words still win.
    command = Command(_put_in_front(in_front(Command(args, overwrite).overrides), args), overwrite)
    args = command.args
    compose.check_group_options(command.overrides)
    target = resume_target(command.overrides)
    if overwrite and target is not None:
        raise ConfigError(f"overwrite=true starts a new run and resume={target} continues one; accepted: one of them")
    resume = locate_resume(target, args) if target not in (None, "auto") else None
    from ganctl.data import read_once

    with read_once():  # the checks' size query and the run's load share one scan of a folder
        if not command.flags:
            _run_once(command, resume)
        else:
            _run_with_hydra_main(command, resume)


def _run_with_hydra_main(command: Command, resume: Resume | None) -> None:
    """A sweep, or a command with Hydra flags: Hydra parses, composes and runs it."""
    import hydra

    args, run_dir, continuing = command.args, None, resume_target(command.overrides) is not None
    if resume is not None:
        cfg, changed = resume_config(resume.ckpt, command.overrides)
        _check_run(cfg)
        args, run_dir, continuing = resume.args, resume.run_dir, resume.own
    claimed = None
    if command.job_runs and main_process():
        # Claimed before Hydra starts, so that Hydra's own .hydra/ files never land in a folder in use.
        if command.multirun:
            claim_sweep_folder(args, command.overwrite)
        elif run_dir is not None:
            claimed = Path(run_dir)
            claim_run_folder(claimed, continuing, command.overwrite)
    if resume is not None:
        print(resume.note(changed))
    compose.register_schema()
    sys.argv = ["ganctl train", *args]
    try:
        main = hydra.main(version_base="1.3", config_path=str(compose.conf_dir()), config_name="train")
        main(TrainTask(command.overwrite))()
    finally:
        if claimed is not None:  # the process may go on (the Python API, tests); the run has ended
            files.unlock_folder(claimed)


def _run_once(command: Command, resume: Resume | None) -> None:
    """One run: composed and checked once here, its folder claimed, then Hydra's job on that config."""
    from hydra.types import RunMode

    from ganctl.config import to_run_config

    args = resume.args if resume is not None else command.args
    if resume is not None:
        config_overrides(command.overrides)  # a sweep value: Hydra's own complaint would not say why
    with compose.hydra_session() as app:
        # hydra.mode=RUN: what hydra.main adds to a command without -m
        overrides = [*args, "hydra.mode=RUN"]
        composed = compose.checked(lambda: app.compose_config("train", overrides, run_mode=RunMode.RUN))
        task_cfg, run_dir = compose.split_hydra(composed)
        typed = compose.checked(lambda: to_run_config(task_cfg))
        if resume is not None:
            cfg, changed = resume_config(resume.ckpt, command.overrides, composed=typed)
            _check_run(cfg)
            run_dir, continuing = resume.run_dir, resume.own
        else:
            _check_run(typed, new_folder=run_dir or "outputs")
            continuing = resume_target(command.overrides) is not None
            if run_dir is not None:
                _pin_run_dir(composed, run_dir)
        claimed = None
        if main_process() and run_dir is not None:
            # Claimed before the job starts, so that Hydra's own .hydra/ files never land in a folder in use.
            claimed = Path(run_dir)
            claim_run_folder(claimed, continuing, command.overwrite)
        try:
            if resume is not None:
                print(resume.note(changed))
            task = TrainTask(command.overwrite, typed, resume.ckpt if resume is not None else None)
            _run_job(app, composed, task)
        finally:
            if claimed is not None:  # the process may go on (the Python API, tests); the run has ended
                files.unlock_folder(claimed)


def _pin_run_dir(composed, run_dir: str) -> None:
    """Hydra resolves ${now:...} again when its job starts, a second later perhaps: pin the folder
    checked and claimed here, and record it among Hydra's overrides as a pinning override would be."""
    from omegaconf import read_write

    with read_write(composed.hydra):
        composed.hydra.run.dir = run_dir
        recorded = composed.hydra.overrides.hydra
        recorded.insert(len(recorded) - 1, as_override("hydra.run.dir", run_dir))


def _run_job(app, composed, task: TrainTask) -> None:
    """What Hydra's run does once it has composed: logging, callbacks, then the job in its folder."""
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.utils import run_and_report
    from hydra.core.utils import configure_log, run_job
    from hydra.types import HydraContext

    def run() -> None:
        configure_log(composed.hydra.hydra_logging, composed.hydra.verbose)
        callbacks = Callbacks(composed)
        callbacks.on_run_start(config=composed, config_name="train")
        context = HydraContext(config_loader=app.config_loader, callbacks=callbacks)
        ret = run_job(task, composed, "hydra.run.dir", None, hydra_context=context)
        callbacks.on_run_end(config=composed, config_name="train", job_return=ret)
        ret.return_value  # raises the job's exception, as hydra.main does

    run_and_report(run)
