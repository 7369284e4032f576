"""The run log: one row per log_every steps into metrics.csv and the progress bar (rank 0 writes)."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm  # a widget in Jupyter, the usual bar in a terminal

from ganctl import kinds
from ganctl.config import RunConfig
from ganctl.files import atomic_write, refused
from ganctl.losses import for_run
from ganctl.runfolder import RunFolder
from ganctl.training.distributed import Rank
from ganctl.training.step import DStats, StepStats

METRIC_FIELDS = ["step", "epoch", "d_loss", "g_loss", "d_real", "d_fake"]


def metric_fields(cfg: RunConfig, eval_fields: list[str]) -> list[str]:
    """The columns of metrics.csv for this run."""
    fields = METRIC_FIELDS + list(kinds.of(cfg.dataset).row_fields)
    if for_run(cfg.loss).penalties:
        # The last penalty's gradient norm: WGAN-GP's on interpolates, pushed to 1; R1's on real
        # samples, pushed to 0
        fields.append("grad_norm")
    if cfg.trainer.on_nan == "skip":
        fields.append("nan_skips")
    if cfg.trainer.augment and cfg.trainer.augment_p == "auto":
        # Each transform's probability as ADA moves it; a fixed p is in the config, a flat line.
        fields.append("augment_p")
    return fields + eval_fields + ["time", "steps_per_s"]


def _reopen(path: Path, fields: list[str], resume_step: int | None):
    """metrics.csv for appending: a resumed run drops rows logged after its checkpoint.

    The kept rows are rewritten atomically, so a crash or a full disk at this moment leaves the
    old file whole. A row cut short by a failed write has missing fields and is dropped too.
    """
    rows = []
    if resume_step is not None and path.is_file():
        with open(path, newline="") as f:
            rows = [
                r
                for r in csv.DictReader(f)
                if r.get("step", "").isdigit()
                and int(r["step"]) <= resume_step
                and None not in r
                and None not in r.values()
            ]  # None: a field too many or too few
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))
    try:
        handle = open(path, "a", newline="")
    except OSError as exc:
        raise refused(path, exc) from None
    return handle, csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")


class PendingStats:
    """Each step's logged tensors, kept on the device unreduced and reduced once per log row:
    no per-step host sync and no per-step ops for logging."""

    def __init__(self):
        self.d: list[DStats] = []
        self.g: list[torch.Tensor] = []

    def add(self, d_stats: DStats, g_loss: torch.Tensor) -> None:
        self.d.append(d_stats)
        self.g.append(g_loss)

    def reduce(self, summarise, rank: Rank, device: torch.device) -> StepStats:
        """The statistics as floats, averaged over the steps and the replicas (zeros without steps)."""
        local = torch.zeros(len(StepStats._fields), device=device)
        if self.d:
            local = torch.stack(summarise(self.d, self.g))  # one tensor: one all-reduce
        self.d.clear()
        self.g.clear()
        return StepStats._make((rank.sum(local) / rank.world).tolist())


class TensorBoardLog:
    """trainer.loggers=[..., tensorboard]: every metrics row as scalars, every sample picture as an
    image (and the 1-D samples as a histogram), the resolved config as text, in RUN/tb/.

    A resumed run writes into the same folder from its checkpoint's step on: TensorBoard drops the
    events an interrupted run logged after that step (purge_step), so the curves continue.
    """

    def __init__(self, run_dir: Path, cfg: RunConfig, step: int, resumed: bool, fields: list[str]):
        import json

        from torch.utils.tensorboard import SummaryWriter

        from ganctl.config import to_dict

        self.fields = [f for f in fields if f != "step"]  # metrics.csv's columns: the same curves
        self.writer = SummaryWriter(str(RunFolder(run_dir).tensorboard), purge_step=step + 1 if resumed else None)
        if not resumed:
            self.writer.add_text("config", "```\n" + json.dumps(to_dict(cfg), indent=1) + "\n```", 0)

    def write(self, row: dict) -> None:
        step = int(row["step"])
        for key in self.fields:
            if isinstance(row.get(key), (int, float)):
                self.writer.add_scalar(key, row[key], step)
        self.writer.flush()

    def picture(self, image, step: int, values=None) -> None:
        import numpy as np

        self.writer.add_image("samples", np.asarray(image.convert("RGB")), step, dataformats="HWC")
        if values is not None:
            self.writer.add_histogram("samples/values", values, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# The optional loggers by their trainer.loggers name. csv has no entry: metrics.csv is always
# written, since the resume, the report and the sweep summary read it.
LOGGERS = {"tensorboard": TensorBoardLog}


class RunLog:
    """metrics.csv, the progress bar and the optional loggers (TensorBoard), fed one row at a time."""

    def __init__(
        self,
        run_dir: Path,
        fields: list[str],
        steps: int,
        step: int,
        resumed: bool,
        rank: Rank,
        progress: bool,
        cfg: RunConfig | None = None,
    ):
        self.main = rank.is_main
        self.file = self.writer = None
        self.loggers: list[TensorBoardLog] = []
        if self.main:
            self.file, self.writer = _reopen(RunFolder(run_dir).metrics, fields, step if resumed else None)
            names = cfg.trainer.loggers if cfg is not None else []
            self.loggers = [LOGGERS[n](run_dir, cfg, step, resumed, fields) for n in names if n in LOGGERS]
        # In a log file (not a terminal) a bar redrawn 10 times a second is noise: redraw every 30 s.
        self.bar = tqdm(
            total=steps,
            initial=step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=not (progress and self.main),
            file=sys.stderr,
            mininterval=0.1 if sys.stderr.isatty() else 30,
        )

    def write(self, row: dict, postfix: dict) -> None:
        if self.main:
            try:
                self.writer.writerow(row)
                self.file.flush()
            except OSError as exc:
                name, self.file = self.file.name, self._abandon(self.file)
                raise refused(name, exc) from None
        for logger in self.loggers:
            logger.write(row)
        self.bar.set_postfix(postfix, refresh=False)

    def picture(self, image, step: int, values=None) -> None:
        """A sample picture just saved (and, for low-dimensional data, the values behind it)."""
        for logger in self.loggers:
            logger.picture(image, step, values)

    @staticmethod
    def _abandon(file) -> None:
        """Close a file whose last write failed. Its unwritten bytes stay buffered; left to the
        garbage collector they would fail again at exit with a traceback of their own."""
        try:
            file.close()
        except OSError:
            pass

    def close(self) -> None:
        self.bar.close()
        for logger in self.loggers:
            logger.close()
        if self.file is not None:
            self.file.close()
