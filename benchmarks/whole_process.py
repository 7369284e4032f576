"""Whole processes, start-up included: setup 002 in ganctl against devnag's script, and `make demo`.

One result line, `whole_process key=value ...` (medians over the repeats):
  g1d_ganctl_s      wall seconds of `ganctl train +experiment=gaussian1d trainer.steps=E`: interpreter,
                    imports, config, E iterations of 20 D + 20 G updates, and the run's files
                    (metrics, curves, histograms, checkpoint), until the process exits
  g1d_script_s      wall seconds of devnag's gan_pytorch.py loop (train_speed.Gaussian1dReference,
                    plots off) run as its own `python` process for the same E epochs
  g1d_whole_ratio   the median of each repeat's g1d_script_s / g1d_ganctl_s; _min, _max over repeats
  epochs            E (500, as issue #28 measured it; 20 with --smoke)
  demo_s            wall seconds of the command `make demo` runs (ring8, 3,000 steps, its GIF and
                    plots), the package already installed: what a newcomer waits for
  demo_train_s      the part of demo_s in the training loop (its last metrics row's `time`)
The two setup-002 processes run in turn within each repeat, so a drifting host slows both alike.
The children inherit this process's environment (with --threads, that thread count), as a user's
shell would give it to both.
"""

from __future__ import annotations

import csv
import statistics
import sys
import tempfile
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from train_speed import Gaussian1dReference
loop = Gaussian1dReference("cpu")
for _ in range({epochs}):
    loop.step()
"""
DEMO = ["+experiment=ring8", "seed=1", "trainer.sample_every=250", "overwrite=true"]  # Makefile's demo


def setup002(cmd: list[str], env: dict, tmp: Path, r: int, epochs: int) -> tuple[float, float]:
    """(ganctl's, the script's) wall seconds for one repeat."""
    run = [*cmd, "train", "+experiment=gaussian1d", f"trainer.steps={epochs}", f"hydra.run.dir={tmp / f'g1d_{r}'}"]
    ganctl_s, _ = common.timed_run(run, env=env)
    script_s, _ = common.timed_run([sys.executable, "-c", SCRIPT.format(here=str(HERE), epochs=epochs)], env=env)
    return ganctl_s, script_s


def demo(cmd: list[str], env: dict, tmp: Path, smoke: bool) -> tuple[float, float]:
    """(whole, training loop) seconds of the demo's command."""
    out = tmp / "demo"
    extra = ["trainer.steps=100", "trainer.sample_every=50"] if smoke else []
    wall, _ = common.timed_run([*cmd, "train", *DEMO, *extra, f"hydra.run.dir={out}"], env=env)
    with open(out / "metrics.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    return wall, float(last["time"])


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    device = common.setup(args)
    repeats, epochs = (1, 20) if args.smoke else (3, 500)
    env, cmd = common.child_env(args), common.ganctl_command()
    times: dict[str, list[float]] = {"g1d_ganctl_s": [], "g1d_script_s": [], "ratio": []}
    with tempfile.TemporaryDirectory(prefix="ganctl_whole_") as tmp:
        tmp = Path(tmp)
        for r in range(repeats):
            ganctl_s, script_s = setup002(cmd, env, tmp, r, epochs)
            common.note(f"repeat {r + 1}: ganctl {ganctl_s:.2f} s, devnag's script {script_s:.2f} s")
            times["g1d_ganctl_s"].append(ganctl_s)
            times["g1d_script_s"].append(script_s)
            times["ratio"].append(script_s / ganctl_s)
        demo_s, demo_train_s = demo(cmd, env, tmp, args.smoke)
    values = {k: statistics.median(v) for k, v in times.items() if k != "ratio"}
    values.update(common.spread("g1d_whole_ratio", times["ratio"]))
    values.update(epochs=epochs, demo_s=demo_s, demo_train_s=demo_train_s, cpu=common.cpu_model())
    common.emit("whole_process", device, values)


if __name__ == "__main__":
    sys.exit(main())
