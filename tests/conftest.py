"""Shared fixtures: config composition, MNIST and Fashion-MNIST (the real files, or generated twins),
generated SVHN files, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
# The generated data's writers are the benchmarks' (one writer of each real format for both).
sys.path.insert(0, str(REPO / "benchmarks"))
import common  # noqa: E402

# GANCTL_TEST_DATA=generated runs the suite as a machine without ../shared/data would: MNIST and
# Fashion-MNIST come from generated twins in the same formats, even where the real files are.
DATA_MODES = ("auto", "generated")
DATA_MODE = os.environ.get("GANCTL_TEST_DATA", "auto")
if DATA_MODE not in DATA_MODES:
    raise pytest.UsageError(f"GANCTL_TEST_DATA={DATA_MODE!r}; accepted: {', '.join(DATA_MODES)}")


def compose(*overrides: str):
    """The typed run config Hydra composes for these overrides, as `ganctl train` would."""
    from ganctl.cli import compose_run_config

    return compose_run_config(overrides)


def straight_and_resumed(base: list[str], split: int, total: int, tmp_path: Path) -> tuple[dict, list[str]]:
    """`total` steps straight into tmp_path/straight; `split` steps into tmp_path/split, stopped and
    resumed there to `total`. Returns the checkpoint at the split and resume_config's changes."""
    from ganctl.cli import resume_config
    from ganctl.commands.train import run
    from ganctl.training import checkpoint

    run(compose(*base, f"trainer.steps={total}"), tmp_path / "straight")
    run(compose(*base, f"trainer.steps={split}"), tmp_path / "split")
    first = checkpoint.load(tmp_path / "split")
    cfg, changed = resume_config(first, [f"trainer.steps={total}"])
    run(cfg, tmp_path / "split", resume=first)
    return first, changed


def idx_root(folder: str, splits: dict, tmp_path_factory) -> Path:
    """SHARED_DATA when it holds FOLDER's splits, else a generated twin of them (sizes as the real ones)."""
    real = all(common.idx_path(SHARED_DATA, folder, split).is_file() for split in splits)
    if real and DATA_MODE == "auto":
        return SHARED_DATA
    root = tmp_path_factory.mktemp(f"generated_{folder}")
    for seed, (split, n) in enumerate(splits.items()):
        common.write_idx_twin(root, folder, split, n, seed=seed)
    return root


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A root holding MNIST's test split (10,000 images and labels), real or generated (idx_root)."""
    return idx_root("MNIST", {"test": 10_000}, tmp_path_factory)


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
    """A tiny MLP GAN trained for 5 steps on the MNIST test split (1 x 28 x 28, z_dim 64, normal),
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
def tiny_run(mnist_root, tmp_path_factory):
    """tiny_run(*overrides): a run trained 4 steps on the MNIST test split with these overrides
    (e.g. "+experiment=mnist_best", "model.width=8"), trained once per session and overrides."""
    from ganctl.commands.train import run

    done: dict[tuple[str, ...], Path] = {}

    def trained(*overrides: str) -> Path:
        if overrides not in done:
            folder = tmp_path_factory.mktemp("tiny_run") / "run"
            common = [f"dataset.root={mnist_root}", "dataset.split=test", "trainer.num_samples=16"]
            steps = ["trainer.steps=4", "trainer.log_every=2", "trainer.progress=false", "trainer.device=cpu"]
            run(compose(*overrides, *common, *steps), folder)
            done[overrides] = folder
        return done[overrides]

    return trained


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory) -> Path:
    """A root holding both Fashion-MNIST splits (60,000 + 10,000), real (Debian's package) or generated."""
    return idx_root("FashionMNIST", {"train": 60_000, "test": 10_000}, tmp_path_factory)


def write_svhn_mat(folder: Path, split: str, n: int, seed: int = 0) -> Path:
    """n generated images as FOLDER/SPLIT_32x32.mat in SVHN's real format (FOLDER is ROOT/SVHN)."""
    return common.write_svhn_mat(folder.parent, split, common.fake_svhn(n, seed), seed)


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
