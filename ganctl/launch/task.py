"""The function Hydra runs in each `ganctl train` job: plan, train, report."""

from __future__ import annotations

import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ganctl import files
from ganctl.errors import ConfigError, FolderInUse, GanctlError, Interrupted, RunExists, StorageError
from ganctl.launch.folders import claim_job_folder, claim_run_folder, main_process
from ganctl.launch.overrides import resume_target
from ganctl.launch.resume import plan_job
from ganctl.runfolder import RunFolder


def fail(err: GanctlError) -> None:
    """Print `err` as ganctl's error lines and exit with its status."""
    for line in err.lines:
        print(f"ganctl: {err.prefix}{line}", file=sys.stderr)
    sys.exit(err.exit_code)


def final_metric(run_dir: Path, cfg) -> float | None:
    """The last evaluation a finished run logged in metrics.csv: what a sweeper minimises."""
    from ganctl import kinds

    if cfg.trainer.eval_every is None:
        return None
    metric = kinds.of(cfg.dataset).metric if cfg.trainer.eval_metric == "auto" else cfg.trainer.eval_metric
    try:
        rows = [r for r in RunFolder(run_dir).metrics_rows() if r.get(metric)]
        return float(rows[-1][metric]) if rows else None
    except (OSError, ValueError):
        return None


def _check_sweeper(hc, cfg) -> None:
    if "optuna" in str(hc.sweeper.get("_target_", "")).lower() and cfg.trainer.eval_every is None:
        # Every trial would return nothing to minimise: stop the whole study before its first step.
        fail(
            ConfigError(
                "hydra/sweeper=optuna minimises the evaluation metric, but trainer.eval_every=null; "
                "accepted: trainer.eval_every=K (a multiple of trainer.log_every), as "
                "conf/hparams_search/*.yaml set it"
            )
        )


def _job_failed(exc: Exception, run_dir: Path, sweep: bool, hc) -> float:
    """Report a job's error: a single run exits with it; a sweep records it and goes on (NaN)."""
    err = exc if isinstance(exc, GanctlError) else files.refused(exc.filename or run_dir, exc)
    last = RunFolder(run_dir).last
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
            RunFolder(run_dir).error.write_text(str(err) + "\n")
        except OSError:
            pass  # the folder refuses writes: the line below is the report
    print(f"ganctl: error: job {hc.job.num} ({' '.join(hc.overrides.task)}): {err}", file=sys.stderr)
    # NaN: Optuna records the trial as failed and samples on; the basic sweeper ignores it.
    return math.nan


def _trained(summary: dict, run_dir: Path) -> float | None:
    metric = summary.get("metric")
    scored = f"; {metric} {summary['metric_value']:.4g}" if summary.get("metric_value") is not None else ""
    print(
        f"ganctl: {summary['steps']} steps at {summary['steps_per_s']} steps/s{scored}; outputs in {run_dir}:"
        " metrics.csv, curves.png, samples/ (progress.gif), checkpoints/last.pt"
    )
    # What a sweeper minimises (hydra/sweeper=optuna): the final evaluation metric, FD or W1.
    return summary.get("metric_value")


@dataclass(frozen=True)
class TrainTask:
    """Hydra's task function for `ganctl train`; submitit and joblib pickle it to their workers.

    `overwrite` serves a folder that only the job can claim (Hydra flags kept ganctl from knowing
    it before). `typed` and `ckpt` are the job's config and resumed checkpoint when the launch
    worked them out already, so the job does not compose or load them again.
    """

    overwrite: bool = False
    typed: object = None
    ckpt: dict | None = None

    def __call__(self, cfg) -> float | None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from ganctl.commands.train import run as run_training
        from ganctl.config import to_run_config

        hc = HydraConfig.get()
        run_dir = Path(hc.runtime.output_dir)
        sweep = hc.mode == RunMode.MULTIRUN
        _check_sweeper(hc, cfg)
        # A single run holds its folder from before Hydra starts; a sweep job locks its folder for the job.
        claim = main_process() and not files.holds_lock(run_dir)
        try:
            if claim and sweep:
                claim_job_folder(run_dir)
            elif claim:  # Hydra flags (--config-dir, ...) skipped the claim before Hydra started
                claim_run_folder(run_dir, resume_target(hc.overrides.task) is not None, self.overwrite)
            typed = self.typed if self.typed is not None else to_run_config(cfg)
            plan = plan_job(typed, hc.overrides.task, run_dir, sweep and claim, ckpt=self.ckpt)
            if plan.finished:
                what = f"job {hc.job.num}: " if sweep else ""
                print(f"ganctl: {what}{run_dir} holds this run, finished at step {plan.ckpt['step']}; kept, not rerun")
                return final_metric(run_dir, plan.cfg)
            # A config the launch worked out is the one it validated (launch/train._check_run).
            summary = run_training(plan.cfg, run_dir, resume=plan.ckpt, checked=self.typed is not None)
        except (GanctlError, OSError) as exc:
            return _job_failed(exc, run_dir, sweep, hc)
        finally:
            if claim and sweep:
                files.unlock_folder(run_dir)
        return _trained(summary, run_dir)
