"""Run every benchmark script, each in its own process, and print their lines plus a summary line.

    python benchmarks/run_all.py [--smoke] [--device D] [--threads N] [--data-root DIR] [--only NAME ...]

Options other than --only are forwarded to every script. The summary line relates the scripts'
numbers: ganctl's mnist_bce steps/s as a fraction of the matmul bound, mnist_best's as a fraction
of its conv bound, its profile's largest buckets and torch.compile's gain on it, ganctl's ratio
to the reference loops of setups 001 (bce), 002 (g1d) and 003 (conv), setup 002's whole-process
ratio to devnag's script, `make demo`'s seconds, and the CPU model and torch version. Exit status
1 if any script failed (the others still run).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "train_speed",
    "matmul_bound",
    "conv_bound",
    "profile_step",
    "compile_speed",
    "sample_speed",
    "memory",
    "startup",
    "whole_process",
]


TEXT_KEYS = ("cpu", "torch", "gpu")  # kept as text: a version like 2.5 would otherwise read as a number


def parse_line(line: str) -> tuple[str, dict[str, float | str]]:
    """A `name key=value ...` line as (name, {key: float}); the TEXT_KEYS and non-numbers stay text."""
    name, *pairs = shlex.split(line) or [""]
    values: dict[str, float | str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            values[key] = value if key in TEXT_KEYS else float(value)
        except ValueError:
            values[key] = value
    return name, values


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=SCRIPTS, default=SCRIPTS, help="run these scripts only")
    args, forwarded = p.parse_known_args()
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cores:
        # Measured here: with one other busy process on 2 cores, 2 OpenMP threads that spin while
        # they wait for each other made every training loop ~30x slower than 1 thread.
        print(
            f"[run_all] warning: load average {load:.1f} on {cores} cores; numbers will be noisy, and "
            "with several threads they can collapse (OpenMP spin-waiting): consider --threads 1",
            file=sys.stderr,
            flush=True,
        )
    results: dict[str, dict[str, float | str]] = {}
    machine: dict[str, float | str] = {}
    failed = []
    for name in [s for s in SCRIPTS if s in args.only]:
        start = time.perf_counter()
        print(f"[run_all] {name}", file=sys.stderr, flush=True)
        # Output is relayed as it comes; stderr (progress, notes) passes straight through.
        proc = subprocess.Popen(
            [sys.executable, str(HERE / f"{name}.py"), *forwarded], stdout=subprocess.PIPE, text=True
        )
        for line in proc.stdout:
            print(line, end="", flush=True)
            key, values = parse_line(line)
            if key == name:
                results[name] = values
            elif key == "machine" and not machine:
                machine = values
        if proc.wait() != 0 or name not in results:
            failed.append(name)
        print(
            f"[run_all] {name}: exit {proc.returncode} after {time.perf_counter() - start:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    summary = {}
    speed, bound = results.get("train_speed", {}), results.get("matmul_bound", {})
    if "bce_ganctl" in speed and "bound_steps_per_s" in bound:
        summary["bce_fraction_of_bound"] = speed["bce_ganctl"] / bound["bound_steps_per_s"]
        summary["resident_fraction_of_bound"] = speed["bce_resident"] / bound["bound_steps_per_s"]
    conv = results.get("conv_bound", {})
    if "fraction" in conv:
        # mnist_best's step against its convolutions' and products' time, measured in one script.
        summary["best_fraction_of_conv_bound"] = conv["fraction"]
        summary["best_conv_bound_steps_per_s"] = conv["bound_steps_per_s"]
    if "top" in results.get("profile_step", {}):
        summary["best_profile"] = results["profile_step"]["top"]
    compiled = results.get("compile_speed", {})
    if "speedup" in compiled:
        # torch.compile's steady gain on mnist_best (below 1: it costs) and what compiling took.
        summary["best_compile_speedup"] = compiled["speedup"]
        summary["best_compile_s"] = compiled["compile_s"]
    for key, label in (("ratio", "bce"), ("g1d_ratio", "g1d"), ("conv_ratio", "conv")):
        if key in speed:
            summary[f"{label}_ratio_to_reference"] = speed[key]
    whole = results.get("whole_process", {})
    if "g1d_whole_ratio" in whole:
        # Setup 002 as whole processes, start-up included, and the demo a newcomer runs first.
        summary["g1d_whole_ratio_to_script"] = whole["g1d_whole_ratio"]
        summary["demo_s"] = whole["demo_s"]
    # Where the numbers come from, so the summary line can be read alone.
    for key in ("cpu", "torch"):
        if key in speed or key in machine:
            summary[key] = speed.get(key, machine.get(key))
    if summary:
        print(
            "summary " + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f'{k}="{v}"' for k, v in summary.items()),
            flush=True,
        )
    if failed:
        print(f"[run_all] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
