"""The Hydra callback that summarises a sweep when it ends (conf/train.yaml's hydra.callbacks)."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback

from ganctl.commands.report import summarise


class SweepSummary(Callback):
    """Hydra callback (conf/train.yaml): writes summary.csv/md when a multirun ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            rows = summarise(sweep_dir)
            failed = sum(r["status"] == "error" for r in rows)
            print(f"ganctl: sweep of {len(rows)} jobs ({failed} failed): {sweep_dir / 'summary.md'}")
