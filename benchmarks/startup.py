"""Start-up: seconds from launching `ganctl train` to its first training step, and the --help commands.

One result line, `startup key=value ...` (medians of the repeats):
  help_s            wall seconds of `ganctl --help`
  train_help_s      wall seconds of `ganctl train --help` (Hydra's help: configs are composed)
  import_torch_s    wall seconds of `python -c "import torch"`: the floor under ganctl train and sample
                    (nan with --smoke, which skips it)
  first_step_s      launch of `ganctl train +experiment=mnist_bce ... trainer.steps=1 trainer.log_every=1`
                    to the moment its metrics.csv row for step 1 was written (the file's mtime)
  to_loop_s         the part of first_step_s before the loop started: interpreter, imports, config
                    composition and validation, Hydra's run folder, data load, model build
                    (= first_step_s minus the row's own `time`, which counts from the loop's start)
  first_step_own_s  that first step itself, with its first-call costs and its log row
  train_wall_s      wall seconds of the whole 1-step command, exit included (it also writes a sample
                    grid and a checkpoint after the step)
Clock: time.time() just before the launch and the file's modification time share the wall clock.
"""

from __future__ import annotations

import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    device = common.setup(args)
    repeats = 1 if args.smoke else 5
    env = common.child_env(args)
    cmd = common.ganctl_command()
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "help_s",
            "train_help_s",
            "import_torch_s",
            "first_step_s",
            "to_loop_s",
            "first_step_own_s",
            "train_wall_s",
        )
    }
    with tempfile.TemporaryDirectory(prefix="ganctl_bench_") as tmp:
        tmp = Path(tmp)
        root, real = common.mnist_test_root(args.data_root, tmp, n=1000 if args.smoke else 10_000)
        overrides = common.train_overrides("mnist_bce", 1, 1, device, [f"dataset.root={root}", "dataset.split=test"])
        for r in range(repeats):
            results["help_s"].append(common.timed_run([*cmd, "--help"], env=env)[0])
            results["train_help_s"].append(common.timed_run([*cmd, "train", "--help"], env=env)[0])
            if not args.smoke:  # one interpreter start-up less in the smoke test
                results["import_torch_s"].append(common.timed_run([sys.executable, "-c", "import torch"], env=env)[0])
            run_dir = tmp / f"run_{r}"
            launched = time.time()
            wall, _ = common.timed_run([*cmd, "train", *overrides, f"hydra.run.dir={run_dir}"], env=env)
            metrics = run_dir / "metrics.csv"
            first = metrics.stat().st_mtime - launched
            with open(metrics, newline="") as f:
                row = next(csv.DictReader(f))
            results["first_step_s"].append(first)
            results["to_loop_s"].append(first - float(row["time"]))
            results["first_step_own_s"].append(float(row["time"]))
            results["train_wall_s"].append(wall)
    common.note(f"{repeats} repeats on {'the real' if real else 'generated'} MNIST test split")
    common.emit("startup", device, {k: statistics.median(v) if v else float("nan") for k, v in results.items()})


if __name__ == "__main__":
    sys.exit(main())
