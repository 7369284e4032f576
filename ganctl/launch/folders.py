"""Who may write into a run or sweep folder.

A run folder belongs to one process: `ganctl train` holds an flock on RUN/.ganctl.lock from
before Hydra writes its .hydra/ files until the process ends. A folder that already holds a run
is continued only when asked (resume=), moved aside only when asked (overwrite=true).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from ganctl import files
from ganctl.errors import RunExists, StorageError
from ganctl.launch.overrides import is_hydra_override, literal_override
from ganctl.runfolder import RunFolder

SWEEP_RECORD = ".ganctl-sweep.json"  # the command a named sweep folder was started with


def main_process() -> bool:
    """False on torchrun's ranks > 0: rank 0 alone claims the run folder they share."""
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or os.environ.get("RANK", "0") == "0"


def holds_run(folder: Path) -> bool:
    """A ganctl run has trained here (RunFolder.holds_run: the one rule, shared with ganctl report)."""
    return RunFolder(folder).holds_run()


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


def claim_run_folder(run_dir: Path, continuing: bool, overwrite: bool) -> None:
    """Lock `run_dir` for this process; refuse to write over a run in it unless the command
    continues that run (`continuing`) or asks to move it aside (`overwrite`)."""
    files.lock_folder(run_dir)
    if holds_run(run_dir) and not continuing:
        if not overwrite:
            files.unlock_folder(run_dir)
            raise RunExists(
                f"{run_dir} already holds a ganctl run (checkpoints/last.pt, metrics.csv or samples/step_N.png); "
                "accepted: "
                f"resume={shlex.quote(str(run_dir))} to continue it, hydra.run.dir=ANOTHER_FOLDER for a "
                f"new run, or overwrite=true to move it aside to {run_dir}.old-N/"
            )
        aside = files.move_aside(run_dir)
        files.unlock_folder(run_dir)
        print(f"ganctl: overwrite=true: moved the previous run aside to {aside}")
        files.lock_folder(run_dir)
    # Under the lock no live process writes here: temporary files are a killed run's leftovers.
    files.remove_temporaries(run_dir)


def claim_job_folder(run_dir: Path) -> None:
    """Lock a sweep job's folder for the job; a leftover error.txt belongs to an earlier try."""
    files.lock_folder(run_dir)
    files.remove_temporaries(run_dir)
    RunFolder(run_dir).error.unlink(missing_ok=True)


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
    given = literal_override(args, "hydra.sweep.dir")
    if given is None:
        return  # Hydra's dated folder, new for each command (or one only Hydra can resolve)
    sweep_dir = Path(given)
    command = [a for a in args if not a.startswith("-") and not is_hydra_override(a)]
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
