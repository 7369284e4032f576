"""Each benchmark script runs with --smoke and prints its machine line and one line of numbers.

Nothing here asserts a speed: the numbers of a smoke run mean nothing, and the machine is shared.
"""

import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

# Keys every smoke run must report as finite, positive numbers (others may be nan: no CUDA, ...).
REQUIRED = {
    "train_speed": [
        "bce_ganctl",
        "bce_ganctl_min",
        "bce_ganctl_max",
        "bce_reference",
        "bce_resident",
        "bce_autograd",
        "ratio",
        "gaussian1d",
        "mnist_goodfellow",
        "svhn_wgan_gp",
    ],
    "sample_speed": ["n", "cli_wall_s", "cli_samples_per_s", "inproc_samples_per_s", "gen_samples_per_s"],
    "memory": ["images", "data_mb", "steps", "rss_peak_mb"],
    "startup": ["help_s", "train_help_s", "first_step_s", "to_loop_s", "train_wall_s"],
    "matmul_bound": [
        "mflop_step",
        "reference_mflop",
        "matmuls_step",
        "mm_ms_step",
        "gflops_shapes",
        "bound_steps_per_s",
        "gflops_square",
    ],
}


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def lines_by_name(stdout: str) -> dict[str, dict[str, float]]:
    """{'machine': {...}, 'train_speed': {...}}: each stdout line as name -> key=value (logfmt quoting)."""
    out = {}
    for line in stdout.splitlines():
        name, *pairs = shlex.split(line)
        fields = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            assert sep, f"{pair!r} in {line!r} is not key=value"
            fields[key] = value
        out[name] = fields
    return out


def check_result(stdout: str, name: str) -> dict[str, float]:
    lines = lines_by_name(stdout)
    assert {"machine", name} <= set(lines), stdout
    assert lines["machine"]["device"] == "cpu" and int(lines["machine"]["threads"]) >= 1
    values = {k: float(v) for k, v in lines[name].items()}  # every value is a number (nan allowed)
    for key in REQUIRED[name]:
        assert math.isfinite(values[key]) and values[key] > 0, (key, values)
    return values


@pytest.mark.parametrize("name", ["train_speed", "sample_speed", "memory", "startup"])
def test_script_smoke(name):
    proc = run_script(str(BENCH / f"{name}.py"), "--smoke", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    values = check_result(proc.stdout, name)
    if name == "train_speed":
        assert values["bce_ganctl_min"] <= values["bce_ganctl"] <= values["bce_ganctl_max"]
        assert values["real_data"] in (0.0, 1.0)
    if name == "memory":
        assert values["rss_peak_mb"] > values["data_mb"]


def test_run_all_forwards_smoke_and_relays_lines():
    """run_all.py runs the script in a subprocess with --smoke; the FLOP count is exact, not timed."""
    proc = run_script(str(BENCH / "run_all.py"), "--smoke", "--device", "cpu", "--only", "matmul_bound")
    assert proc.returncode == 0, proc.stderr[-3000:]
    values = check_result(proc.stdout, "matmul_bound")
    # Batch 64; G 64-256-256-784, D 784-256-256-1. D sees 128 stacked rows in the D phase, so its
    # FLOPs equal two 64-row passes. Forward-equivalents: G 4 (one no-grad forward, one forward,
    # two gradients) minus G's first input gradient; D 8 (2 forwards, 2 weight- and 2 input-gradient
    # passes in the D phase; a forward and input gradients in the G phase) minus D's first input
    # gradient twice (the D phase's inputs need none). The G phase computes no D weight gradients.
    g_fwd = 2 * 64 * (64 * 256 + 256 * 256 + 256 * 784)
    d_fwd = 2 * 64 * (784 * 256 + 256 * 256 + 256 * 1)
    d_first_dx = 2 * 64 * 784 * 256
    expected = 4 * g_fwd - 2 * 64 * 64 * 256 + 8 * d_fwd - 2 * d_first_dx
    assert values["mflop_step"] == pytest.approx(expected / 1e6, abs=0.05)
    assert values["mflop_counted"] == pytest.approx(values["mflop_step"], abs=0.05)
    assert values["reference_mflop"] == pytest.approx((expected + d_fwd) / 1e6, abs=0.05)
    # D phase: G 3 + D 3 forward, D 3 dW + 2 dX; G phase: G 3 + D 3 forward, D 3 dX, G 3 dW + 2 dX.
    # The manual step (the CPU default for mnist_bce) runs G's two forward passes as one.
    assert values["manual_step"] == 1
    assert values["matmuls_step"] == 22
