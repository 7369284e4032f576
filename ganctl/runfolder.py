"""The run folder's layout, in one place: every command that writes or reads a run goes through it.

RUN/checkpoints/step_N.pt, last.pt (the newest), best.pt (the best evaluation)
RUN/metrics.csv            one row per trainer.log_every steps
RUN/samples/step_N.png     the fixed-latent pictures, and progress.gif
RUN/curves.png, RUN/tb/    the curves, TensorBoard's event files
RUN/.hydra/                Hydra's config.yaml and overrides.yaml (the command's overrides)
RUN/error.txt              why a sweep job failed
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

SAMPLE_NAME = re.compile(r"^step_(\d+)\.png$")


class RunFolder:
    """A run folder: the paths of what ganctl writes there, and reading them back."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:06d}.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    def sample_picture(self, step: int) -> Path:
        return self.samples / f"step_{step:06d}.png"

    @property
    def progress_gif(self) -> Path:
        return self.samples / "progress.gif"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def hydra(self) -> Path:
        return self.path / ".hydra"

    @property
    def hydra_config(self) -> Path:
        return self.hydra / "config.yaml"

    @property
    def error(self) -> Path:
        return self.path / "error.txt"

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike) -> RunFolder:
        """The run a checkpoint file (RUN/checkpoints/NAME.pt) belongs to."""
        return cls(Path(checkpoint).resolve().parent.parent)

    def holds_run(self) -> bool:
        """A ganctl run has trained here: it left a checkpoint, a metrics log or a sample picture."""
        return self.last.is_file() or self.metrics.is_file() or bool(self.sample_pictures())

    def metrics_rows(self) -> list[dict]:
        """metrics.csv's rows as dicts of text ([] when there is none yet)."""
        try:
            with open(self.metrics, newline="") as f:
                return list(csv.DictReader(f))
        except FileNotFoundError:
            return []

    def last_row(self) -> dict | None:
        rows = self.metrics_rows()
        return rows[-1] if rows else None

    def overrides(self) -> list[str] | None:
        """The command-line overrides the run was started with (.hydra/overrides.yaml); None if absent."""
        path = self.hydra / "overrides.yaml"
        if not path.is_file():
            return None
        # Hydra writes one "- override" line each; read as text so no YAML parser is imported for it.
        return [ln.strip()[2:] for ln in path.read_text().splitlines() if ln.strip().startswith("- ")]

    def sample_pictures(self) -> list[tuple[int, Path]]:
        """samples/step_N.png as (N, path), by step."""
        found = [(SAMPLE_NAME.match(p.name), p) for p in self.samples.iterdir()] if self.samples.is_dir() else []
        return sorted((int(m.group(1)), p) for m, p in found if m)
