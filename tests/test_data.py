"""Datasets on disk in their real formats, the generated 2-D mixtures, and the on-device batch sampler."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ganctl.config import DatasetConfig
from ganctl.data import BatchSampler, dataset_size, load_dataset, load_idx_labels, mixture_modes, read_cifar10_batch
from ganctl.errors import DataError

from common import write_idx
from conftest import write_svhn_mat

CPU = torch.device("cpu")


# --- Writers of the real on-disk formats (test_datasets.py and test_folder.py use them too) ----------
def blobs(n: int, channels: int, size: int, seed: int) -> np.ndarray:
    """n uint8 images of soft colour blobs (structure a few training steps can see)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((n, channels, size, size), dtype=np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(size / 4, 3 * size / 4, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (size * 1.25))
        out[i] = (255 * blob[None] * rng.uniform(0.3, 1.0, size=(channels, 1, 1))).astype(np.uint8)
    return out


def write_cifar10_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """One batch as the real files hold it: a protocol-2 pickle of a dict with bytes keys and
    data uint8 N x 3072 (the R plane, then G, then B, each row by row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = {
        b"batch_label": b"generated batch",
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(images).reshape(len(images), 3072),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)
    return path


def write_cifar10(root: Path, per_batch: int = 8, seed: int = 0) -> Path:
    """data_batch_1..5 and test_batch under root/cifar-10-batches-py; labels cycle through 0..9."""
    folder = root / "cifar-10-batches-py"
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        labels = (np.arange(per_batch) + i) % 10
        write_cifar10_batch(folder / name, blobs(per_batch, 3, 32, seed + i), labels)
    return root


def python2_cifar10_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle wrote the real files: byte-string (not bytes-object) keys and
    pixels, numpy 1's numpy.core.multiarray path. Python 3 cannot write this, so it is spelled out."""

    def string(b: bytes) -> bytes:  # SHORT_BINSTRING or BINSTRING
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    n, width = data.shape
    dtype = (
        b"cnumpy\ndtype\n"
        + string(b"u1")
        + b"K\x00K\x01\x87R"
        + b"(K\x03"
        + string(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + string(b"b")
        + b"\x87R"
        + b"(K\x01M"
        + struct.pack("<H", n)
        + b"M"
        + struct.pack("<H", width)
        + b"\x86"
        + dtype
        + b"\x89"
        + string(data.tobytes())
        + b"tb"
    )
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(" + string(b"data") + array + string(b"labels") + label_list + b"u."


def test_mnist_test_split(mnist_root):
    cfg = DatasetConfig(name="mnist", root=str(mnist_root), split="test", download=False)
    data = load_dataset(cfg, CPU)
    assert data.data.shape == (10000, 1, 28, 28) and data.data.dtype == torch.uint8
    assert dataset_size(cfg) == 10000
    batch = data.batch(torch.arange(64))
    assert batch.dtype == torch.float32 and batch.min() == -1.0 and batch.max() == 1.0
    # MNIST digits are mostly background: the mean pixel of the split is about 0.13 in [0, 1].
    assert data.data.float().mean().item() / 255 == pytest.approx(0.133, abs=0.01)


def test_mnist_missing_offline_names_folder_and_files(tmp_path):
    cfg = DatasetConfig(name="mnist", root=str(tmp_path), split="train", download=False)
    with pytest.raises(DataError, match=r"MNIST/raw.*train-images-idx3-ubyte\.gz"):
        load_dataset(cfg, CPU)


def test_fashion_mnist_real_files_both_splits(fashion_root):
    for split, n in (("train", 60000), ("test", 10000)):
        cfg = DatasetConfig(name="fashion_mnist", root=str(fashion_root), split=split, download=False)
        assert dataset_size(cfg) == n
        data = load_dataset(cfg, CPU)
        assert data.data.shape == (n, 1, 28, 28) and data.data.dtype == torch.uint8 and data.is_image
        labels = load_idx_labels(cfg)
        # Fashion-MNIST is balanced: every one of the 10 classes has a tenth of each split.
        assert labels.shape == (n,) and np.bincount(labels, minlength=10).tolist() == [n // 10] * 10
    # Clothing fills more of the frame than digits: the mean pixel is ~0.29 of white (MNIST's ~0.13).
    assert data.data.float().mean().item() / 255 == pytest.approx(0.287, abs=0.01)
    batch = data.batch(torch.arange(32))
    assert batch.min() == -1.0 and batch.max() == 1.0


def test_fashion_mnist_missing_offline_names_folder_and_files(tmp_path):
    cfg = DatasetConfig(name="fashion_mnist", root=str(tmp_path), split="test", download=False)
    with pytest.raises(
        DataError,
        match=r"Fashion-MNIST test split not found in .*FashionMNIST/raw: "
        r"expected t10k-images-idx3-ubyte\.gz",
    ):
        dataset_size(cfg)
    cfg.split = "extra"
    with pytest.raises(DataError, match="accepted: train, test"):
        dataset_size(cfg)


def test_idx_reader_checks_header_and_size_not_checksums(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    cfg = DatasetConfig(name="fashion_mnist", root=str(tmp_path), split="train", download=False)
    images = blobs(5, 1, 28, seed=0)[:, 0]
    # Plain and gzipped files read the same, whatever the compressor's bytes.
    write_idx(raw / "train-images-idx3-ubyte", images)
    assert np.array_equal(load_dataset(cfg, CPU).data[:, 0].numpy(), images) and dataset_size(cfg) == 5
    (raw / "train-images-idx3-ubyte").unlink()
    write_idx(raw / "train-images-idx3-ubyte.gz", images)
    assert np.array_equal(load_dataset(cfg, CPU).data[:, 0].numpy(), images)
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    assert load_idx_labels(cfg).tolist() == [0, 1, 2, 3, 4]

    write_idx(raw / "train-images-idx3-ubyte.gz", np.arange(5, dtype=np.uint8))  # a label file in its place
    with pytest.raises(DataError, match="not a Fashion-MNIST image file .IDX magic 2051"):
        load_dataset(cfg, CPU)
    whole = gzip.decompress((write_idx(raw / "train-images-idx3-ubyte.gz", images)).read_bytes())
    with gzip.open(raw / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(whole[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(cfg, CPU)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"not gzip" * 10)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz could not be read as a Fashion-MNIST image file"):
        load_dataset(cfg, CPU)


def test_svhn_real_format_and_orientation(tmp_path):
    path = write_svhn_mat(tmp_path / "SVHN", "train", 6)
    import scipy.io

    mat = scipy.io.loadmat(str(path))
    X = mat["X"].copy()
    X[:4, :, :, 2] = [255, 0, 0]  # top four rows of image 2 red, the rest black
    X[4:, :, :, 2] = 0
    scipy.io.savemat(str(path), {"X": X, "y": mat["y"]})
    cfg = DatasetConfig(name="svhn", root=str(tmp_path), split="train", download=False)
    data = load_dataset(cfg, CPU)
    assert data.data.shape == (6, 3, 32, 32) and data.data.dtype == torch.uint8
    img = data.data[2]
    assert (img[0, :4] == 255).all() and (img[1:, :4] == 0).all() and (img[:, 4:] == 0).all()
    assert dataset_size(cfg) == 6


def test_svhn_missing_split(tmp_path):
    cfg = DatasetConfig(name="svhn", root=str(tmp_path), split="extra", download=False)
    with pytest.raises(DataError, match="extra_32x32.mat"):
        dataset_size(cfg)


# --- CIFAR-10 in torchvision's on-disk format ------------------------------------------------------
def test_cifar10_generated_batches_order_and_orientation(tmp_path):
    write_cifar10(tmp_path, per_batch=4)
    batch3 = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    images = blobs(4, 3, 32, seed=9)
    images[1] = 0
    images[1, 0, :4] = 255  # image 1: top four rows red (R plane first in each row of data)
    write_cifar10_batch(batch3, images, np.array([7, 3, 0, 9]))
    cfg = DatasetConfig(name="cifar10", root=str(tmp_path), split="train", download=False)
    data = load_dataset(cfg, CPU)
    assert data.data.shape == (20, 3, 32, 32) and data.data.dtype == torch.uint8 and dataset_size(cfg) == 20
    img = data.data[2 * 4 + 1]  # batches in order 1..5: batch 3 starts at row 8
    assert (img[0, :4] == 255).all() and (img[1:, :4] == 0).all() and (img[:, 4:] == 0).all()
    _, labels = read_cifar10_batch(batch3)
    assert labels.tolist() == [7, 3, 0, 9]
    test = DatasetConfig(name="cifar10", root=str(tmp_path), split="test", download=False)
    assert dataset_size(test) == 4 and load_dataset(test, CPU).shape == (3, 32, 32)


def test_cifar10_reads_the_python2_pickles_of_the_real_files(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, size=(3, 3072), dtype=np.uint8)
    raw = python2_cifar10_pickle(data, [6, 9, 9])
    reference = pickle.loads(raw, encoding="latin1")  # what Python's own unpickler makes of it
    assert set(reference) == {"data", "labels"} and np.array_equal(reference["data"], data)
    path = tmp_path / "test_batch"
    path.write_bytes(raw)
    images, labels = read_cifar10_batch(path)
    assert np.array_equal(images.reshape(3, 3072), data) and labels.tolist() == [6, 9, 9]


def test_cifar10_missing_or_hostile_files(tmp_path):
    write_cifar10(tmp_path, per_batch=2)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_4").unlink()
    cfg = DatasetConfig(name="cifar10", root=str(tmp_path), split="train", download=False)
    with pytest.raises(
        DataError,
        match=r"CIFAR-10 train split not found in .*cifar-10-batches-py: expected "
        r"data_batch_1, .*missing data_batch_4;",
    ):
        dataset_size(cfg)

    # A pickle can call anything it names; a data file must not get to.
    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Hostile()}, protocol=2))
    with pytest.raises(DataError, match="test_batch is not a readable CIFAR-10 batch"):
        load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path), split="test", download=False), CPU)
    assert not marker.exists()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match="N x 3072"):
        read_cifar10_batch(folder / "test_batch")


# --- 2-D mixtures ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, std, extra, k", [("ring8", 0.02, {"radius": 3.0}, 8), ("grid25", 0.05, {"spacing": 1.5}, 25)]
)
def test_mixture_points_sit_on_equally_likely_modes(name, std, extra, k):
    cfg = DatasetConfig(name=name, std=std, samples_per_epoch=25000, **extra)
    data = load_dataset(cfg, CPU, seed=1)
    assert data.shape == (2,) and data.data.dtype == torch.float32 and not data.is_image
    assert torch.equal(data.batch(torch.arange(5)), data.data[:5])  # points are not rescaled like pixels
    points, modes = data.data.double().numpy(), mixture_modes(cfg)
    assert modes.shape == (k, 2)
    dist = np.linalg.norm(points[:, None] - modes[None], axis=2)
    nearest = dist.argmin(axis=1)
    assert dist.min(axis=1).max() < 6 * std  # no point strays from its mode
    assert np.bincount(nearest, minlength=k) / len(points) == pytest.approx(np.full(k, 1 / k), abs=0.012)
    offsets = points - modes[nearest]
    assert offsets.std(axis=0) == pytest.approx([std, std], rel=0.05)
    if name == "ring8":
        assert np.linalg.norm(modes, axis=1) == pytest.approx(np.full(8, 3.0))
        angles = np.sort(np.degrees(np.arctan2(modes[:, 1], modes[:, 0])) % 360)
        assert angles == pytest.approx(np.arange(8) * 45.0, abs=1e-9)
    else:
        assert sorted(set(modes[:, 0].round(9))) == [-3.0, -1.5, 0.0, 1.5, 3.0]
    again = load_dataset(cfg, CPU, seed=1).data
    other_split = load_dataset(
        DatasetConfig(name=name, std=std, samples_per_epoch=25000, split="test", **extra), CPU, seed=1
    ).data
    assert torch.equal(again, data.data) and not torch.equal(other_split, data.data)


def test_gaussian1d_draw_is_unchanged():
    cfg = DatasetConfig(name="gaussian1d", samples_per_epoch=1000)
    expected = torch.randn(1000, 1, generator=torch.Generator().manual_seed(5)) * 1.25 + 4.0
    assert torch.equal(load_dataset(cfg, CPU, seed=5).data, expected)


def test_gaussian_statistics():
    cfg = DatasetConfig(name="gaussian1d", mean=4.0, std=1.25, samples_per_epoch=50000)
    data = load_dataset(cfg, CPU, seed=3)
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


@pytest.mark.parametrize("name", ["gaussian1d", "ring8", "mnist"])
def test_next_batch_gives_the_rows_of_its_indices(name, mnist_root):
    """next_batch serves small point sets from a per-epoch copy in the permutation's order: the
    rows must be exactly `batch(idx)` of the indices it returns, across epochs (25 rows, batches
    of 10: a new permutation every 2 batches) and after a sampler restored from its state."""
    extra = {"root": str(mnist_root), "split": "test"} if name == "mnist" else {"samples_per_epoch": 25}
    data = load_dataset(DatasetConfig(name=name, **extra), CPU, seed=0)
    torch.manual_seed(0)
    sampler = BatchSampler(n=len(data), batch_size=10, device=CPU)
    state = None
    for i in range(7):
        if i == 3:
            state = sampler.state_dict()
        rows, idx = data.next_batch(sampler)
        assert torch.equal(rows, data.batch(idx))
    resumed = BatchSampler(n=len(data), batch_size=10, device=CPU)
    resumed.load_state_dict(state)
    rows, idx = data.next_batch(resumed)
    assert torch.equal(rows, data.batch(idx))
    assert (data._epoch is not None) == (name != "mnist")  # images are gathered per batch
