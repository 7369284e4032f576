"""Datasets on disk in their real formats, and the on-device batch sampler."""
import numpy as np
import pytest
import torch

from conftest import write_svhn_mat
from ganctl.config import DatasetConfig
from ganctl.data import BatchSampler, dataset_size, load_dataset
from ganctl.errors import DataError


def test_mnist_test_split(mnist_root):
    cfg = DatasetConfig(name="mnist", root=str(mnist_root), split="test", download=False)
    data = load_dataset(cfg, torch.device("cpu"))
    assert data.data.shape == (10000, 1, 28, 28) and data.data.dtype == torch.uint8
    assert dataset_size(cfg) == 10000
    batch = data.batch(torch.arange(64))
    assert batch.dtype == torch.float32 and batch.min() == -1.0 and batch.max() == 1.0
    # MNIST digits are mostly background: the mean pixel of the split is about 0.13 in [0, 1].
    assert data.data.float().mean().item() / 255 == pytest.approx(0.133, abs=0.01)


def test_mnist_missing_offline_names_folder_and_files(tmp_path):
    cfg = DatasetConfig(name="mnist", root=str(tmp_path), split="train", download=False)
    with pytest.raises(DataError, match=r"MNIST/raw.*train-images-idx3-ubyte\.gz"):
        load_dataset(cfg, torch.device("cpu"))


def test_svhn_real_format_and_orientation(tmp_path):
    path = write_svhn_mat(tmp_path / "SVHN", "train", 6)
    import scipy.io

    mat = scipy.io.loadmat(str(path))
    X = mat["X"].copy()
    X[:4, :, :, 2] = [255, 0, 0]  # top four rows of image 2 red, the rest black
    X[4:, :, :, 2] = 0
    scipy.io.savemat(str(path), {"X": X, "y": mat["y"]})
    cfg = DatasetConfig(name="svhn", root=str(tmp_path), split="train", download=False)
    data = load_dataset(cfg, torch.device("cpu"))
    assert data.data.shape == (6, 3, 32, 32) and data.data.dtype == torch.uint8
    img = data.data[2]
    assert (img[0, :4] == 255).all() and (img[1:, :4] == 0).all() and (img[:, 4:] == 0).all()
    assert dataset_size(cfg) == 6


def test_svhn_missing_split(tmp_path):
    cfg = DatasetConfig(name="svhn", root=str(tmp_path), split="extra", download=False)
    with pytest.raises(DataError, match="extra_32x32.mat"):
        dataset_size(cfg)


def test_gaussian_statistics():
    cfg = DatasetConfig(name="gaussian1d", mean=4.0, std=1.25, samples_per_epoch=50000)
    data = load_dataset(cfg, torch.device("cpu"), seed=3)
    assert data.shape == (1,)
    assert data.data.mean().item() == pytest.approx(4.0, abs=0.03)
    assert data.data.std().item() == pytest.approx(1.25, abs=0.02)


def test_sampler_covers_each_sample_once_per_epoch():
    torch.manual_seed(0)
    sampler = BatchSampler(n=100, batch_size=10, device=torch.device("cpu"))
    seen = torch.cat([sampler.next() for _ in range(10)])
    assert sorted(seen.tolist()) == list(range(100))
    assert sampler.epoch == 1.0
    second = torch.cat([sampler.next() for _ in range(10)])
    assert sorted(second.tolist()) == list(range(100)) and not torch.equal(seen, second)


def test_sampler_drops_the_last_partial_batch():
    sampler = BatchSampler(n=25, batch_size=10, device=torch.device("cpu"))
    first_epoch = [sampler.next() for _ in range(2)]
    third = sampler.next()  # a new permutation, not the 5 left over
    assert all(len(b) == 10 for b in (*first_epoch, third))
    assert len(set(torch.cat(first_epoch).tolist())) == 20
