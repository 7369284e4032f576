"""The small CNNs whose penultimate layer gives ganctl's evaluation features, fitted offline on the data.

Two tasks, one network family: `ganctl` classifies the data's labelled classes (the named datasets, a
folder with dataset.labels=subfolders); `selfsup` predicts which of four rotations an image was
turned by, which needs no labels (Gidaris et al. 2018). Either is trained on the real split itself
(no downloaded weights), keeps some images out to measure its accuracy, and is cached with the
real-data feature statistics: under <root>/ganctl_features/<dataset>_<split>[_selfsup].pt keyed by
the data files' checksum, or for a folder inside its pack's cache folder, whose name is the folder's
cache key (a changed folder gets a new pack, so new features).
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganctl import metrics
from ganctl.augment import quarter_turns
from ganctl.config import DatasetConfig
from ganctl.data import DATASETS, IMAGES, SPLITS, data_root, has_labels, info, prepared_folder
from ganctl.errors import DataError
from ganctl.files import write_first_writable
from ganctl.folder import MappedImages
from ganctl.metrics import feature_stats

CACHE_FORMAT = 1
CACHE_DIR = "ganctl_features"
# The named image datasets with classes: a classifier is trained on each to give its features.
IMAGE_DATASETS = tuple(name for name, d in DATASETS.items() if d.kind == IMAGES and d.files and d.labelled)
NUM_CLASSES = 10
CLASSES, SELFSUP = "ganctl", "selfsup"  # the feature nets' tasks, by their --features names
TASKS = (CLASSES, SELFSUP)
ROTATIONS = 4  # selfsup's classes: 0, 90, 180, 270 degrees
# selfsup's minimum number of updates: a folder of 2,000 images is 4 epochs in 110 updates
MIN_SELFSUP_UPDATES = 1500
PROGRESS_EVERY_S = 5.0  # the feature net's training prints a line at most this often
MAX_SIDE = 64  # larger images are area-downscaled to this side first, so the net's cost stays bounded
KID_SUBSETS = metrics.KID_SUBSETS
HELD_OUT = 1000  # the last images of the split; never trained on, they measure the accuracy
PR_K = 3  # Kynkaanniemi et al. 2019 use k = 3
REAL_FEATURES_KEPT = 5000  # real features stored for precision/recall (a fixed random subset)


# --- Real images and labels ------------------------------------------------------------------
@dataclass
class RealData:
    images: torch.Tensor  # N x C x H x W uint8; for a folder a read-only view of its memory-mapped pack
    labels: torch.Tensor | None  # N int64 class indices (None: an unlabelled folder)
    num_classes: int
    checksum: str
    random_held_out: bool  # a folder's rows are sorted by path (by class): hold out a random subset


def _checksum(files: list[Path]) -> str:
    h = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def data_files(cfg: DatasetConfig) -> list[Path]:
    """The files the split is read from: their checksum identifies a cached feature network."""
    check_dataset(cfg.name)
    return info(cfg).files(cfg)


def data_checksum(cfg: DatasetConfig) -> str:
    """What identifies the data: a folder's cache key (its files' paths, sizes and times, and the
    pack's settings), else the sha256 of the split's files."""
    if cfg.name == "folder":
        return "folder:" + prepared_folder(cfg).folder.name
    return _checksum(data_files(cfg))


def real_images(cfg: DatasetConfig) -> torch.Tensor:
    """The split's uint8 N x C x H x W images: a folder's pack is mapped read-only, never copied whole."""
    check_dataset(cfg.name)
    if cfg.name == "folder":
        mapped = MappedImages(prepared_folder(cfg).images_path)
        with warnings.catch_warnings():
            # The map is read-only and nothing here writes to it; torch only warns that it could.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(mapped.array)
    return torch.from_numpy(np.array(info(cfg).load(cfg, 0)))


def load_real(cfg: DatasetConfig) -> RealData:
    """All images of the split as uint8 N x C x H x W, with their class labels where it has them."""
    check_dataset(cfg.name)
    if cfg.name == "folder":
        packed = prepared_folder(cfg)
        labels = torch.from_numpy(packed.labels()) if packed.classes is not None else None
        classes = len(packed.classes or [])
        return RealData(real_images(cfg), labels, classes, data_checksum(cfg), True)
    images, labels, names = info(cfg).labelled(cfg, 0)
    checksum = _checksum(data_files(cfg))
    return RealData(torch.from_numpy(np.array(images)), torch.from_numpy(labels), len(names), checksum, False)


def check_dataset(name: str) -> None:
    if name not in IMAGE_DATASETS and name != "folder":
        accepted = ", ".join((*IMAGE_DATASETS, "folder"))
        raise DataError(f"no feature network for dataset {name!r}; accepted: {accepted}")


def choose(cfg: DatasetConfig, choice: str) -> str:
    """The feature net `auto` means: the class labels' classifier where the data has two classes or
    more, else the self-supervised rotation net."""
    if choice != "auto":
        return choice
    if not has_labels(cfg):
        return SELFSUP
    if cfg.name == "folder" and len(prepared_folder(cfg).classes or []) < 2:
        return SELFSUP
    return CLASSES


# --- The network ----------------------------------------------------------------------------------
class FeatureNet(nn.Module):
    """Two conv layers, one hidden layer (the 128 features), the task's logits (classes or rotations)."""

    def __init__(self, channels: int, size: int, width: int = 16, features: int = 128, outputs: int = NUM_CLASSES):
        super().__init__()
        self.side = min(size, MAX_SIDE)
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width * (self.side // 4) ** 2, features)
        self.head = nn.Linear(features, outputs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> penultimate-layer features."""
        x = x.float().div(127.5).sub(1.0)
        if x.shape[-1] != self.side:
            x = F.adaptive_avg_pool2d(x, self.side)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def held_out_size(n: int) -> int:
    # 1,000 of a real split; a tenth of a tiny test file, so a few images are still trained on.
    return min(HELD_OUT, max(1, n // 10))


@torch.no_grad()
def embed_all(
    net: FeatureNet, images: torch.Tensor, device: torch.device, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Features and softmax probabilities of uint8 images, computed in batches."""
    net.eval()
    feats, probs = [], []
    for start in range(0, images.shape[0], batch_size):
        f = net.embed(images[start : start + batch_size].to(device))
        feats.append(f.float().cpu())
        probs.append(F.softmax(net.head(f), dim=1).float().cpu())
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


# --- Fitting and the cache --------------------------------------------------------------------------
@dataclass
class FeatureModel:
    net: FeatureNet
    dataset: str
    split: str
    accuracy: float  # on the held-out images: of the class, or (selfsup) of the rotation
    checksum: str
    mu: np.ndarray  # real-data feature mean and covariance over the whole split
    sigma: np.ndarray
    real_features: np.ndarray  # a fixed random subset, for precision/recall and KID
    path: Path
    task: str = CLASSES  # CLASSES or SELFSUP
    num_classes: int = NUM_CLASSES  # the classifier's classes (selfsup: the rotations)


def cache_path(cfg: DatasetConfig, task: str = CLASSES) -> Path:
    if cfg.name == "folder":
        return prepared_folder(cfg).folder / f"features_{task}.pt"
    suffix = "" if task == CLASSES else f"_{task}"
    return data_root(cfg) / CACHE_DIR / f"{cfg.name}_{cfg.split}{suffix}.pt"


def fallback_cache_path(cfg: DatasetConfig, checksum: str, task: str = CLASSES) -> Path:
    """Where the cache goes when the data folder is read-only: keyed by checksum, not by folder."""
    base = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "ganctl" / "features"
    suffix = "" if task == CLASSES else f"_{task}"
    return base / f"{cfg.name}_{cfg.split}{suffix}_{checksum.removeprefix('folder:')[:16]}.pt"


def fit(
    cfg: DatasetConfig,
    device: torch.device,
    epochs: int = 4,
    seed: int = 0,
    progress: bool = True,
    task: str = CLASSES,
) -> FeatureModel:
    """Train the feature network on the split, measure it, cache it with the real statistics.

    Its random draws come from forked streams: a training run that evaluates (trainer.eval_every)
    fits this net mid-run, and reseeding the global stream there would make every seed of a sweep
    continue on one shared stream.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return _fit(cfg, device, epochs, progress, task)


def _task_data(cfg: DatasetConfig, task: str) -> RealData:
    """The real data, checked for what the task needs."""
    check_dataset(cfg.name)
    if cfg.split not in SPLITS:
        raise DataError(f"split {cfg.split!r} is invalid; accepted: {', '.join(SPLITS)}")
    check_task(cfg, task)
    return load_real(cfg)


def check_task(cfg: DatasetConfig, task: str) -> None:
    """DataError when the classifier is asked for on a folder with fewer than two classes."""
    if task == CLASSES and cfg.name == "folder":
        classes = prepared_folder(cfg).classes
        if classes is None or len(classes) < 2:
            what = "no class labels" if classes is None else "one class"
            raise DataError(
                f"the classifier features need two classes or more and this folder has {what}; accepted: "
                "dataset.labels=subfolders with two subfolders or more, or --features selfsup"
            )


def _split_rows(real: RealData, hold: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, held-out rows): the last images of a named split (already shuffled), a
    seeded random subset of a folder (sorted by path, so the last ones are one class)."""
    n = len(real.images)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)) if real.random_held_out else torch.arange(n)
    return order[: n - hold].sort().values, order[n - hold :].sort().values


def _fit(cfg: DatasetConfig, device: torch.device, epochs: int, progress: bool, task: str) -> FeatureModel:
    real = _task_data(cfg, task)
    n = len(real.images)
    hold = held_out_size(n)
    if n - hold < 10:
        raise DataError(f"{cfg.name} {cfg.split} has {n} images; the feature network needs at least {hold + 10}")
    _, channels, size, _ = real.images.shape
    outputs = real.num_classes if task == CLASSES else ROTATIONS
    net = FeatureNet(channels, size, outputs=outputs).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    train_rows, held_rows = _split_rows(real, hold)
    batch = 64
    updates = epochs * -(-len(train_rows) // batch)
    if task == SELFSUP:
        updates = max(updates, MIN_SELFSUP_UPDATES)
    start, done = time.perf_counter(), 0
    said = start
    while done < updates:
        net.train()
        perm = train_rows[torch.randperm(len(train_rows))]
        for i in range(0, len(perm), batch):
            loss = F.cross_entropy(*_task_batch(net, real, perm[i : i + batch], task, device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == updates:
                break
        # An epoch of a small folder is a few updates: a line every PROGRESS_EVERY_S seconds, and the
        # last, rather than one per epoch (300 lines for 300 images).
        now = time.perf_counter()
        if progress and (done == updates or now - said >= PROGRESS_EVERY_S):
            said = now
            print(
                f"ganctl: feature net ({task}) {done}/{updates} updates, loss {loss.item():.4f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    feats, probs = embed_all(net, real.images, device)
    held = held_rows.numpy()
    if task == CLASSES:
        accuracy = float((probs[held].argmax(1) == real.labels[held_rows].numpy()).mean())
    else:
        accuracy = rotation_accuracy(net, real.images[held_rows], device)
    mu, sigma = feature_stats(feats)
    keep = np.random.default_rng(0).permutation(n)[:REAL_FEATURES_KEPT]
    model = FeatureModel(
        net.eval(), cfg.name, cfg.split, accuracy, real.checksum, mu, sigma, feats[np.sort(keep)], cache_path(cfg, task)
    )
    model.task, model.num_classes = task, outputs
    model.path = save(model, cfg, channels, size, hold)
    if progress:
        print(
            f"ganctl: feature net ({task}) held-out accuracy {accuracy:.2%} on {hold} images; cached at {model.path}",
            flush=True,
        )
    return model


def _task_batch(
    net: FeatureNet, real: RealData, rows: torch.Tensor, task: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) of one training batch: the classes, or the quarter turns of rotated images."""
    x = real.images[rows].to(device)
    if task == CLASSES:
        return net(x), real.labels[rows].to(device)
    k = torch.randint(0, ROTATIONS, (len(x),)).to(device)
    return net(quarter_turns(x, k)), k


@torch.no_grad()
def rotation_accuracy(net: FeatureNet, x: torch.Tensor, device: torch.device) -> float:
    """How often the net names the rotation of each image under each of the four."""
    net.eval()
    right = 0
    for turns in range(ROTATIONS):
        logits = torch.cat([net(torch.rot90(x[a : a + 500].to(device), turns, (2, 3))) for a in range(0, len(x), 500)])
        right += int((logits.argmax(1) == turns).sum())
    return right / (ROTATIONS * len(x))


def save(model: FeatureModel, cfg: DatasetConfig, channels: int, size: int, held_out: int) -> Path:
    payload = {
        "format": CACHE_FORMAT,
        "dataset": model.dataset,
        "split": model.split,
        "sha256": model.checksum,
        "task": model.task,
        "outputs": model.num_classes,
        "channels": channels,
        "size": size,
        "accuracy": model.accuracy,
        "held_out": held_out,
        "state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        "mu": torch.from_numpy(model.mu),
        "sigma": torch.from_numpy(model.sigma),
        "real_features": torch.from_numpy(model.real_features),
    }
    paths = [cache_path(cfg, model.task), fallback_cache_path(cfg, model.checksum, model.task)]
    written = write_first_writable(paths, lambda f: torch.save(payload, f))
    if written is None:
        print("ganctl: warning: could not cache the feature network (read-only folders); it will be retrained")
    return written or paths[0]


def load_cached(cfg: DatasetConfig, device: torch.device, task: str = CLASSES) -> FeatureModel | None:
    """The cached network for this split and task, or None when absent or made from different data."""
    checksum = data_checksum(cfg)
    for path in (cache_path(cfg, task), fallback_cache_path(cfg, checksum, task)):
        if not path.is_file():
            continue
        try:
            c = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            continue  # a damaged cache is rebuilt, not fatal
        if not isinstance(c, dict) or c.get("format") != CACHE_FORMAT or c.get("sha256") != checksum:
            continue
        if c.get("task", CLASSES) != task:  # caches written before selfsup hold the classifier
            continue
        outputs = int(c.get("outputs", NUM_CLASSES))
        net = FeatureNet(c["channels"], c["size"], outputs=outputs)
        net.load_state_dict(c["state_dict"])
        return FeatureModel(
            net.to(device).eval(),
            c["dataset"],
            c["split"],
            float(c["accuracy"]),
            checksum,
            c["mu"].numpy(),
            c["sigma"].numpy(),
            c["real_features"].numpy(),
            path,
            task,
            outputs,
        )
    return None


def load_or_fit(cfg: DatasetConfig, device: torch.device, progress: bool = True, task: str = CLASSES) -> FeatureModel:
    """The cached feature network, trained first if this split has none (a minute or two on CPU)."""
    check_dataset(cfg.name)
    check_task(cfg, task)
    model = load_cached(cfg, device, task)
    if model is None:
        if progress:
            print(f"ganctl: no {task} feature network for {cfg.name} {cfg.split} yet; training one", flush=True)
        model = fit(cfg, device, progress=progress, task=task)
    return model


def image_metrics(
    x: torch.Tensor,
    fm: FeatureModel,
    device: torch.device,
    batch_size: int,
    pr_samples: int,
    seed: int,
    labels: torch.Tensor | None = None,
    kid_subsets: int = KID_SUBSETS,
) -> dict:
    """Every image metric of uint8 samples against the cached real statistics: FD, KID, precision
    and recall; with the classifier, its score and class coverage and, given the classes a
    conditional G was asked for (`labels`), how often the classifier agrees with them."""
    feats, probs = embed_all(fm.net, x, device, batch_size)
    mu, sigma = feature_stats(feats)
    out = {"fd": metrics.frechet_distance(mu, sigma, fm.mu, fm.sigma)}
    k = metrics.kid(fm.real_features, feats, subsets=kid_subsets, seed=seed)
    out["kid"], out["kid_std"] = k["kid_mean"], k["kid_std"]
    rng = np.random.default_rng(seed)
    if fm.task == CLASSES:
        out["classifier_score"] = metrics.classifier_score(probs)
        out.update(metrics.class_coverage(probs.argmax(axis=1), fm.num_classes))
    m = min(pr_samples, len(feats), len(fm.real_features))
    fake_sub = feats[rng.permutation(len(feats))[:m]]
    real_sub = fm.real_features[rng.permutation(len(fm.real_features))[:m]]
    out.update(metrics.precision_recall(real_sub, fake_sub, k=PR_K))
    out["pr_samples"] = m
    if labels is not None and fm.task == CLASSES:
        out["class_accuracy"] = float((probs.argmax(axis=1) == labels.numpy()).mean())
    return out
