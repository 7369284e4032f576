"""Each benchmark script runs with --smoke and prints its machine line and one line of numbers;
gpu_check.py runs its dry run (CPU, tiny sizes) and writes its summary.

Nothing here asserts a speed: the numbers of a smoke run mean nothing, and the machine is shared.
"""

import json
import math
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))  # the scripts import their shared module as `common`
TEXT_KEYS = {"cpu", "torch", "gpu", "conv_precision", "best_precision", "precision", "top"}  # names, not numbers

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
        "g1d_ganctl",
        "g1d_ganctl_min",
        "g1d_ganctl_max",
        "g1d_reference",
        "g1d_reference_min",
        "g1d_reference_max",
        "g1d_ratio",
        "conv_ganctl",
        "conv_ganctl_min",
        "conv_ganctl_max",
        "conv_reference",
        "conv_reference_min",
        "conv_reference_max",
        "conv_ratio",
        "conv_auto",
        "conv_auto_ratio",
        "best_ganctl",
        "best_reference",
        "best_ratio",
        "best_auto",
        "best_auto_ratio",
    ],
    "conv_bound": [
        "conv_ms_step",
        "mm_ms_step",
        "bound_ms_step",
        "bound_steps_per_s",
        "gflop_step",
        "calls_step",
        "r1_ms",
        "ganctl_steps_per_s",
        "ganctl_ms_step",
        "fraction",
    ],
    "profile_step": ["wall_ms_step", "convolutions_ms", "convolutions_share", "optimiser_ms", "spectral_ms"],
    "sample_speed": ["n", "cli_wall_s", "cli_samples_per_s", "inproc_samples_per_s", "gen_samples_per_s"],
    "memory": ["images", "data_mb", "steps", "rss_peak_mb"],
    "startup": ["help_s", "train_help_s", "first_step_s", "to_loop_s", "train_wall_s"],
    "whole_process": ["g1d_ganctl_s", "g1d_script_s", "g1d_whole_ratio", "epochs", "demo_s", "demo_train_s"],
    "compile_speed": ["eager_steps_per_s", "compiled_steps_per_s", "speedup"],
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
    # Every value but the names is a number (nan allowed).
    values = {k: float(v) for k, v in lines[name].items() if k not in TEXT_KEYS}
    for key in REQUIRED[name]:
        assert math.isfinite(values[key]) and values[key] > 0, (key, values)
    return values


@pytest.mark.parametrize(
    "name",
    [
        "train_speed",
        "conv_bound",
        "profile_step",
        "sample_speed",
        "memory",
        "startup",
        "whole_process",
        "compile_speed",
    ],
)
def test_script_smoke(name, mnist_root):
    if name == "compile_speed" and not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("torch.compile's CPU backend needs a C++ compiler, and none is on PATH")
    # The suite's MNIST (the real split, or its generated twin) serves the scripts that read one.
    proc = run_script(str(BENCH / f"{name}.py"), "--smoke", "--device", "cpu", "--data-root", str(mnist_root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    values = check_result(proc.stdout, name)
    if name == "train_speed":
        for prefix in ("bce_ganctl", "g1d_ganctl", "g1d_reference", "conv_ganctl", "conv_reference", "conv_auto"):
            assert values[f"{prefix}_min"] <= values[prefix] <= values[f"{prefix}_max"], prefix
        for prefix in ("best_ganctl", "best_reference", "best_auto"):
            assert values[f"{prefix}_min"] <= values[prefix] <= values[f"{prefix}_max"], prefix
        fields = lines_by_name(proc.stdout)["train_speed"]
        assert fields["conv_precision"] in ("fp32", "bf16") and fields["best_precision"] in ("fp32", "bf16")
        assert values["real_data"] in (0.0, 1.0)
        # Printed values are rounded (2 decimals between 1 and 100), hence the tolerance.
        for pair in ("g1d", "conv"):
            expected = values[f"{pair}_ganctl"] / values[f"{pair}_reference"]
            assert values[f"{pair}_ratio"] == pytest.approx(expected, rel=0.02), pair
        fields = lines_by_name(proc.stdout)
        import torch

        assert fields["train_speed"]["cpu"] == fields["machine"]["cpu"] != ""
        assert fields["train_speed"]["torch"] == torch.__version__.split("+")[0]
    if name == "memory":
        assert values["rss_peak_mb"] > values["data_mb"]
    if name == "conv_bound":
        # Printed values are rounded to 3-4 significant digits, hence the tolerance.
        assert values["bound_ms_step"] == pytest.approx(values["conv_ms_step"] + values["mm_ms_step"], rel=0.01)
        assert values["fraction"] == pytest.approx(values["bound_ms_step"] / values["ganctl_ms_step"], rel=0.01)
        # The lazy R1 update differentiates D twice: more products than a plain D update.
        assert values["r1_ms"] > 0 and values["channels_last"] in (0.0, 1.0)
    if name == "whole_process":
        # Printed values are rounded to 3-4 significant digits, hence the tolerance; one repeat.
        assert values["g1d_whole_ratio"] == pytest.approx(values["g1d_script_s"] / values["g1d_ganctl_s"], rel=0.01)
        assert values["demo_train_s"] < values["demo_s"]  # the loop is part of the whole process
    if name == "compile_speed":
        # The printed speeds are rounded to 4 significant digits: 1% holds the ratio's rounding.
        assert values["speedup"] == pytest.approx(
            values["compiled_steps_per_s"] / values["eager_steps_per_s"], rel=0.01
        )
    if name == "profile_step":
        shares = [v for k, v in values.items() if k.endswith("_share")]
        assert len(shares) == 12 and sum(shares) == pytest.approx(1.0, abs=0.01)  # every bucket, rounded


def test_run_all_forwards_smoke_and_relays_lines():
    """run_all.py runs the scripts in subprocesses with --smoke; the FLOP count is exact, not timed."""
    proc = run_script(str(BENCH / "run_all.py"), "--smoke", "--device", "cpu", "--only", "train_speed", "matmul_bound")
    assert proc.returncode == 0, proc.stderr[-3000:]
    values = check_result(proc.stdout, "matmul_bound")
    speed = check_result(proc.stdout, "train_speed")
    lines = lines_by_name(proc.stdout)
    summary = {k: v if k in TEXT_KEYS else float(v) for k, v in lines["summary"].items()}
    # The summary carries the three ratios (3 significant digits) and where they were measured.
    for key, label in (("ratio", "bce"), ("g1d_ratio", "g1d"), ("conv_ratio", "conv")):
        assert summary[f"{label}_ratio_to_reference"] == pytest.approx(speed[key], rel=5e-3)
    assert summary["bce_fraction_of_bound"] == pytest.approx(
        speed["bce_ganctl"] / values["bound_steps_per_s"], rel=5e-3
    )
    assert summary["cpu"] == lines["train_speed"]["cpu"] and summary["torch"] == lines["train_speed"]["torch"]
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
    # How many products the step launches depends on which backward the CPU default takes: the
    # script only has to have counted some (the FLOPs above are what it must get exactly right).
    assert values["matmuls_step"] >= 1 and values["manual_step"] in (0.0, 1.0)


def test_generated_data_reads_back_in_the_real_formats(tmp_path):
    """gpu_check's data: MNIST IDX (gzip) and SVHN .mat, read back the way ganctl's loaders see them."""
    import scipy.io

    import common

    digits = common.blob_digits(50, seed=3)
    assert digits.shape == (50, 28, 28) and digits.dtype == np.uint8
    # Digit-like: dark background, a bright stroke in every image.
    assert (digits == 0).mean() > 0.5 and (digits.reshape(50, -1).max(axis=1) > 200).all()
    path = common.write_mnist_idx(tmp_path, "test", digits)
    assert path == tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    assert np.array_equal(common.read_mnist_idx(path), digits)

    images = common.fake_svhn(20, seed=1)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8 and images.max() > 100
    mat = scipy.io.loadmat(str(common.write_svhn_mat(tmp_path, "train", images)))
    assert mat["X"].shape == (32, 32, 3, 20) and mat["X"].dtype == np.uint8
    assert np.array_equal(mat["X"][..., 7], images[7])  # SVHN keeps H x W x C x N
    assert mat["y"].shape == (20, 1) and set(np.unique(mat["y"])) <= set(range(1, 11))


@pytest.mark.parametrize("folder, name, mean", [("MNIST", "mnist", 0.133), ("FashionMNIST", "fashion_mnist", 0.287)])
def test_idx_twins_stand_in_for_the_real_files(folder, name, mean, tmp_path):
    """The tests' stand-ins where ../shared/data is absent: ganctl reads them as the real splits,
    and they keep what the tests assert of the real data (sizes, balanced labels, brightness)."""
    import torch

    from ganctl.config import DatasetConfig
    from ganctl.data import dataset_size, load_dataset, load_idx_labels

    import common

    images, labels = common.idx_twin(1000, folder, seed=0)
    assert np.array_equal(images, common.idx_twin(1000, folder, seed=0)[0])  # the same seed draws the same
    common.write_idx_twin(tmp_path, folder, "test", 1000, seed=0)
    cfg = DatasetConfig(name=name, root=str(tmp_path), split="test", download=False)
    assert dataset_size(cfg) == 1000
    assert np.array_equal(load_dataset(cfg, torch.device("cpu")).data[:, 0].numpy(), images)
    assert np.array_equal(load_idx_labels(cfg), labels) and np.bincount(labels).tolist() == [100] * 10
    assert images.mean() / 255 == pytest.approx(mean, abs=0.005)  # the real test split's mean pixel
    assert len(np.unique(images.reshape(1000, -1), axis=0)) == 1000  # no two images alike
    # The classes differ as the real ones do: the nearest class-mean image names the class of 0.76
    # (MNIST twin) and 0.65 (Fashion twin) of these images, 0.83 and 0.67 of the real test splits'
    # first 1,000; chance is 0.1.
    centres = np.stack([images[labels == c].reshape(-1, 784).mean(0) for c in range(10)])
    nearest = ((images.reshape(-1, 1, 784) - centres) ** 2).sum(-1).argmin(1)
    assert (nearest == labels).mean() > 0.5


def test_gpu_check_step_time_limit(tmp_path):
    """A step that runs past its limit is killed and recorded as a timeout; the caller goes on."""
    import time

    import gpu_check

    start = time.perf_counter()
    result = gpu_check.run_command(
        "sleeper", [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"], 2.0, tmp_path, None
    )
    assert result["status"] == "timeout" and result["rc"] is None
    assert time.perf_counter() - start < 20
    assert "up" in (tmp_path / "sleeper.log").read_text()
    ok = gpu_check.run_command(
        "talker", [sys.executable, "-c", f"print({gpu_check.RESULT_TAG!r} + '{{\"x\": 2}}')"], 30.0, tmp_path, None
    )
    assert ok["status"] == "ok" and gpu_check.child_result(ok["output"]) == {"x": 2}


def test_gpu_check_dry_run(tmp_path):
    """gpu_check.py --dry-run runs its steps on CPU and writes summary.json and summary.md.

    The slowest steps (pytest, torch.compile, memory.py, DDP: each covered elsewhere in the suite)
    are skipped here to keep the test short; --skip records them as skipped.
    """
    skipped = ["pytest_cuda", "bce_compile", "memory", "ddp", "fastgan_256"]  # fastgan_128 runs the same child
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "gpu_check.py"),
            "--dry-run",
            "--out",
            str(tmp_path),
            "--budget",
            "200",
            "--skip",
            *skipped,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "done in" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dry_run"] is True and summary["device"] == "cpu" and summary["failed"] == []
    steps = summary["steps"]
    assert list(steps) == [
        "versions",
        "pytest_cuda",
        "bce_pair",
        "bce_bf16",
        "svhn_eager",
        "svhn_channels_last",
        "bce_compile",
        "memory",
        "ddp",
        "fastgan_128",
        "fastgan_256",
        "fastgan_fit",
        "bce_reduce_overhead",
    ]
    for name in skipped:
        assert steps[name] == {"status": "skipped", "note": "--skip", "wall_s": 0.0}
    assert steps["bce_reduce_overhead"]["status"] == "skipped"  # CUDA graphs: CUDA only
    import torch

    assert summary["torch"] == torch.__version__ and summary["device_count"] == 0
    pair = steps["bce_pair"]["values"]
    assert steps["bce_pair"]["status"] == "ok" and pair["meets_floor"] is None
    for key in ("ganctl", "reference", "resident", "ratio"):
        assert math.isfinite(pair[key]) and pair[key] > 0, (key, pair)
    assert pair["ratio"] == pytest.approx(pair["ganctl"] / pair["reference"], rel=0.01)
    fit = steps["fastgan_fit"]
    # Dry sizes: per-device batches 2 and 4 at 32 px, both fit in the CPU's memory.
    assert fit["status"] == "ok" and fit["values"]["largest_batch_gpu"] == 4 and fit["values"]["first_oom"] is None
    for name in ("bce_bf16", "svhn_eager", "svhn_channels_last"):
        assert steps[name]["status"] == "ok", steps[name]
        assert steps[name]["values"]["steps_per_s"] > 0 and steps[name]["values"]["steps"] >= 1
    fastgan = steps["fastgan_128"]
    assert fastgan["status"] == "ok", fastgan
    assert fastgan["values"]["side"] == 32 and fastgan["values"]["steps_per_s"] > 0  # the dry run's tiny side
    assert fastgan["values"]["cuda_peak_alloc_mb"] is None  # no CUDA in the dry run
    markdown = (tmp_path / "summary.md").read_text()
    assert "| bce_pair | ok |" in markdown and "| memory | skipped |" in markdown
    assert f"**{pair['ratio']:.1f}x**" in markdown
    assert (tmp_path / "logs" / "svhn_eager.log").read_text().startswith("$ ")
