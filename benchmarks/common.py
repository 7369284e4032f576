"""Shared pieces of the benchmark scripts: arguments, the machine line, result lines, and the
generated data in the real formats that the benchmarks and the tests (tests/conftest.py) use.

Every script prints two lines to stdout, both `name key=value ...`:
    machine cpu="AMD EPYC" cores=2 threads=2 torch=2.14.1 device=cpu
    <script> key=value key=value ...
Progress and notes go to stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The real MNIST test split that sits beside the repository (shared/data/MNIST/raw/...).
SHARED_DATA_CANDIDATES = (REPO.parent / "shared" / "data", Path("/work/shared/data"))
MNIST_TEST = Path("MNIST") / "raw" / "t10k-images-idx3-ubyte.gz"


def parser(description: str) -> argparse.ArgumentParser:
    """The options every script takes, so run_all.py can forward them to each one unchanged."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a handful of steps at tiny sizes: checks the script runs, measures nothing useful",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads, here and in ganctl subprocesses (default: torch's own "
        "choice, one per core; 1 with --smoke)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding MNIST/raw/t10k-images-idx3-ubyte.gz (default: ../shared/data); "
        "generated data of the same shape is used when it is missing",
    )
    return p


def setup(args: argparse.Namespace) -> str:
    """Apply --threads and resolve --device; returns the device string."""
    import torch

    if args.smoke and args.threads is None:
        # On a busy machine, OpenMP threads that wait for each other make tiny ops 10x slower;
        # a smoke run only has to finish quickly.
        args.threads = 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def resolve_device(spec: str) -> str:
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"benchmarks: --device {spec} but this machine has no CUDA device")
    return spec


def child_env(args: argparse.Namespace) -> dict:
    """Environment for subprocesses: same thread count as this process when --threads is given."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    return env


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(device: str) -> str:
    import torch

    fields = {
        "cpu": f'"{cpu_model()}"',
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__.split("+")[0],
        "device": device,
    }
    if device.startswith("cuda"):
        fields["gpu"] = f'"{torch.cuda.get_device_name(torch.device(device))}"'
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    fields["load1"] = f"{load:.2f}"  # other jobs on the machine make every number below noisier
    return "machine " + " ".join(f"{k}={v}" for k, v in fields.items())


def fmt(value: float | str) -> str:
    if isinstance(value, str):
        return f'"{value}"'  # quoted: run_all.py and the tests split lines with shlex
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, int):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}"


def emit(name: str, device: str, values: dict) -> None:
    """Print the machine line and the one result line."""
    print(machine_line(device), flush=True)
    print(name + " " + " ".join(f"{k}={fmt(v)}" for k, v in values.items()), flush=True)


def note(message: str) -> None:
    print(f"[{Path(sys.argv[0]).stem}] {message}", file=sys.stderr, flush=True)


def spread(prefix: str, values: Sequence[float]) -> dict:
    """prefix=median, prefix_min=..., prefix_max=... of repeated measurements."""
    return {prefix: statistics.median(values), f"{prefix}_min": min(values), f"{prefix}_max": max(values)}


# --- data -------------------------------------------------------------------------------------


def find_mnist_root(explicit: str | None) -> Path | None:
    """A folder holding the real MNIST test split, or None."""
    candidates = [Path(explicit).expanduser()] if explicit else list(SHARED_DATA_CANDIDATES)
    for root in candidates:
        if (root / MNIST_TEST).is_file():
            return root
    if explicit:
        note(f"--data-root {explicit} has no {MNIST_TEST}; using generated data")
    return None


def fake_digits(n: int, seed: int = 0) -> np.ndarray:
    """n uint8 28x28 images, MNIST-like in their statistics: mostly zero background, bright strokes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    x[rng.integers(0, 5, size=(n, 28, 28), dtype=np.uint8) != 0] = 0  # ~80% of MNIST pixels are 0
    return x


def write_idx(path: Path, array: np.ndarray) -> Path:
    """A uint8 array in the IDX format (gzipped when the name ends in .gz): images N x H x W, labels N."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two zero bytes, the type code 0x08 (unsigned bytes), the number of dimensions, then each
    # size as a big-endian int32: magic 2051 for images, 2049 for labels.
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=1) as f:  # level 1: 60k images compress in ~1 s
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


IDX_STEMS = {"train": "train-{}-idx{}-ubyte.gz", "test": "t10k-{}-idx{}-ubyte.gz"}


def idx_path(root: Path, folder: str, split: str, labels: bool = False) -> Path:
    """Where torchvision keeps a split's IDX file: ROOT/FOLDER/raw/ (FOLDER is MNIST or FashionMNIST)."""
    return root / folder / "raw" / IDX_STEMS[split].format(*(("labels", 1) if labels else ("images", 3)))


def write_mnist_idx(root: Path, split: str, images: np.ndarray) -> Path:
    """Write N x 28 x 28 uint8 images in MNIST's IDX format (gzip) where torchvision keeps them."""
    return write_idx(idx_path(root, "MNIST", split), images)


def read_mnist_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">i4")
    assert magic == 2051, f"{path}: not an IDX image file"
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


@dataclass(frozen=True)
class TwinStyle:
    """How a generated twin of an IDX dataset draws its ten classes (see idx_twin)."""

    template_seed: int  # the same ten class shapes in every split and every seed
    vertices: int  # corners of each class's stroke
    width: float  # the stroke's Gaussian profile, std in pixels
    gain: float  # brightness before clipping to 255


# Widths and gains chosen so that a twin's mean pixel matches the real test split's: 0.134 against
# MNIST's 0.133 (81% zero pixels against 81%), 0.288 against Fashion-MNIST's 0.287 (60% zeros
# against 50%): thin strokes on black, and broad shapes that fill more of the frame.
TWIN_STYLES = {
    "MNIST": TwinStyle(template_seed=28, vertices=5, width=1.1, gain=2.0),
    "FashionMNIST": TwinStyle(template_seed=70, vertices=7, width=2.3, gain=0.8),
}


def idx_twin(n: int, folder: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 28x28 images and their labels 0..9 in the manner of MNIST or Fashion-MNIST (`folder`).

    Each class is one fixed stroke (a polyline through random corners); each image moves it, bends
    it and thickens it at random, so a classifier can learn the classes and no two images are equal.
    The labels are balanced (exactly n // 10 of each class when n is a multiple of 10), like both
    real datasets.
    """
    style = TWIN_STYLES[folder]
    corners = np.random.default_rng(style.template_seed).uniform(6, 22, size=(10, style.vertices, 2))
    t = np.linspace(0, 1, 4, endpoint=False)[:, None]
    points = (corners[:, :-1, None] * (1 - t) + corners[:, 1:, None] * t).reshape(10, -1, 2)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    axis = np.arange(28, dtype=np.float32)
    images = np.empty((n, 28, 28), dtype=np.uint8)
    for lo in range(0, n, 1000):
        y = labels[lo : lo + 1000]
        shift = rng.normal(0, 2.0, size=(len(y), 1, 2))
        p = (points[y] + shift + rng.normal(0, 0.6, size=(len(y), points.shape[1], 2))).astype(np.float32)
        var = 2 * (style.width * rng.uniform(0.8, 1.2, size=(len(y), 1, 1))).astype(np.float32) ** 2
        # A Gaussian blob is separable, so the sum of one image's blobs is one matrix product of its
        # row profiles and column profiles: 10x faster than evaluating every blob on every pixel.
        rows = np.exp(-((axis - p[:, :, 0, None]) ** 2) / var)
        cols = np.exp(-((axis - p[:, :, 1, None]) ** 2) / var)
        ink = rows.transpose(0, 2, 1) @ cols
        # The offset leaves most of the frame exactly 0, as in the real data; the gain saturates strokes.
        images[lo : lo + len(y)] = np.round(255 * np.clip(ink * style.gain - 0.15, 0, 1))
    return images, labels


def write_idx_twin(root: Path, folder: str, split: str, n: int, seed: int = 0) -> Path:
    """Write a generated split (images and labels) as ROOT/FOLDER/raw/*-idx*-ubyte.gz; returns root."""
    images, labels = idx_twin(n, folder, seed)
    write_idx(idx_path(root, folder, split), images)
    write_idx(idx_path(root, folder, split, labels=True), labels)
    return root


def mnist_test_root(explicit: str | None, tmp: Path, n: int = 10_000) -> tuple[Path, bool]:
    """(root with MNIST/raw/t10k-images-idx3-ubyte.gz, whether it is the real data)."""
    root = find_mnist_root(explicit)
    if root is not None:
        return root, True
    note(f"real MNIST test split not found; generating {n} images of the same shape")
    return write_idx_twin(tmp / "mnist_data", "MNIST", "test", n), False


def blob_digits(n: int, seed: int = 0) -> np.ndarray:
    """n uint8 28x28 digit-like images: the images of idx_twin's MNIST twin."""
    return idx_twin(n, "MNIST", seed)[0]


def fake_svhn(n: int, seed: int = 0) -> np.ndarray:
    """n uint8 32x32x3 (H, W, C) images: one smooth colour blob each (structure a few steps can see)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    cy, cx = rng.uniform(8, 24, size=(2, n, 1, 1)).astype(np.float32)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40.0)
    colour = rng.uniform(0.3, 1.0, size=(n, 1, 1, 3)).astype(np.float32)
    return (255 * blob[..., None] * colour).astype(np.uint8)


def write_image_folder(folder: Path, side: int, n: int, seed: int = 0) -> Path:
    """n RGB PNGs of side x side px: smooth random colour fields, for dataset=folder at any size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)  # upsampled: blobs, not noise
        Image.fromarray(coarse).resize((side, side), Image.BICUBIC).save(folder / f"{i:04d}.png")
    return folder


def write_svhn_mat(root: Path, split: str, images: np.ndarray, seed: int = 0) -> Path:
    """Write N x 32 x 32 x 3 uint8 images as ROOT/SVHN/SPLIT_32x32.mat in SVHN's real format.

    SVHN's files hold X uint8 32x32x3xN and y uint8 Nx1 in 1..10 (10 means digit 0).
    """
    import scipy.io

    # Every digit in turn, shuffled: a file of 10 or more images holds each class, 10 (digit 0) too.
    y = 1 + np.random.default_rng(seed).permutation(np.arange(len(images)) % 10)[:, None].astype(np.uint8)
    folder = root / "SVHN"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}_32x32.mat"
    scipy.io.savemat(str(path), {"X": np.ascontiguousarray(images.transpose(1, 2, 3, 0)), "y": y})
    return path


# --- ganctl -----------------------------------------------------------------------------------


def ganctl_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m ganctl`."""
    script = Path(sys.executable).with_name("ganctl")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("ganctl")
    return [found] if found else [sys.executable, "-m", "ganctl"]


def timed_run(
    cmd: Sequence[str], env: dict | None = None, timeout: float = 600, cwd: Path | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one subprocess; exits with its stderr if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(
            f"benchmarks: {' '.join(cmd)} failed with exit status {proc.returncode}:\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
        )
    return wall, proc


def train_overrides(experiment: str, steps: int, log_every: int, device: str, extra: Iterable[str] = ()) -> list[str]:
    """Overrides for a timed ganctl run: no progress bar; samples and a checkpoint only at the end."""
    return [
        f"+experiment={experiment}",
        f"trainer.steps={steps}",
        f"trainer.log_every={log_every}",
        "trainer.progress=false",
        f"trainer.device={device}",
        f"trainer.sample_every={steps}",
        f"trainer.ckpt_every={steps}",
        *extra,
    ]


def steady_rate(metrics_csv: Path) -> float:
    """steps/s between the first and the last metrics.csv row: the first log interval is warm-up.

    Each row's `time` is seconds since the loop started, taken right after that row's logging
    work; sample grids and checkpoints at the last step are written after its row, so they are
    outside the window. What is inside is everything the loop does per step, logging included.
    """
    import csv

    with open(metrics_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    if len(rows) < 2:
        raise RuntimeError(f"{metrics_csv}: need at least 2 rows (warm-up + measured), got {len(rows)}")
    first, last = rows[0], rows[-1]
    return (int(last["step"]) - int(first["step"])) / (float(last["time"]) - float(first["time"]))


def write_standin_inception(path: Path, seed: int = 0) -> Path:
    """A seeded random initialisation of the FID Inception-v3, saved as a weights file: the same
    architecture, keys and shapes as the real file, for offline tests and timings (not real scores).

    He-normal convolutions (the layers run conv -> BatchNorm -> ReLU with identity BatchNorm
    statistics) keep the activations near unit scale to the pool features, where PyTorch's default
    initialisation would shrink them by ~3x per layer towards zero.
    """
    import torch

    from ganctl import inception

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = inception.architecture("cpu")
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)
    return path
