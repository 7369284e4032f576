"""The standard FID Inception-v3 (torch-fidelity's port of the 2015 TensorFlow graph): its weights,
its 2,048 pool features, cached real-data statistics, and FID, KID, precision and recall from them.

The network and its TensorFlow-compatible resize to 299 x 299 are torch-fidelity's; the weights come
from --inception-weights / GANCTL_INCEPTION_WEIGHTS, the user cache, torch.hub's cache (where
torch-fidelity puts them) or a download checked against the published hash. The scores are ganctl's
metrics.distribution_scores, the same formulas every other feature network uses; tests check them
against torch-fidelity's own numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ganctl import data, features, folder, metrics
from ganctl.config import DatasetConfig
from ganctl.errors import ConfigError, DataError
from ganctl.files import write_first_writable

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_NAME}"
# The only checksum published for the file: torch.hub's naming rule puts the first 8 hex digits of
# its SHA-256 in the name (torch-fidelity itself downloads without checking).
PUBLISHED_SHA256_PREFIX = "6726825d"
ENV = "GANCTL_INCEPTION_WEIGHTS"
DIMS = 2048
STATS_FORMAT = 1
DOWNLOAD_TIMEOUT = 60  # seconds without a byte before an online download counts as failed
# Images per forward pass at most: at 299 x 299 the first layers of a batch of 500 hold ~3 GB each.
MAX_BATCH = 50
ACCEPTED = f"the FID Inception weights {WEIGHTS_NAME} ({WEIGHTS_URL}), or a file of the same architecture"


def check_library() -> None:
    """torch-fidelity provides the network; without it, one line says how to install it."""
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ConfigError(
            "--features inception needs torch-fidelity, which is not installed; pip install ganctl[fid] "
            "(or pip install torch-fidelity), or use --features ganctl"
        )


def cache_dir() -> Path:
    """Where a download goes: $GANCTL_CACHE, else $XDG_CACHE_HOME/ganctl or ~/.cache/ganctl."""
    base = os.environ.get("GANCTL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "ganctl"
    return Path(base).expanduser() / "inception"


# --- The network ----------------------------------------------------------------------------------------
def architecture(device: torch.device | str = "meta") -> torch.nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3 (2048 pool features), built without reading any
    weights: on the meta device by default (shapes only), or initialised on `device`."""
    check_library()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        # Its constructor loads the file it is given (or downloads one); given an empty state dict,
        # nothing is loaded here, and the caller loads the checked weights itself.
        def load_state_dict(self, state_dict, *args, **kwargs):
            return super().load_state_dict(state_dict, *args, **kwargs) if state_dict else None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    with torch.device(device):
        return Unloaded("inception-v3-compat", [str(DIMS)], feature_extractor_weights_path=empty)


@dataclass(frozen=True)
class Weights:
    path: Path
    sha256: str
    published: bool  # the SHA-256 starts with the published prefix: scores compare with papers'
    state: dict  # the checked state dict

    def describe(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "published": self.published}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _state(path: Path) -> dict:
    """The file's state dict, checked against the architecture's keys and shapes (one-line errors)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch's own errors: all mean "not a weights file"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise ConfigError(f"{path} is not a PyTorch weights file ({reason}); accepted: {ACCEPTED}") from None
    expected = architecture().state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path} holds no state dict of tensors; accepted: {ACCEPTED}")
    # BatchNorm's step counters are not weights; a file saved without them loads as torch-fidelity's does.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unknown = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unknown or wrong:
        first = (
            f"{len(wrong)} tensors of the wrong shape, first {wrong[0]} {tuple(state[wrong[0]].shape)} "
            f"instead of {tuple(expected[wrong[0]].shape)}"
            if wrong
            else f"{len(missing)} missing and {len(unknown)} unknown keys, first {(missing or unknown)[0]}"
        )
        raise ConfigError(f"{path} does not fit the FID Inception-v3 ({first}); accepted: {ACCEPTED}")
    for k in expected:
        state.setdefault(k, torch.zeros((), dtype=torch.long))
    return state


def _checked(path: Path, must_be_published: bool) -> Weights:
    state = _state(path)
    digest = sha256_of(path)
    published = digest.startswith(PUBLISHED_SHA256_PREFIX)
    if not published and must_be_published:
        raise ConfigError(
            f"{path} has SHA-256 {digest[:16]}..., not the published {PUBLISHED_SHA256_PREFIX}... of {WEIGHTS_NAME} "
            f"(damaged or replaced); delete it to download it again, or pass --inception-weights {path} to use it"
        )
    if not published:
        print(
            f"ganctl: note: {path} is not the published FID Inception weights (SHA-256 {digest[:16]}..., published "
            f"{PUBLISHED_SHA256_PREFIX}...): its scores compare only with scores made with the same file",
            file=sys.stderr,
        )
    return Weights(path, digest, published, state)


def _hub_copy() -> Path:
    """Where torch-fidelity and torchmetrics keep the file after their own download."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME


def resolve_weights(path: str | os.PathLike | None = None) -> Weights:
    """The checked weights: `path`, else $GANCTL_INCEPTION_WEIGHTS, else a cached copy, else a download."""
    given, source = (path, "--inception-weights") if path else (os.environ.get(ENV) or None, ENV)
    if given:
        p = Path(given).expanduser()
        if not p.is_file():
            raise ConfigError(f"{source}={given}: no such file; accepted: {ACCEPTED}")
        return _checked(p, must_be_published=False)
    for cached in (cache_dir() / WEIGHTS_NAME, _hub_copy()):
        if cached.is_file():
            return _checked(cached, must_be_published=True)
    return _checked(download(cache_dir() / WEIGHTS_NAME), must_be_published=True)


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def download(dest: Path) -> Path:
    """The weights file fetched to `dest`, its SHA-256 checked against the published prefix."""
    print(f"ganctl: downloading the FID Inception weights (95 MB) from {WEIGHTS_URL} to {dest}", file=sys.stderr)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _socket_timeout(DOWNLOAD_TIMEOUT):
            # torch.hub writes to a temporary file beside dest, checks the hash, then renames it.
            torch.hub.download_url_to_file(
                WEIGHTS_URL, str(dest), hash_prefix=PUBLISHED_SHA256_PREFIX, progress=sys.stderr.isatty()
            )
    except RuntimeError as exc:  # torch.hub's "invalid hash value"
        raise ConfigError(
            f"the download of {WEIGHTS_URL} does not match its published SHA-256 prefix {PUBLISHED_SHA256_PREFIX} "
            f"({str(exc)[:120]}); try again, or pass a checked copy with --inception-weights FILE"
        ) from None
    except Exception as exc:  # offline, refused, timed out, a proxy's error page...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
        raise ConfigError(
            f"the FID Inception weights {WEIGHTS_NAME} are not on this machine and could not be downloaded "
            f"({reason}); get {WEIGHTS_URL} and pass --inception-weights FILE, set {ENV}=FILE, or put it in "
            f"{cache_dir()}/"
        ) from None
    return dest


def extractor(weights: Weights, device: torch.device) -> torch.nn.Module:
    """The network with the checked weights, in evaluation mode on `device`."""
    net = architecture()
    net.load_state_dict(weights.state, assign=True)  # meta tensors replaced by the file's
    return net.to(device).eval()


# --- Features ------------------------------------------------------------------------------------------
ImageSource = torch.Tensor | np.ndarray | folder.MappedImages


def _rows(images: ImageSource, a: int, b: int) -> torch.Tensor:
    if isinstance(images, folder.MappedImages):
        # A copy of these rows only; the map drops its pages past its budget (folder.py).
        return torch.from_numpy(images.rows(np.arange(a, min(b, len(images.array)))))
    if isinstance(images, np.ndarray):
        return torch.from_numpy(np.array(images[a:b]))  # read-only or mapped arrays: copy one batch
    return images[a:b]


def _length(images: ImageSource) -> int:
    return len(images.array) if isinstance(images, folder.MappedImages) else len(images)


@torch.no_grad()
def embed_batches(
    net: torch.nn.Module, images: ImageSource, device: torch.device, batch_size: int
) -> Iterator[np.ndarray]:
    """The pool features of uint8 N x C x H x W images (C 1 or 3), batch by batch, as float32 arrays."""
    batch_size = min(batch_size, MAX_BATCH)
    for a in range(0, _length(images), batch_size):
        x = _rows(images, a, a + batch_size).to(device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # greyscale as RGB, as torch-fidelity's image readers do
        yield net(x)[0].float().cpu().numpy()


def embed(net: torch.nn.Module, images: ImageSource, device: torch.device, batch_size: int = 100) -> np.ndarray:
    """All pool features of the images, N x 2048 float32."""
    parts = list(embed_batches(net, images, device, batch_size))
    return np.concatenate(parts) if parts else np.zeros((0, DIMS), np.float32)


# --- Real-data statistics, cached ------------------------------------------------------------------------
@dataclass
class RealStats:
    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray  # a fixed random subset of the real features, for KID and precision/recall
    n: int  # real images the mean and covariance are over
    what: str  # e.g. "mnist test" or "folder /data/faces"
    path: Path
    cached: bool  # read back from `path`, not computed now

    def describe(self) -> dict:
        return {"path": str(self.path), "n": self.n, "kept_features": len(self.features), "cached": self.cached}


def _source(cfg: DatasetConfig) -> tuple[ImageSource, str, str, str]:
    """The real images, their identity (data checksum or folder cache key), a file stem and a label."""
    if cfg.name == "folder":
        packed = data.prepared_folder(cfg)
        key, res = packed.folder.name, packed.shape[-1]  # the key hashes the files, their mtimes and the settings
        return folder.MappedImages(packed.images_path), key, f"folder_{key}_{res}px", f"folder {cfg.path}"
    if cfg.name not in features.IMAGE_DATASETS:
        raise DataError(
            f"--features inception scores images; dataset {cfg.name!r} is not one; accepted: "
            f"{', '.join(features.IMAGE_DATASETS)}, folder"
        )
    files = features.data_files(cfg)
    images = data.info(cfg).load(cfg, 0)
    stem = f"{cfg.name}_{cfg.split}_{images.shape[-1]}px"
    return images, features._checksum(files), stem, f"{cfg.name} {cfg.split}"


def stats_paths(cfg: DatasetConfig, stem: str, key: str, weights: Weights) -> list[Path]:
    """Beside the feature-net caches (<root>/ganctl_features/), then the user cache (read-only data)."""
    name = f"inception_{stem}_{weights.sha256[:12]}.pt"
    return [
        data.data_root(cfg) / features.CACHE_DIR / name,
        cache_dir().parent / "features" / f"{name[:-3]}_{key[:12]}.pt",
    ]


def _read_stats(path: Path, key: str, weights: Weights) -> dict | None:
    try:
        c = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # absent or damaged: computed again
    ok = isinstance(c, dict) and c.get("format") == STATS_FORMAT
    return c if ok and c.get("data_key") == key and c.get("weights_sha256") == weights.sha256 else None


def real_stats(
    cfg: DatasetConfig,
    weights: Weights,
    net: torch.nn.Module,
    device: torch.device,
    batch_size: int = 100,
    keep: int = features.REAL_FEATURES_KEPT,
) -> RealStats:
    """Mean, covariance and a kept subset of the real split's (or folder's) features, read from the
    cache when the data and the weights are the ones it was made from, else computed and cached."""
    images, key, stem, what = _source(cfg)
    paths = stats_paths(cfg, stem, key, weights)
    for path in paths:
        c = _read_stats(path, key, weights)
        if c is not None:
            return RealStats(c["mu"].numpy(), c["sigma"].numpy(), c["features"].numpy(), c["n"], what, path, True)
    n = _length(images)
    if n < 2:
        raise DataError(f"{what} holds {n} image; the real statistics need at least 2")
    print(f"ganctl: Inception statistics of {what} ({n} images): computing once, then cached", file=sys.stderr)
    kept_rows = np.sort(np.random.default_rng(0).permutation(n)[:keep])
    moments, kept, start = metrics.Moments(DIMS), [], 0
    for f in embed_batches(net, images, device, batch_size):
        moments.add(f)
        inside = kept_rows[(kept_rows >= start) & (kept_rows < start + len(f))]
        kept.append(f[inside - start])
        start += len(f)
    mu, sigma = moments.stats()
    stats = RealStats(mu, sigma, np.concatenate(kept), n, what, paths[0], False)
    stats.path = _write_stats(stats, paths, key, weights)
    return stats


def _write_stats(stats: RealStats, paths: list[Path], key: str, weights: Weights) -> Path:
    payload = {
        "format": STATS_FORMAT,
        "data_key": key,
        "what": stats.what,
        "weights_sha256": weights.sha256,
        "n": stats.n,
        "mu": torch.from_numpy(stats.mu),
        "sigma": torch.from_numpy(stats.sigma),
        "features": torch.from_numpy(stats.features),
    }
    written = write_first_writable(paths, lambda f: torch.save(payload, f))
    if written is None:
        print("ganctl: warning: could not cache the Inception statistics (read-only folders)", file=sys.stderr)
    return written or paths[0]


def scores(fake: np.ndarray, real: RealStats, pr_samples: int = 5000, seed: int = 0) -> dict:
    """FID, KID (mean and std over subsets), precision and recall (k = 3) of the samples' features."""
    out = metrics.distribution_scores(fake, real.mu, real.sigma, real.features, pr_samples, seed)
    out["fid"] = out.pop("fd")  # Inception's Frechet distance is what papers call FID
    return out
