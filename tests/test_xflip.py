"""dataset.xflip=true: every image's left-right mirror is a sample too (StyleGAN2-ADA's --mirror)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl.commands.train import run
from ganctl.data import dataset_size, load_dataset
from ganctl.errors import ConfigError
from ganctl.training import checkpoint
from ganctl.training.validate import validate

from conftest import TINY, compose


def test_mirrors_double_the_dataset_and_read_as_flipped_images(mnist_root):
    cfg = compose("+experiment=mnist_bce", f"dataset.root={mnist_root}", "dataset.split=test").dataset
    plain = load_dataset(cfg, torch.device("cpu"), labels=True)
    mirrored = load_dataset(dataclasses.replace(cfg, xflip=True), torch.device("cpu"), labels=True)
    n = len(plain)
    assert len(mirrored) == 2 * n == dataset_size(dataclasses.replace(cfg, xflip=True))
    idx = torch.tensor([0, 7, n + 0, n + 7, 2 * n - 1])
    x, ref = mirrored.batch(idx), plain.batch(torch.tensor([0, 7, 0, 7, n - 1]))
    # The same uint8 pixels moved, so the normalised values are equal exactly, not approximately.
    assert torch.equal(x[:2], ref[:2])
    assert torch.equal(x[2:], ref[2:].flip(-1))
    assert not torch.equal(x[2], x[0])  # a digit is not its own mirror image
    assert torch.equal(mirrored.batch_labels(idx), plain.batch_labels(torch.tensor([0, 7, 0, 7, n - 1])))


def test_points_refuse_mirroring_in_one_line():
    cfg = compose("+experiment=ring8", "dataset.xflip=true")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.lines == [
        "dataset.xflip=True is invalid; accepted: false for dataset=ring8 (mirroring doubles a set of images)"
    ]


def test_a_folder_trains_on_its_mirrored_images(tmp_path):
    """The run sees 2N samples: an epoch is twice the batches of the plain folder's."""
    rng = np.random.default_rng(0)
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(images / f"{i}.png")
    overrides = [
        "dataset=folder",
        f"dataset.path={images}",
        f"dataset.root={tmp_path / 'cache'}",
        "dataset.resolution=8",
        "model=dcgan",
        "model.width=4",
        "optim=adam",
        "trainer=default",
        "trainer.epochs=1",
        "trainer.steps=null",
        "trainer.batch_size=4",
        *[o for o in TINY if not o.startswith(("trainer.steps", "model."))],
    ]
    plain = run(compose(*overrides), tmp_path / "plain")
    mirrored = run(compose(*overrides, "dataset.xflip=true"), tmp_path / "mirrored")
    assert (plain["steps"], mirrored["steps"]) == (2, 4)
    assert checkpoint.load(tmp_path / "mirrored")["config"]["dataset"]["xflip"] is True
