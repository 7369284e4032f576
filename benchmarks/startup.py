"""Start-up: `ganctl train trainer.steps=1` and `ganctl sample` against PyTorch's own floor, and the --help commands.

One result line, `startup key=value ...` (medians of the repeats; each repeat runs every command
once, in turn, so a busy machine slows all of them alike):
  floor_s           wall seconds of `python -c "import torch; torch.optim.Adam([...])"`: what any
                    PyTorch training script pays (torch, and the compiler Adam imports on first use)
  train_s           wall seconds of `ganctl train trainer.steps=1` (the default config, 1-D Gaussian)
  sample_s          wall seconds of `ganctl sample RUN -n 64 -o grid.png` for the MNIST run below
  train_over_floor_s, sample_over_floor_s
                    the median of each repeat's difference to that repeat's floor (the goal: <= 0.5)
  help_s            wall seconds of `ganctl --help`
  train_help_s      wall seconds of `ganctl train --help` (Hydra's help: configs are composed)
  import_torch_s    wall seconds of `python -c "import torch"` (nan with --smoke, which skips it)
  first_step_s      launch of `ganctl train +experiment=mnist_bce ... trainer.steps=1 trainer.log_every=1`
                    to the moment its metrics.csv row for step 1 was written (the file's mtime)
  to_loop_s         the part of first_step_s before the loop started: interpreter, imports, config
                    composition and validation, Hydra's run folder, data load, model build
                    (= first_step_s minus the row's own `time`, which counts from the loop's start)
  first_step_own_s  that first step itself, with its first-call costs and its log row
  train_wall_s      wall seconds of the whole 1-step MNIST command, exit included (it also writes a
                    sample grid and a checkpoint after the step)
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

FLOOR = "import torch; torch.optim.Adam([torch.zeros(1, requires_grad=True)])"
KEYS = (
    "floor_s",
    "train_s",
    "sample_s",
    "train_over_floor_s",
    "sample_over_floor_s",
    "help_s",
    "train_help_s",
    "import_torch_s",
    "first_step_s",
    "to_loop_s",
    "first_step_own_s",
    "train_wall_s",
)


def mnist_first_step(cmd: list[str], overrides: list[str], run_dir: Path, env: dict) -> dict[str, float]:
    """The 1-step MNIST run: when its first metrics row was written, and how long it all took."""
    launched = time.time()
    wall, _ = common.timed_run([*cmd, "train", *overrides, f"hydra.run.dir={run_dir}"], env=env)
    metrics = run_dir / "metrics.csv"
    first = metrics.stat().st_mtime - launched
    with open(metrics, newline="") as f:
        row = next(csv.DictReader(f))
    own = float(row["time"])
    return {"first_step_s": first, "to_loop_s": first - own, "first_step_own_s": own, "train_wall_s": wall}


def one_repeat(r: int, cmd: list[str], overrides: list[str], tmp: Path, env: dict, smoke: bool, device: str):
    """Every command once, in turn: {key: seconds}."""
    out = {"help_s": common.timed_run([*cmd, "--help"], env=env)[0]}
    out["train_help_s"] = common.timed_run([*cmd, "train", "--help"], env=env)[0]
    if not smoke:  # one interpreter start-up less in the smoke test
        out["import_torch_s"] = common.timed_run([sys.executable, "-c", "import torch"], env=env)[0]
    mnist_run = tmp / f"mnist_{r}"
    out.update(mnist_first_step(cmd, overrides, mnist_run, env))
    out["floor_s"] = common.timed_run([sys.executable, "-c", FLOOR], env=env)[0]
    default = ["trainer.steps=1", f"trainer.device={device}", f"hydra.run.dir={tmp / f'default_{r}'}"]
    out["train_s"] = common.timed_run([*cmd, "train", *default], env=env)[0]
    sample = [*cmd, "sample", str(mnist_run), "-n", "64", "-o", str(tmp / f"grid_{r}.png"), "--device", device]
    out["sample_s"] = common.timed_run(sample, env=env)[0]
    out["train_over_floor_s"] = out["train_s"] - out["floor_s"]
    out["sample_over_floor_s"] = out["sample_s"] - out["floor_s"]
    return out


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    device = common.setup(args)
    repeats = 1 if args.smoke else 5
    env = common.child_env(args)
    cmd = common.ganctl_command()
    results: dict[str, list[float]] = {k: [] for k in KEYS}
    with tempfile.TemporaryDirectory(prefix="ganctl_bench_") as tmp:
        tmp = Path(tmp)
        root, real = common.mnist_test_root(args.data_root, tmp, n=1000 if args.smoke else 10_000)
        overrides = common.train_overrides("mnist_bce", 1, 1, device, [f"dataset.root={root}", "dataset.split=test"])
        for r in range(repeats):
            for key, value in one_repeat(r, cmd, overrides, tmp, env, args.smoke, device).items():
                results[key].append(value)
    common.note(f"{repeats} repeats on {'the real' if real else 'generated'} MNIST test split")
    common.emit("startup", device, {k: statistics.median(v) if v else float("nan") for k, v in results.items()})


if __name__ == "__main__":
    sys.exit(main())
