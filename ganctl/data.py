"""Datasets as one tensor on the training device (or memory-mapped from disk), and the batch sampler that indexes it."""

from __future__ import annotations

import codecs
import contextlib
import gzip
import logging
import math
import os
import pickle
import warnings
import zlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ganctl import folder
from ganctl.config import DatasetConfig
from ganctl.errors import DataError

SPLITS = ("train", "test", "extra")
# Point sets up to this size are copied in each epoch's order (Dataset.next_batch).
EPOCH_COPY_MAX = 64 << 20
log = logging.getLogger("ganctl.data")
# What read_once() keeps: a launch asks for a dataset's size, then loads it.
_reads: ContextVar[dict | None] = ContextVar("ganctl_data_reads", default=None)


@contextlib.contextmanager
def read_once():
    """Within this block a folder is scanned (and hashed) once and a CIFAR-10 split unpickled once.

    A launch checks the dataset's size before it loads it; without this, the folder was walked
    three times and CIFAR-10 read twice. Outside such a block every call looks at the files anew,
    so a folder changed between two runs of one process gets a new cache.
    """
    token = _reads.set({}) if _reads.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _reads.reset(token)


def _once(key: tuple, compute: Callable[[], object]):
    memo = _reads.get()
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


@dataclass
class Dataset:
    """All samples of one split, resident on the device (or mapped from disk); `batch` normalises there."""

    name: str
    data: torch.Tensor  # N x C x H x W uint8 for images, N x D float32 for points (gaussian1d, 2-D mixtures)
    range: tuple[float, float]
    labels: torch.Tensor | None = None  # int64 N class indices, on the training device, when asked for
    classes: list[str] | None = None  # the name of each class index
    # Set when `data` is a read-only view of a memory map on the CPU (dataset=folder, too large for
    # memory): batches are read from it and moved to the device of the indices.
    mapped: folder.MappedImages | None = None
    # dataset.xflip: indices N..2N-1 are the mirror images of 0..N-1, flipped as each batch is read
    xflip: bool = False
    _epoch: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def is_image(self) -> bool:
        return self.data.dtype == torch.uint8

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0] * (2 if self.xflip else 1)

    def _unmirrored(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The stored rows of sample indices, and which of them are mirror images (None without xflip)."""
        if not self.xflip:
            return idx, None
        n = self.data.shape[0]
        mirrored = idx >= n
        return idx - n * mirrored, mirrored

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        idx, mirrored = self._unmirrored(idx)
        if self.mapped is not None:
            # One host sync per batch on a GPU: the rows come from disk through the CPU anyway.
            x = torch.from_numpy(self.mapped.rows(idx.cpu().numpy())).to(idx.device)
        else:
            x = self.data.index_select(0, idx)  # 12x faster than data[idx] for a uint8 batch on CPU
        if mirrored is not None:
            x = torch.where(mirrored.view(-1, 1, 1, 1), x.flip(-1), x)
        if not self.is_image:
            return x
        lo, hi = self.range
        return x.float().mul_((hi - lo) / 255.0).add_(lo)

    def next_batch(self, sampler: BatchSampler) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampler's next batch and its indices: `batch(sampler.next())`, with the same rows.

        Points (gaussian1d, the 2-D mixtures) have rows of 4-8 bytes, so gathering a batch from a
        fresh permutation misses the cache on nearly every row: 27 us for setup 002's 500 rows
        inside the training loop, against 4 us with the rows cached, for a step whose updates
        take ~130 us. A point set of up to EPOCH_COPY_MAX bytes is instead copied once in each
        epoch's order, and its batches are slices of that copy.
        """
        idx = sampler.next()
        if self.is_image or self.mapped is not None or self.data.nbytes > EPOCH_COPY_MAX:
            return self.batch(idx), idx
        perm = sampler.perm
        if self._epoch is None or self._epoch[0] is not perm:
            self._epoch = (perm, self.data.index_select(0, perm))
        return self._epoch[1][sampler.pos - idx.shape[0] : sampler.pos], idx

    def batch_labels(self, idx: torch.Tensor) -> torch.Tensor:
        """The class indices of the samples `idx`, on the device of `idx`."""
        if self.labels is None:
            raise RuntimeError(f"dataset {self.name} was loaded without labels: load_dataset(..., labels=True)")
        rows, _ = self._unmirrored(idx)
        return self.labels.index_select(0, rows.to(self.labels.device)).to(idx.device)


def data_root(cfg: DatasetConfig) -> Path:
    return Path(os.path.expanduser(cfg.root))


def _check_split(cfg: DatasetConfig, accepted: tuple[str, ...]) -> None:
    if cfg.split not in accepted:
        raise DataError(f"dataset.split={cfg.split!r} is invalid for {cfg.name}; accepted: {', '.join(accepted)}")


# --- IDX datasets (MNIST, Fashion-MNIST) in torchvision's layout: <root>/<folder>/raw/<stem>[.gz].
@dataclass(frozen=True)
class IdxLayout:
    title: str  # the dataset's name in messages
    article: str  # before the title, by sound: "an MNIST", "a Fashion-MNIST"
    folder: str  # torchvision's folder under the root, which is also its class in torchvision.datasets
    images: dict[str, str]  # split -> file stem
    labels: dict[str, str]


_IDX_IMAGES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
_IDX_LABELS = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}
IDX_LAYOUTS = {
    "mnist": IdxLayout("MNIST", "an", "MNIST", _IDX_IMAGES, _IDX_LABELS),
    # Fashion-MNIST is a drop-in for MNIST: the same file names, sizes and IDX format.
    "fashion_mnist": IdxLayout("Fashion-MNIST", "a", "FashionMNIST", _IDX_IMAGES, _IDX_LABELS),
}
IDX_UBYTE = 0x08  # IDX type code of unsigned bytes, the only type these datasets use


def _idx_kind(layout: IdxLayout, ndim: int) -> str:
    return f"{layout.article} {layout.title} {'image' if ndim == 3 else 'label'} file"


def _read_raw(path: Path, kind: str, limit: int = -1) -> bytes:
    """The (gunzipped) bytes of an IDX file, the first `limit` only when given."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            return f.read(limit)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} could not be read as {kind} ({exc})") from None


def _idx_dims(path: Path, raw: bytes, ndim: int, kind: str) -> tuple[int, ...]:
    # The header is two zero bytes, the type code, the number of dimensions, then each size as a
    # big-endian int32: magic 2051 (0x0803) for images, 2049 (0x0801) for labels. Debian's
    # packages recompress the files, so their .gz checksums differ from upstream; the header and
    # the size it implies are what identifies them.
    head = raw[: 4 + 4 * ndim]
    if len(head) < 4 + 4 * ndim or head[:2] != b"\0\0" or head[2] != IDX_UBYTE or head[3] != ndim:
        raise DataError(f"{path} is not {kind} (IDX magic {0x800 | ndim} expected)")
    dims = tuple(int(d) for d in np.frombuffer(head[4:], dtype=">i4"))
    if min(dims) < 1:
        raise DataError(f"{path} is not {kind}: its IDX header has sizes {dims}")
    return dims


def read_idx(path: Path, ndim: int, kind: str) -> np.ndarray:
    """A whole IDX file of unsigned bytes, gzipped or not, as an array of its header's shape."""
    raw = _read_raw(path, kind)
    dims = _idx_dims(path, raw, ndim, kind)
    offset = 4 + 4 * ndim
    if len(raw) != offset + math.prod(dims):
        raise DataError(
            f"{path} is truncated or padded: its header promises {' x '.join(map(str, dims))} "
            f"bytes of data, it holds {len(raw) - offset}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(raw_dir: Path, stem: str) -> Path | None:
    for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate_idx(cfg: DatasetConfig, labels: bool = False) -> Path:
    """The image (or label) file of the split, downloaded with torchvision when missing and allowed."""
    layout = IDX_LAYOUTS[cfg.name]
    _check_split(cfg, tuple(layout.images))
    root = data_root(cfg)
    raw_dir = root / layout.folder / "raw"
    stem = (layout.labels if labels else layout.images)[cfg.split]
    path = _find_idx(raw_dir, stem)
    if path is None and cfg.download:
        _download(lambda: _torchvision_idx(root, layout, cfg.split))
        path = _find_idx(raw_dir, stem)
    if path is None:
        what = "labels" if labels else "split"
        raise DataError(
            f"{layout.title} {cfg.split} {what} not found in {raw_dir}: expected {stem}.gz (or {stem}); "
            f"download it online, or set dataset.root=DIR or GANCTL_DATA to a folder holding {layout.folder}/raw/"
        )
    return path


def load_idx(cfg: DatasetConfig, seed: int) -> np.ndarray:
    """The split's images as uint8 N x 1 x H x W."""
    path = locate_idx(cfg)
    return read_idx(path, 3, _idx_kind(IDX_LAYOUTS[cfg.name], 3))[:, None]


def load_idx_labels(cfg: DatasetConfig) -> np.ndarray:
    """The split's class labels (0..9) as int64."""
    path = locate_idx(cfg, labels=True)
    return read_idx(path, 1, _idx_kind(IDX_LAYOUTS[cfg.name], 1)).astype(np.int64)


def idx_size(cfg: DatasetConfig) -> int:
    path = locate_idx(cfg)
    kind = _idx_kind(IDX_LAYOUTS[cfg.name], 3)
    return _idx_dims(path, _read_raw(path, kind, 16), 3, kind)[0]


def _torchvision_idx(root: Path, layout: IdxLayout, split: str) -> None:
    import torchvision.datasets

    getattr(torchvision.datasets, layout.folder)(str(root), train=(split == "train"), download=True)


# --- SVHN: torchvision's format, <root>/SVHN/<split>_32x32.mat with X as 32x32x3xN uint8.
def locate_svhn(cfg: DatasetConfig) -> Path:
    _check_split(cfg, SPLITS)
    folder = data_root(cfg) / "SVHN"
    path = folder / f"{cfg.split}_32x32.mat"
    if not path.is_file() and cfg.download:
        _download(lambda: _torchvision_svhn(folder, cfg.split))
    if not path.is_file():
        raise DataError(
            f"SVHN {cfg.split} split not found: expected {path}; download it online, or set "
            "dataset.root=DIR or GANCTL_DATA to a folder holding SVHN/"
        )
    return path


def read_svhn(cfg: DatasetConfig, labels: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 N x 3 x 32 x 32 images, int64 N digits 0..9 when `labels`) from one read of the .mat."""
    import scipy.io

    path = locate_svhn(cfg)
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"] if labels else ["X"])
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DataError(f"{path} is not a readable SVHN .mat file ({exc})") from None
    x = mat.get("X")
    if x is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(f"{path} has no uint8 array X of shape 32x32x3xN")
    # The .mat stores H x W x C x N; the reference code's N x C x W x H swaps the image
    # axes and un-swaps them for display; we keep the true orientation throughout.
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))
    if not labels:
        return images, None
    y = mat.get("y")
    if y is None or y.size != len(images) or not ((y >= 1) & (y <= 10)).all():
        raise DataError(f"{path} has no labels y: expected {len(images)} digits in 1..10 (10 for the digit 0)")
    return images, y.reshape(-1).astype(np.int64) % 10  # SVHN writes the digit 0 as 10


def load_svhn(cfg: DatasetConfig, seed: int) -> np.ndarray:
    return read_svhn(cfg)[0]


def svhn_size(cfg: DatasetConfig) -> int:
    import scipy.io

    path = locate_svhn(cfg)
    try:
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(str(path))}
    except Exception as exc:
        raise DataError(f"{path} is not a readable SVHN .mat file ({exc})") from None
    if len(shapes.get("X", ())) != 4:
        raise DataError(f"{path} has no uint8 array X of shape 32x32x3xN")
    return int(shapes["X"][3])


def _torchvision_svhn(folder: Path, split: str) -> None:
    from torchvision.datasets import SVHN

    SVHN(str(folder), split=split, download=True)


# --- CIFAR-10: torchvision's format, <root>/cifar-10-batches-py/{data_batch_1..5, test_batch}, each a
# pickled dict: "data" uint8 N x 3072 (the R, G and B planes of a 32x32 image, row by row), "labels".
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array rebuilder, wherever this numpy version keeps it
_CIFAR10_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # the real files: Python 2 and numpy 1
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # written with numpy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # protocol 2 stores Python 3 bytes as encode(text, "latin1")
}


class _BatchUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists and numpy arrays only: a pickle may name any callable, and reading a
    data file must not run code."""

    def find_class(self, module: str, name: str):
        found = _CIFAR10_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch")
        return found


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (uint8 N x 3 x 32 x 32 images, int64 N labels)."""
    try:
        with open(path, "rb") as f:
            # latin1, as torchvision reads them: Python 2 wrote the keys and the pixel bytes as str.
            batch = _BatchUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # a damaged pickle raises many types
        raise DataError(f"{path} is not a readable CIFAR-10 batch ({str(exc)[:160]})") from None
    if isinstance(batch, dict):  # keys are str from the real files, bytes from Python 3 writers
        batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data = batch.get("data")
        try:
            labels = np.asarray(batch.get("labels"), dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            labels = np.full(1, -1)
        if (
            isinstance(data, np.ndarray)
            and data.dtype == np.uint8
            and data.ndim == 2
            and data.shape[1] == 3072
            and len(labels) == len(data)
            and ((labels >= 0) & (labels <= 9)).all()
        ):
            return data.reshape(-1, 3, 32, 32), labels
    raise DataError(f"{path} is not a CIFAR-10 batch: expected a dict with uint8 data of N x 3072 and N labels in 0..9")


def locate_cifar10(cfg: DatasetConfig) -> list[Path]:
    """The split's batch files, downloaded with torchvision when missing and allowed."""
    _check_split(cfg, tuple(CIFAR10_FILES))
    root = data_root(cfg)
    folder = root / CIFAR10_FOLDER
    names = CIFAR10_FILES[cfg.split]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing and cfg.download:
        _download(lambda: _torchvision_cifar10(root, cfg.split))
        missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 {cfg.split} split not found in {folder}: expected {', '.join(names)}, missing "
            f"{', '.join(missing)}; download it online, or set dataset.root=DIR or GANCTL_DATA to a folder "
            f"holding {CIFAR10_FOLDER}/"
        )
    return [folder / n for n in names]


def read_cifar10(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    batches = [read_cifar10_batch(p) for p in paths]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _cifar10_split(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    paths = locate_cifar10(cfg)
    return _once(("cifar10", *map(str, paths)), lambda: read_cifar10(paths))


def load_cifar10(cfg: DatasetConfig, seed: int) -> np.ndarray:
    return _cifar10_split(cfg)[0]


def cifar10_size(cfg: DatasetConfig) -> int:
    # A pickle has no header to read the count from; unpickling the split takes about a second,
    # and read_once() keeps it for the load that follows.
    return len(_cifar10_split(cfg)[1])


def _torchvision_cifar10(root: Path, split: str) -> None:
    from torchvision.datasets import CIFAR10

    CIFAR10(str(root), train=(split == "train"), download=True)


def _download(fetch: Callable[[], None]) -> None:
    # Offline, torchvision raises URLError/RuntimeError after trying its mirrors; the caller
    # then reports what was expected where, which is the useful message.
    try:
        fetch()
    except Exception:
        pass


# --- 1-D Gaussian: drawn once from the run's seed, identical on every device.
def _split_generator(cfg: DatasetConfig, seed: int) -> torch.Generator:
    _check_split(cfg, ("train", "test"))
    return torch.Generator().manual_seed(seed + (0 if cfg.split == "train" else 1))


def load_gaussian1d(cfg: DatasetConfig, seed: int) -> np.ndarray:
    gen = _split_generator(cfg, seed)
    values = torch.randn(cfg.samples_per_epoch, 1, generator=gen) * cfg.std + cfg.mean
    return values.numpy()


# --- 2-D mixtures of equal-weight isotropic Gaussians (dataset.std each), the mode-collapse
# benchmarks of Unrolled GAN, VEEGAN and PacGAN; drawn once from the run's seed like gaussian1d.
def ring_modes(cfg: DatasetConfig) -> np.ndarray:
    angles = 2 * np.pi * np.arange(8) / 8
    return cfg.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_modes(cfg: DatasetConfig) -> np.ndarray:
    ticks = (np.arange(5) - 2) * cfg.spacing
    return np.array([(x, y) for x in ticks for y in ticks], dtype=np.float64)


MIXTURES: dict[str, Callable[[DatasetConfig], np.ndarray]] = {"ring8": ring_modes, "grid25": grid_modes}


def mixture_modes(cfg: DatasetConfig) -> np.ndarray:
    """The mixture's K x 2 mode centres (float64)."""
    return MIXTURES[cfg.name](cfg)


def load_mixture(cfg: DatasetConfig, seed: int) -> np.ndarray:
    gen = _split_generator(cfg, seed)
    modes = torch.from_numpy(mixture_modes(cfg))
    which = torch.randint(len(modes), (cfg.samples_per_epoch,), generator=gen)
    points = modes[which] + torch.randn(cfg.samples_per_epoch, 2, generator=gen, dtype=torch.float64) * cfg.std
    return points.float().numpy()


# --- A folder of the user's own images, packed once into a cache under the data root (folder.py).
def folder_cache(cfg: DatasetConfig) -> Path:
    return data_root(cfg) / "folder-cache"


def prepared_folder(cfg: DatasetConfig) -> folder.Packed:
    """The folder's pack (built on a first run), scanned once within read_once()."""
    key = ("folder", cfg.path, cfg.resolution, cfg.channels, cfg.labels, str(folder_cache(cfg)))
    return _once(key, lambda: folder.prepare(cfg, folder_cache(cfg)))


def load_folder(cfg: DatasetConfig, seed: int) -> np.ndarray:
    packed = prepared_folder(cfg)
    folder.announce(packed)
    return packed.load()


def folder_size(cfg: DatasetConfig) -> int:
    # Builds the cache on a first run, so that the load after the size check only reuses it.
    return len(prepared_folder(cfg))


# --- Class labels, for class-conditional models: (images, int64 N labels, class names).
DIGITS = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _idx_labelled(cfg: DatasetConfig, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, labels = load_idx(cfg, seed), load_idx_labels(cfg)
    if len(labels) != len(images):
        raise DataError(
            f"{locate_idx(cfg, labels=True)} holds {len(labels)} labels for the {len(images)} images of "
            f"{locate_idx(cfg)}; accepted: the label file of the same split"
        )
    return images, labels, FASHION_MNIST_CLASSES if cfg.name == "fashion_mnist" else DIGITS


def _svhn_labelled(cfg: DatasetConfig, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, labels = read_svhn(cfg, labels=True)
    return images, labels, DIGITS


def _cifar10_labelled(cfg: DatasetConfig, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return (*_cifar10_split(cfg), CIFAR10_CLASSES)


# --- The one record per dataset. What differs by kind of data (how samples are pictured, written
# to files and scored) is chosen from `kind` in ganctl/kinds.py, nowhere else.
POINTS_1D, POINTS_2D, IMAGES = "points1d", "points2d", "images"


@dataclass(frozen=True)
class DatasetInfo:
    """What ganctl knows of one dataset, by the name of its conf/dataset/NAME.yaml."""

    name: str
    kind: str  # POINTS_1D, POINTS_2D or IMAGES
    load: Callable[[DatasetConfig, int], np.ndarray]  # the split: uint8 N x C x H x W, or float32 N x D points
    size: Callable[[DatasetConfig], int]  # its number of samples, as cheaply as the format allows
    # (images, int64 labels, class names) of the split; None for a dataset without classes
    labelled: Callable[[DatasetConfig, int], tuple[np.ndarray, np.ndarray, list[str]]] | None = None
    shape: tuple[int, ...] | None = None  # one sample's shape, when fixed (a folder's follows its config)
    # The files a split is read from; their checksum keys ganctl's cached feature network (features.py).
    files: Callable[[DatasetConfig], list[Path]] | None = None


def _points_size(cfg: DatasetConfig) -> int:
    return cfg.samples_per_epoch


def _idx_files(cfg: DatasetConfig) -> list[Path]:
    # Images first: a missing split is reported as training reports it, before its labels.
    return [locate_idx(cfg), locate_idx(cfg, labels=True)]


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist", IMAGES, load_idx, idx_size, _idx_labelled, (1, 28, 28), _idx_files),
        DatasetInfo("fashion_mnist", IMAGES, load_idx, idx_size, _idx_labelled, (1, 28, 28), _idx_files),
        DatasetInfo("svhn", IMAGES, load_svhn, svhn_size, _svhn_labelled, (3, 32, 32), lambda c: [locate_svhn(c)]),
        # The labels are inside CIFAR-10's batch files.
        DatasetInfo("cifar10", IMAGES, load_cifar10, cifar10_size, _cifar10_labelled, (3, 32, 32), locate_cifar10),
        DatasetInfo("gaussian1d", POINTS_1D, load_gaussian1d, _points_size, shape=(1,)),
        DatasetInfo("ring8", POINTS_2D, load_mixture, _points_size, shape=(2,)),
        DatasetInfo("grid25", POINTS_2D, load_mixture, _points_size, shape=(2,)),
        DatasetInfo("folder", IMAGES, load_folder, folder_size),
    )
}
LABELLED = tuple(name for name, info in DATASETS.items() if info.labelled is not None)


def info(cfg: DatasetConfig | str) -> DatasetInfo:
    """The record of a dataset config (or name); DataError listing the known names."""
    name = cfg if isinstance(cfg, str) else cfg.name
    if name not in DATASETS:
        raise DataError(f"dataset={name!r} is not a known dataset; accepted: {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_size(cfg: DatasetConfig) -> int:
    """Number of samples, from file headers where the format has them (downloading first when missing and allowed).

    For dataset=folder this decodes the folder into its cache when no cache matches it yet.
    """
    return info(cfg).size(cfg) * (2 if cfg.xflip else 1)


def has_labels(cfg: DatasetConfig) -> bool:
    """Whether load_dataset(cfg, ..., labels=True) can give each sample a class."""
    return info(cfg).labelled is not None or (cfg.name == "folder" and cfg.labels == "subfolders")


def _no_labels(cfg: DatasetConfig) -> DataError:
    accepted = f"accepted: {', '.join(LABELLED)}, or folder with dataset.labels=subfolders"
    if cfg.name == "folder":
        return DataError(f"dataset=folder has class labels only with dataset.labels=subfolders; {accepted}")
    return DataError(f"dataset={cfg.name} has no class labels; {accepted}")


# --- Loading onto the device.
def load_dataset(cfg: DatasetConfig, device: torch.device, seed: int = 0, labels: bool = False) -> Dataset:
    """The split on `device`, with each sample's class when `labels` (DataError for a dataset without)."""
    if labels and not has_labels(cfg):
        raise _no_labels(cfg)
    value_range = (float(cfg.range[0]), float(cfg.range[1]))
    if cfg.name == "folder":
        return _load_folder_dataset(cfg, device, value_range, labels)
    if labels:
        array, y, classes = info(cfg).labelled(cfg, seed)
    else:
        array, y, classes = info(cfg).load(cfg, seed), None, None
    data = torch.from_numpy(np.array(array, copy=True)).to(device)  # frombuffer arrays are read-only
    label_tensor = None if y is None else torch.from_numpy(np.array(y, dtype=np.int64)).to(device)
    return Dataset(cfg.name, data, value_range, label_tensor, classes, xflip=cfg.xflip)


def _load_folder_dataset(
    cfg: DatasetConfig, device: torch.device, value_range: tuple[float, float], labels: bool
) -> Dataset:
    packed = prepared_folder(cfg)
    folder.announce(packed)
    y = torch.from_numpy(packed.labels()).to(device) if labels else None
    classes = packed.classes if labels else None
    nbytes = math.prod(packed.shape)
    in_memory, why = fits_in_memory(nbytes, device)
    mb = folder.megabytes(nbytes)
    if not in_memory:
        log.info(f"dataset=folder: the {mb} pack is read memory-mapped from disk: {why}")
        mapped = folder.MappedImages(packed.images_path)
        with warnings.catch_warnings():
            # The map is read-only and nothing writes to a dataset; torch only warns that it could.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            data = torch.from_numpy(mapped.array)
        return Dataset(cfg.name, data, value_range, y, classes, mapped, xflip=cfg.xflip)
    log.info(f"dataset=folder: the {mb} pack is loaded onto {device}: {why}")
    if device.type == "cuda":
        # Copied through the map in slices: the host never holds a second whole copy.
        source = np.load(packed.images_path, mmap_mode="r")  # sequential: the kernel's read-ahead helps
        data = torch.empty(source.shape, dtype=torch.uint8, device=device)
        step = max(1, 2**28 // max(1, math.prod(source.shape[1:])))
        for a in range(0, len(source), step):
            data[a : a + step].copy_(torch.from_numpy(np.array(source[a : a + step])))
    else:
        data = torch.from_numpy(packed.load()).to(device)
    return Dataset(cfg.name, data, value_range, y, classes, xflip=cfg.xflip)


def available_ram() -> int:
    """Bytes of RAM the kernel could give without swapping (MemAvailable), or the free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fits_in_memory(nbytes: int, device: torch.device) -> tuple[bool, str]:
    """Whether a pack of `nbytes` goes into the device's memory, and why.

    GANCTL_MMAP=1 maps it, GANCTL_MMAP=0 loads it. Otherwise a CUDA device takes it when it is under
    half of the device's free memory (the rest is for the models and activations); elsewhere it
    is loaded when under a quarter of the available RAM (room for the run, other processes and
    the page cache), and mapped from disk when larger.
    """
    choice = os.environ.get("GANCTL_MMAP", "auto").strip().lower() or "auto"
    if choice not in ("0", "1", "auto"):
        raise DataError(f"GANCTL_MMAP={choice} is invalid; accepted: 1 (memory-map), 0 (load), auto")
    if choice != "auto":
        return choice == "0", f"GANCTL_MMAP={choice}"
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return (
            nbytes < free / 2,
            f"{'under' if nbytes < free / 2 else 'over'} half of the {free / 2**30:.1f} GB free on {device}",
        )
    ram = available_ram()
    fits = nbytes < ram / 4
    return fits, f"{'under' if fits else 'over'} a quarter of the {ram / 2**30:.1f} GB of available RAM"


class BatchSampler:
    """Shuffled batches without replacement, drop_last, drawn as index tensors on the device.

    Uses the device's global torch RNG, so the checkpoint's RNG state plus this object's
    state (permutation and position) replay the exact same batches after a resume.
    """

    def __init__(self, n: int, batch_size: int, device: torch.device, epoch_batches: int | None = None):
        self.n, self.batch_size, self.device = n, batch_size, device
        # Draws per epoch; data-parallel replicas each draw a share of a global batch.
        self.batches_per_epoch = epoch_batches or n // batch_size
        self.perm: torch.Tensor | None = None
        self.pos = 0
        self.batches_drawn = 0

    @property
    def epoch(self) -> float:
        return self.batches_drawn / self.batches_per_epoch

    def next(self) -> torch.Tensor:
        if self.perm is None or self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, device=self.device)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        self.batches_drawn += 1
        return idx

    def state_dict(self) -> dict:
        perm = None if self.perm is None else self.perm.cpu()
        return {"perm": perm, "pos": self.pos, "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict) -> None:
        perm = state["perm"]
        self.perm = None if perm is None else perm.to(self.device)
        self.pos = int(state["pos"])
        self.batches_drawn = int(state["batches_drawn"])
