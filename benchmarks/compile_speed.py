"""torch.compile on this machine: mnist_best eager (the fast-path pick) against trainer.compile=true.

One result line, `compile_speed key=value ...`:
  eager_steps_per_s     ganctl's steady steps/s of +experiment=mnist_best as the fast-path pick runs it
                        (median, _min, _max over the repeats)
  compiled_steps_per_s  the same run with trainer.compile=true (inductor; G, D and D in G's phase
                        compiled, the lazy R1's double backward eager), interleaved with the eager
                        repeats in this one process
  speedup               median(compiled) / median(eager): above 1 where compiling pays per step
  compile_s             the compiled run's first log interval minus the eager one's: compiling and
                        the first-call costs it adds (the first repeat's; later repeats reuse
                        inductor's on-disk cache and say little about a fresh machine)
  break_even_steps      steps after which the compile time is paid back (nan where it never is)
The steady rate excludes the first log interval; `--set KEY=VALUE` adds overrides to both runs.
"""

from __future__ import annotations

import csv
import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import common


def first_interval_s(run_dir: Path) -> float:
    """Seconds from the loop's start to the first metrics row."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return float(next(csv.DictReader(f))["time"])


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override of both runs")
    args = p.parse_args()
    device = common.setup(args)
    if device == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
        # Inductor writes C++ for the CPU: without a compiler there is nothing to time.
        common.note("no C++ compiler on PATH: torch.compile cannot run on the CPU here")
        common.emit("compile_speed", device, {"speedup": math.nan, "compile_s": math.nan, "cpu": common.cpu_model()})
        return
    import train_speed

    warmup, window, repeats = (2, 2, 1) if args.smoke else (50, 200, 2)
    rates: dict[str, list[float]] = {"eager": [], "compiled": []}
    first: dict[str, list[float]] = {"eager": [], "compiled": []}
    with tempfile.TemporaryDirectory(prefix="ganctl_compile_") as tmp:
        root, real = common.mnist_test_root(args.data_root, Path(tmp), n=1000 if args.smoke else 10_000)
        extra = [f"dataset.root={root}", "dataset.split=test", *args.set] + (["model.width=8"] if args.smoke else [])
        for r in range(repeats):
            for kind, more in (("eager", []), ("compiled", ["trainer.compile=true"])):
                overrides = common.train_overrides("mnist_best", warmup + window, warmup, device, extra + more)
                run_dir = Path(tmp) / f"{kind}_{r}"
                rates[kind].append(train_speed.ganctl_rate(overrides, run_dir))
                first[kind].append(first_interval_s(run_dir))
                rate, head = rates[kind][-1], first[kind][-1]
                common.note(f"repeat {r + 1} {kind}: {rate:.2f} steps/s, first interval {head:.1f} s")
    eager, compiled = statistics.median(rates["eager"]), statistics.median(rates["compiled"])
    compile_s = first["compiled"][0] - first["eager"][0]
    saved_per_step = 1 / eager - 1 / compiled
    values = common.spread("eager_steps_per_s", rates["eager"])
    values.update(common.spread("compiled_steps_per_s", rates["compiled"]))
    values["speedup"] = compiled / eager
    values["compile_s"] = compile_s
    values["break_even_steps"] = compile_s / saved_per_step if saved_per_step > 0 else math.nan
    values["real_data"] = int(real)
    values["cpu"] = common.cpu_model()
    common.emit("compile_speed", device, values)


if __name__ == "__main__":
    sys.exit(main())
