"""Choosing image data without an experiment trains the modern recipe (launch/recipe.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import ganctl
from ganctl.launch.recipe import image_recipe, r1_gamma

from conftest import run_cli


def test_image_data_alone_gets_the_recipe_scaled_to_its_resolution():
    cfg = ganctl.compose(None, "dataset=folder", "dataset.path=imgs")
    assert (cfg.model.arch, cfg.loss.name, cfg.optim.name) == ("dcgan", "hinge", "adam")
    assert (cfg.model.width, cfg.model.g_norm, cfg.model.d_spectral_norm) == (32, "batch", True)
    assert (cfg.trainer.steps, cfg.trainer.batch_size, list(cfg.trainer.augment)) == (10000, 64, ["translation"])
    # 4 x 2e-4 x R^2 / 64: mnist_best's 0.01 at 28 px, and 4x that for twice the side.
    assert cfg.loss.r1_gamma == pytest.approx(0.0512)
    assert ganctl.compose(None, "dataset=folder", "dataset.path=imgs", "dataset.resolution=32").loss.r1_gamma == (
        pytest.approx(0.0128)
    )
    mnist = ganctl.compose(None, "dataset=mnist")
    assert mnist.model.arch == "dcgan" and mnist.loss.r1_gamma == pytest.approx(r1_gamma(28)) == pytest.approx(0.0098)


def test_what_the_user_says_wins():
    cfg = ganctl.compose(None, "dataset=folder", "dataset.path=imgs", "model=mlp", "optim.lr=1e-3")
    # The user's group keeps its own defaults: none of the recipe's model keys reach the MLP.
    assert (cfg.model.arch, cfg.model.width, cfg.model.g_norm) == ("mlp", 64, "none")
    assert (cfg.optim.name, cfg.optim.lr, cfg.loss.name) == ("adam", 1e-3, "hinge")
    # An experiment is a whole recipe of its own, and points and the default config get none.
    classic = ganctl.compose("mnist_bce")
    assert (classic.model.arch, classic.loss.name, classic.trainer.steps) == ("mlp", "bce", None)
    for command in ([], ["dataset=ring8"], ["dataset=gaussian1d"], ["+experiment=mnist_best", "dataset=folder"]):
        assert image_recipe(command) == []


def test_the_readme_folder_command_trains(tmp_path):
    """`ganctl train dataset=folder dataset.path=DIR` stopped on setup 002's moments features."""
    rng = np.random.default_rng(1)
    (tmp_path / "imgs").mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    command = [
        "train",
        "dataset=folder",
        f"dataset.path={tmp_path / 'imgs'}",
        f"dataset.root={tmp_path / 'cache'}",
        "dataset.resolution=16",
        "trainer.steps=2",
        "trainer.batch_size=4",
        "trainer.progress=false",
        "trainer.device=cpu",
    ]
    proc = run_cli(*command, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert "- model=dcgan" in (tmp_path / "run" / ".hydra" / "overrides.yaml").read_text()
    # The same command with resume= (as a requeued job runs it) gets the same recipe: only the
    # key it changes differs from the checkpoint's config.
    longer = [a if a != "trainer.steps=2" else "trainer.steps=3" for a in command]
    proc = run_cli(*longer, f"resume={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "changed: trainer.steps: 2 -> 3" in proc.stdout, proc.stdout
