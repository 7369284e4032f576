"""The small CNN classifier whose penultimate layer gives ganctl's evaluation features.

ganctl trains it on the real split itself (no downloaded weights), keeps the last images out to
measure its accuracy, and caches it with the real-data feature statistics under
<root>/ganctl_features/<dataset>_<split>.pt, keyed by the data file's checksum.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganctl import metrics
from ganctl.config import DatasetConfig
from ganctl.data import DATASETS, IMAGES, SPLITS, data_root, info
from ganctl.errors import DataError
from ganctl.files import atomic_write
from ganctl.metrics import feature_stats

CACHE_FORMAT = 1
CACHE_DIR = "ganctl_features"
# The named image datasets with classes: a classifier is trained on each to give its features.
IMAGE_DATASETS = tuple(name for name, d in DATASETS.items() if d.kind == IMAGES and d.files and d.labelled)
NUM_CLASSES = 10
HELD_OUT = 1000  # the last images of the split; never trained on, they measure the accuracy
PR_K = 3  # Kynkaanniemi et al. 2019 use k = 3
REAL_FEATURES_KEPT = 5000  # real features stored for precision/recall (a fixed random subset)


# --- Real images and labels ------------------------------------------------------------------
@dataclass
class RealData:
    images: torch.Tensor  # N x C x H x W uint8
    labels: torch.Tensor  # N int64 in 0..9 (digits, clothing or CIFAR-10's classes)
    files: list[Path]
    checksum: str


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


def load_real(cfg: DatasetConfig) -> RealData:
    """All images of the split as uint8 N x C x H x W, with their class labels."""
    files = data_files(cfg)
    images, labels, _ = info(cfg).labelled(cfg, 0)
    return RealData(torch.from_numpy(np.array(images)), torch.from_numpy(labels), files, _checksum(files))


def check_dataset(name: str) -> None:
    if name not in IMAGE_DATASETS:
        raise DataError(f"no feature network for dataset {name!r}; accepted: {', '.join(IMAGE_DATASETS)}")


# --- The network ----------------------------------------------------------------------------------
class FeatureNet(nn.Module):
    """Two conv layers, one hidden layer (the 128 features), ten logits."""

    def __init__(self, channels: int, size: int, width: int = 16, features: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width * (size // 4) ** 2, features)
        self.head = nn.Linear(features, NUM_CLASSES)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> penultimate-layer features."""
        x = x.float().div(127.5).sub(1.0)
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
    accuracy: float  # on the held-out images
    checksum: str
    mu: np.ndarray  # real-data feature mean and covariance over the whole split
    sigma: np.ndarray
    real_features: np.ndarray  # a fixed random subset, for precision/recall
    path: Path


def cache_path(cfg: DatasetConfig) -> Path:
    return data_root(cfg) / CACHE_DIR / f"{cfg.name}_{cfg.split}.pt"


def fallback_cache_path(cfg: DatasetConfig, checksum: str) -> Path:
    """Where the cache goes when the data folder is read-only: keyed by checksum, not by folder."""
    base = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "ganctl" / "features"
    return base / f"{cfg.name}_{cfg.split}_{checksum[:16]}.pt"


def fit(
    cfg: DatasetConfig, device: torch.device, epochs: int = 4, seed: int = 0, progress: bool = True
) -> FeatureModel:
    """Train the feature network on the split, measure it, cache it with the real statistics.

    Its random draws come from forked streams: a training run that evaluates (trainer.eval_every)
    fits this net mid-run, and reseeding the global stream there would make every seed of a sweep
    continue on one shared stream.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return _fit(cfg, device, epochs, progress)


def _fit(cfg: DatasetConfig, device: torch.device, epochs: int, progress: bool) -> FeatureModel:
    check_dataset(cfg.name)
    if cfg.split not in SPLITS:
        raise DataError(f"split {cfg.split!r} is invalid; accepted: {', '.join(SPLITS)}")
    real = load_real(cfg)
    n = len(real.labels)
    hold = held_out_size(n)
    if n - hold < 10:
        raise DataError(f"{real.files[0]} has {n} images; the feature network needs at least {hold + 10}")
    _, channels, size, _ = real.images.shape
    net = FeatureNet(channels, size).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    train_x, train_y = real.images[: n - hold], real.labels[: n - hold]
    batch = 64
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(train_y))
        for i in range(0, len(perm), batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(net(train_x[idx].to(device)), train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if progress:
            print(
                f"ganctl: feature net epoch {epoch + 1}/{epochs} loss {loss.item():.4f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    feats, probs = embed_all(net, real.images, device)
    accuracy = float((probs[n - hold :].argmax(1) == real.labels[n - hold :].numpy()).mean())
    mu, sigma = feature_stats(feats)
    keep = np.random.default_rng(0).permutation(n)[:REAL_FEATURES_KEPT]
    model = FeatureModel(
        net.eval(), cfg.name, cfg.split, accuracy, real.checksum, mu, sigma, feats[np.sort(keep)], cache_path(cfg)
    )
    model.path = save(model, cfg, channels, size, hold)
    if progress:
        print(
            f"ganctl: feature net held-out accuracy {accuracy:.2%} on {hold} images; cached at {model.path}", flush=True
        )
    return model


def save(model: FeatureModel, cfg: DatasetConfig, channels: int, size: int, held_out: int) -> Path:
    payload = {
        "format": CACHE_FORMAT,
        "dataset": model.dataset,
        "split": model.split,
        "sha256": model.checksum,
        "channels": channels,
        "size": size,
        "accuracy": model.accuracy,
        "held_out": held_out,
        "state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        "mu": torch.from_numpy(model.mu),
        "sigma": torch.from_numpy(model.sigma),
        "real_features": torch.from_numpy(model.real_features),
    }
    for path in (cache_path(cfg), fallback_cache_path(cfg, model.checksum)):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: torch.save(payload, f))
            return path
        except OSError:
            continue  # a read-only data folder: try the user cache
    print("ganctl: warning: could not cache the feature network (read-only folders); it will be retrained")
    return cache_path(cfg)


def load_cached(cfg: DatasetConfig, device: torch.device) -> FeatureModel | None:
    """The cached network for this split, or None when absent or made from different data."""
    checksum = _checksum(data_files(cfg))
    for path in (cache_path(cfg), fallback_cache_path(cfg, checksum)):
        if not path.is_file():
            continue
        try:
            c = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            continue  # a damaged cache is rebuilt, not fatal
        if not isinstance(c, dict) or c.get("format") != CACHE_FORMAT or c.get("sha256") != checksum:
            continue
        net = FeatureNet(c["channels"], c["size"])
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
        )
    return None


def load_or_fit(cfg: DatasetConfig, device: torch.device, progress: bool = True) -> FeatureModel:
    """The cached feature network, trained first if this split has none (a minute or two on CPU)."""
    check_dataset(cfg.name)
    model = load_cached(cfg, device)
    if model is None:
        if progress:
            print(f"ganctl: no feature network for {cfg.name} {cfg.split} yet; training one", flush=True)
        model = fit(cfg, device, progress=progress)
    return model


def image_metrics(
    x: torch.Tensor,
    fm: FeatureModel,
    device: torch.device,
    batch_size: int,
    pr_samples: int,
    seed: int,
    labels: torch.Tensor | None = None,
) -> dict:
    """Every image metric of uint8 samples against the cached real statistics; with the classes a
    conditional G was asked for (`labels`), how often the classifier agrees with them."""
    feats, probs = embed_all(fm.net, x, device, batch_size)
    mu, sigma = feature_stats(feats)
    out = {
        "fd": metrics.frechet_distance(mu, sigma, fm.mu, fm.sigma),
        "classifier_score": metrics.classifier_score(probs),
    }
    out.update(metrics.class_coverage(probs.argmax(axis=1), NUM_CLASSES))
    m = min(pr_samples, len(feats), len(fm.real_features))
    rng = np.random.default_rng(seed)
    fake_sub = feats[rng.permutation(len(feats))[:m]]
    real_sub = fm.real_features[rng.permutation(len(fm.real_features))[:m]]
    out.update(metrics.precision_recall(real_sub, fake_sub, k=PR_K))
    out["pr_samples"] = m
    if labels is not None:
        out["class_accuracy"] = float((probs.argmax(axis=1) == labels.numpy()).mean())
    return out
