"""Shared fixtures: config composition, the real MNIST test split, generated SVHN files, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# One intra-op thread per test process: two pytest workers (make test) and the CLI subprocesses
# they start share two cores; more threads than cores made tiny-tensor steps 10x slower here.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"
# trainer.backward/cpu_matmul=auto time their candidates and cache the pick (ganctl.autotune). A
# test that compares two runs bit for bit must not see two picks (two xdist workers can measure
# the same key differently), so the suite runs the plain path unless a test asks for a path, or
# for the measurement itself with GANCTL_AUTOTUNE=fresh and a temporary GANCTL_CACHE.
os.environ["GANCTL_AUTOTUNE"] = "off"

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """The CPU suite runs on the CPU on every machine: `trainer.device=auto` would otherwise pick a
    GPU where one exists, turning CPU tests (bitwise resume, refusals of cuda, gloo DDP) into
    something else. Only `pytest -m cuda` (make gpu-check) sees the GPUs. CUDA initialises lazily,
    so hiding the devices here, before any test runs, holds for this process and its children."""
    if "cuda" not in (config.getoption("markexpr") or ""):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run with pytest -m cuda on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


SHARED_DATA = REPO.parent / "shared" / "data"


def compose(*overrides: str):
    """The typed run config Hydra composes for these overrides, as `ganctl train` would."""
    from ganctl.cli import compose_run_config

    return compose_run_config(overrides)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The real MNIST test split that sits beside the repository (10,000 images)."""
    if not (SHARED_DATA / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST test split not found under {SHARED_DATA}")
    return SHARED_DATA


# A tiny MLP GAN's training overrides: 5 steps, one log row, 32-unit layers, on the CPU.
TINY = [
    "trainer.steps=5",
    "trainer.log_every=5",
    "trainer.progress=false",
    "model.g_hidden=[32]",
    "model.d_hidden=[32]",
    "trainer.device=cpu",
]


@pytest.fixture(scope="session")
def mnist_run(mnist_root, tmp_path_factory):
    """A tiny MLP GAN trained for 5 steps on the real MNIST test split (1 x 28 x 28, z_dim 64, normal),
    for the tests that sample, interpolate or evaluate a trained generator."""
    from ganctl.commands.train import run

    run_dir = tmp_path_factory.mktemp("mnist_run")
    run(
        compose(
            "+experiment=mnist_bce",
            f"dataset.root={mnist_root}",
            "dataset.split=test",
            *TINY,
        ),
        run_dir,
    )
    return run_dir


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    """The real Fashion-MNIST files beside the repository (Debian's package: 60,000 + 10,000)."""
    if not (SHARED_DATA / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real Fashion-MNIST not found under {SHARED_DATA}")
    return SHARED_DATA


def write_svhn_mat(folder: Path, split: str, n: int, seed: int = 0) -> Path:
    """A small file in SVHN's real format: X uint8 32x32x3xN, y 1..10 (10 means digit 0)."""
    import scipy.io

    rng = np.random.default_rng(seed)
    # Smooth colour blobs rather than white noise, so a few steps of training see structure.
    yy, xx = np.mgrid[0:32, 0:32]
    X = np.empty((32, 32, 3, n), dtype=np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(8, 24, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40.0)
        colour = rng.uniform(0.3, 1.0, size=3)
        X[..., i] = (255 * blob[..., None] * colour).astype(np.uint8)
    y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}_32x32.mat"
    scipy.io.savemat(str(path), {"X": X, "y": y})
    return path


@pytest.fixture(scope="session")
def svhn_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("svhn_data")
    write_svhn_mat(root / "SVHN", "train", 256, seed=0)
    write_svhn_mat(root / "SVHN", "test", 128, seed=1)
    return root


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None):
    """Run the real `ganctl` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ganctl", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
