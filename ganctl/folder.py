"""dataset=folder: a folder of image files decoded once into a packed uint8 array on disk, read back mapped.

The pack is N x C x R x R uint8 in a .npy file, one row per readable image in the order of the sorted
relative paths, with labels.npy (int64, N) beside it for dataset.labels=subfolders and manifest.json,
written last, as the mark of a complete cache. The cache folder's name is a hash of everything the
pixels depend on: the relative paths, sizes and modification times of the files and the resolution,
channels and labels settings. A changed folder hashes to a new cache; an old one is never trusted.

Only numpy and Pillow here, no torch: the decoding workers import this module.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import mmap
import multiprocessing
import os
import struct
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganctl.config import DatasetConfig
from ganctl.errors import DataError
from ganctl.files import atomic_write, refused, remove_temporaries

log = logging.getLogger("ganctl.data")

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
IMAGE_FILES = "PNG, JPEG, WebP, BMP or GIF files that Pillow can decode"
ACCEPTED = "a folder of PNG, JPEG, WebP, BMP or GIF images (searched recursively)"
# The sides the enlarging warning suggests: ones every image family trains at (they halve to 4).
SUGGESTED_SIDES = (16, 32, 64, 128, 256)
CACHE_FORMAT = 1  # part of the key: a change in how pixels are made must not reuse old caches
IMAGES, LABELS, MANIFEST = "images.npy", "labels.npy", "manifest.json"
# The .npy header is written after the rows, once their count is known, so it has a fixed size.
# 128 bytes keeps the data 64-byte aligned, as numpy's own writer does, and holds any shape.
HEADER_BYTES = 128
NPY_MAGIC = b"\x93NUMPY\x01\x00"
# Modes Pillow opens greyscale files in; a palette image counts when its palette is all grey.
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
# Below this many files the worker processes cost more to start (~1 s) than they save.
POOL_MIN_FILES = 256
# The mapped path drops its pages from this process after reading about this many bytes, so a
# run's resident memory stays flat however large the pack; the page cache keeps what RAM allows.
MAPPED_BUDGET = 256 * 2**20
FAULT_AROUND = 64 * 2**10  # Linux maps up to 16 cached neighbouring pages on each fault
# Caches this process built and has not announced yet. `ganctl train` sizes the dataset (and so
# builds the cache) before Hydra sets up logging; the load that follows says what happened.
_built_here: set[Path] = set()


@dataclass(frozen=True)
class SourceFile:
    rel: str  # path relative to the folder, "/"-separated: the sort key and the class
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Packed:
    """A complete cache: where it is and what its manifest says."""

    folder: Path
    shape: tuple[int, ...]  # N x C x R x R
    classes: list[str] | None
    manifest: dict

    @property
    def images_path(self) -> Path:
        return self.folder / IMAGES

    def __len__(self) -> int:
        return self.shape[0]

    def load(self) -> np.ndarray:
        """The whole pack in memory (writable)."""
        return np.load(self.images_path)

    def labels(self) -> np.ndarray:
        return np.load(self.folder / LABELS)


def megabytes(nbytes: int) -> str:
    mb = nbytes / 2**20
    return f"{mb:.0f} MB" if mb >= 100 else f"{mb:.3g} MB"


def source_folder(cfg: DatasetConfig) -> Path:
    """dataset.path as an absolute folder (a relative path is taken from the current folder)."""
    if not cfg.path:
        raise DataError(f"dataset=folder needs dataset.path=DIR; accepted: {ACCEPTED}")
    root = Path(os.path.expanduser(cfg.path)).absolute()
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise DataError(f"dataset.path={cfg.path} is not a folder ({root} {what}); accepted: {ACCEPTED}")
    return root


def scan(root: Path) -> list[SourceFile]:
    """The image files under `root`, sorted by relative path; hidden files and folders are skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(EXTENSIONS):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # a broken link: decoding will skip it with the unreadable files
                size, mtime = -1, 0
            found.append(SourceFile(Path(path).relative_to(root).as_posix(), size, mtime))
    if not found:
        raise DataError(
            f"{root} holds no PNG, JPEG, WebP, BMP or GIF files (searched recursively, hidden files skipped); "
            f"accepted: {ACCEPTED}"
        )
    return sorted(found, key=lambda f: f.rel)


def class_labels(root: Path, files: list[SourceFile], labels: str) -> tuple[list[str] | None, list[int] | None]:
    """(sorted class names, each file's class index) from the first level of subfolders, or (None, None)."""
    if labels != "subfolders":
        return None, None
    loose = [f.rel for f in files if "/" not in f.rel]
    if loose:
        shown = ", ".join(loose[:3]) + (", ..." if len(loose) > 3 else "")
        raise DataError(
            f"dataset.labels=subfolders: {len(loose)} images lie directly in {root} ({shown}), outside any class "
            "subfolder; accepted: every image inside a first-level subfolder named after its class, "
            "or dataset.labels=none"
        )
    top = [f.rel.split("/", 1)[0] for f in files]
    classes = sorted(set(top))
    index = {name: i for i, name in enumerate(classes)}
    return classes, [index[name] for name in top]


def cache_key(files: list[SourceFile], cfg: DatasetConfig) -> str:
    h = hashlib.sha256()
    settings = {"format": CACHE_FORMAT, "resolution": cfg.resolution, "channels": cfg.channels, "labels": cfg.labels}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for f in files:
        # NUL cannot occur in a path; surrogateescape keeps undecodable names distinct.
        h.update(f"\0{f.rel}\0{f.size}\0{f.mtime_ns}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:20]


def prepare(cfg: DatasetConfig, cache_root: Path) -> Packed:
    """The folder's pack, built when no complete cache matches the folder as it is now."""
    root = source_folder(cfg)
    files = scan(root)
    classes, file_labels = class_labels(root, files, cfg.labels)
    cache = cache_root / cache_key(files, cfg)
    packed = _complete(cache)
    if packed is None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            lock = os.open(cache / ".build.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise refused(cache, exc, doing="create the dataset cache folder") from None
        try:
            # A second process building the same cache (two runs of a sweep) waits here and then
            # finds it complete, instead of decoding the folder again.
            fcntl.flock(lock, fcntl.LOCK_EX)
            packed = _complete(cache)
            if packed is None:
                remove_temporaries(cache)  # left by a killed build; nobody else holds the lock
                return _build(root, files, classes, file_labels, cfg, cache)
        finally:
            os.close(lock)
    return packed


def announce(packed: Packed) -> None:
    """Log whether the pack was built by this process (with its time and skipped files) or reused."""
    m = packed.manifest
    shape = f"{len(packed)} images of {'x'.join(map(str, packed.shape[1:]))}, {megabytes(math.prod(packed.shape))}"
    if packed.folder not in _built_here:
        skipped = f"; {m['skipped']} unreadable files were skipped" if m["skipped"] else ""
        log.info(
            f"dataset=folder: reusing the cache {packed.folder} ({shape}, built in {m['build_seconds']:.1f} s{skipped})"
        )
        _warn_enlarged(m)
        return
    _built_here.discard(packed.folder)
    log.info(
        f"dataset=folder: decoded {m['folder']} into the cache {packed.folder} in {m['build_seconds']:.1f} s ({shape})"
    )
    _warn_enlarged(m)
    if m["skipped"]:
        names = m["skipped_files"]
        shown = ", ".join(names[:3]) + (", ..." if m["skipped"] > 3 else "")
        log.warning(
            f"dataset=folder: skipped {m['skipped']} unreadable or truncated files of {m['files']}: "
            f"{shown} (first: {m['first_reason']})"
        )


def _warn_enlarged(m: dict) -> None:
    """Most images smaller than dataset.resolution were enlarged to it: the run trains on blown-up
    pixels at the cost of the larger side (a 32 px folder at the default 64 costs 4x the pixels)."""
    n, res, median = m["shape"][0], m["resolution"], m.get("median_side")  # caches before 2026-12-07: none
    if median is None or 2 * m["enlarged"] <= n:
        return
    fits = [r for r in SUGGESTED_SIDES if r <= median and r < res]
    suggestion = ""
    if fits:
        side = fits[-1]
        fewer = (res / side) ** 2
        suggestion = f"; dataset.resolution={side} trains on them without enlarging, on {fewer:.0f}x fewer pixels"
    log.warning(
        f"dataset=folder: {m['enlarged']} of {n} images are smaller than dataset.resolution={res} "
        f"(median side {median} px) and were enlarged to it{suggestion}"
    )


def _complete(cache: Path) -> Packed | None:
    """The cache when its manifest (written last) is there and the pack has the size it promises."""
    try:
        manifest = json.loads((cache / MANIFEST).read_text())
        shape = tuple(int(v) for v in manifest["shape"])
        if manifest["format"] != CACHE_FORMAT or (cache / IMAGES).stat().st_size != HEADER_BYTES + math.prod(shape):
            return None
        classes = manifest["classes"]
        if classes is not None and (cache / LABELS).stat().st_size < shape[0] * 8:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Packed(cache, shape, classes, manifest)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header for uint8 C-order data, padded to HEADER_BYTES."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}".encode("latin1")
    pad = HEADER_BYTES - len(NPY_MAGIC) - 2 - len(text) - 1
    return NPY_MAGIC + struct.pack("<H", HEADER_BYTES - len(NPY_MAGIC) - 2) + text + b" " * pad + b"\n"


def decode_workers(n_files: int) -> int:
    """Processes to decode with: GANCTL_DECODE_WORKERS, else one per CPU this process may use."""
    env = os.environ.get("GANCTL_DECODE_WORKERS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise DataError(f"GANCTL_DECODE_WORKERS={env} is invalid; accepted: a number of processes >= 1")
        return int(env)
    if n_files < POOL_MIN_FILES:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), 32))


def _build(
    root: Path,
    files: list[SourceFile],
    classes: list[str] | None,
    file_labels: list[int] | None,
    cfg: DatasetConfig,
    cache: Path,
) -> Packed:
    start = time.perf_counter()
    res = cfg.resolution
    # channels=auto packs 3 channels and keeps one at the end when every image was greyscale: the
    # count of channels is only known after the last image, and the rows go to disk as they come.
    out_channels = 1 if cfg.channels == "1" else 3
    jobs = [(str(root / f.rel), res, cfg.channels) for f in files]
    workers = decode_workers(len(files))
    tmp = cache / f".{IMAGES}.tmp{os.getpid()}"
    skipped: list[tuple[str, str]] = []
    kept_labels: list[int] = []
    sides: list[int] = []
    all_grey = True
    from tqdm import tqdm

    try:
        with open(tmp, "wb") as f:
            f.write(b"\0" * HEADER_BYTES)
            with _decoded(jobs, workers) as results:
                # disable=None: a bar on a terminal only, not \r-lines in a log file
                bar = tqdm(results, total=len(jobs), desc="decoding images", unit="img", file=sys.stderr, disable=None)
                for i, (pixels, grey, error, side) in enumerate(bar):
                    if pixels is None:
                        skipped.append((files[i].rel, error))
                        continue
                    all_grey &= grey
                    sides.append(side)
                    f.write(_rows(pixels, out_channels).tobytes())
                    if file_labels is not None:
                        kept_labels.append(file_labels[i])
            n = len(files) - len(skipped)
            if n == 0:
                first, reason = skipped[0]
                raise DataError(
                    f"none of the {len(files)} image files in {root} could be read (first: {first}: {reason}); "
                    "accepted: PNG, JPEG, WebP, BMP or GIF files that Pillow can decode"
                )
            channels = out_channels
            if cfg.channels == "auto" and all_grey:
                f.flush()
                _keep_first_channel(tmp, n, res)
                channels = 1
                f.truncate(HEADER_BYTES + n * res * res)
            f.seek(0)
            f.write(_npy_header((n, channels, res, res)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, cache / IMAGES)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise refused(cache / IMAGES, exc) from None
        raise
    if classes is not None:
        atomic_write(cache / LABELS, lambda f: np.save(f, np.asarray(kept_labels, dtype=np.int64)))
    seconds = time.perf_counter() - start
    manifest = _manifest(root, cfg, (n, channels, res, res), classes, len(files), skipped, sides, seconds)
    # The manifest is the commit point: until it exists, _complete ignores the files beside it.
    atomic_write(cache / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    _built_here.add(cache)
    return Packed(cache, (n, channels, res, res), classes, manifest)


def _manifest(
    root: Path,
    cfg: DatasetConfig,
    shape: tuple[int, ...],
    classes: list[str] | None,
    n_files: int,
    skipped: list[tuple[str, str]],
    sides: list[int],
    seconds: float,
) -> dict:
    """What a complete cache holds and how it was made (manifest.json)."""
    return {
        "format": CACHE_FORMAT,
        "folder": str(root),
        "shape": list(shape),
        "resolution": cfg.resolution,
        "channels": cfg.channels,
        "labels": cfg.labels,
        "classes": classes,
        "files": n_files,
        "skipped": len(skipped),
        "skipped_files": [rel for rel, _ in skipped[:20]],
        "first_reason": skipped[0][1] if skipped else None,
        # The images' own sizes (the side of each centre square), for the warning on enlarging.
        "median_side": int(np.median(sides)),
        "enlarged": sum(side < cfg.resolution for side in sides),
        "build_seconds": round(seconds, 3),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class _decoded:
    """The decoded files in order: in this process, or from worker processes for many files."""

    def __init__(self, jobs: list, workers: int):
        self.jobs, self.workers, self.pool = jobs, workers, None

    def __enter__(self):
        if self.workers == 1:
            return map(decode, self.jobs)
        # spawn, not fork: the parent may hold CUDA state and torch's thread pools, which a forked
        # child inherits broken. The workers import numpy, Pillow and this module only.
        self.pool = multiprocessing.get_context("spawn").Pool(self.workers)
        return self.pool.imap(decode, self.jobs, chunksize=16)

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _rows(pixels: np.ndarray, channels: int) -> np.ndarray:
    """R x R (grey) or R x R x 3 pixels as the pack's C x R x R row."""
    if pixels.ndim == 2:
        return np.broadcast_to(pixels, (channels, *pixels.shape))
    return pixels.transpose(2, 0, 1)


def _keep_first_channel(path: Path, n: int, res: int) -> None:
    """Rewrite the 3-channel rows of an all-grey pack as 1-channel rows, in place, front to back.

    Row i moves from byte 3*i*R*R to i*R*R: never past the rows still to be read.
    """
    plane = res * res
    flat = np.memmap(path, dtype=np.uint8, mode="r+", offset=HEADER_BYTES, shape=(n * 3 * plane,))
    chunk = max(1, 2**24 // (3 * plane))
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        first = np.array(flat[a * 3 * plane : b * 3 * plane].reshape(b - a, 3, plane)[:, 0])
        flat[a * plane : b * plane] = first.reshape(-1)
    flat.flush()
    del flat


# --- Decoding one file (runs in the worker processes) -----------------------------------------------
def is_grey(img) -> bool:
    if img.mode in GREY_MODES:
        return True
    if img.mode in ("P", "PA"):
        palette = np.asarray(img.getpalette() or [0, 0, 0], dtype=np.uint8).reshape(-1, 3)
        return bool((palette == palette[:, :1]).all())
    return False


def decode(job: tuple[str, int, str]) -> tuple[np.ndarray | None, bool, str, int]:
    """(R x R or R x R x 3 uint8 pixels, whether the file is greyscale, why it failed, the side of
    its centre square before the resize) for one file."""
    path, res, channels = job
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            # A large photo is a user's data, not a decompression bomb; a real bomb (2x Pillow's
            # limit) still raises and the file is skipped.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                grey = is_grey(img)
                want = "L" if channels == "1" or (channels == "auto" and grey) else "RGB"
                if img.format == "JPEG":
                    # Decode at the smallest DCT scale that keeps 2R pixels a side (as Pillow's
                    # thumbnail does): 2-8x faster for photos, and the resize below still antialiases.
                    img.draft(want, (2 * res, 2 * res))
                img.load()  # GIF: the first frame, where open() leaves it
                img = ImageOps.exif_transpose(img)  # phone photos store their rotation in EXIF
                img = _flatten(img, want)
                side = min(img.size)
                left, top = (img.width - side) // 2, (img.height - side) // 2
                img = img.crop((left, top, left + side, top + side))
                if side != res:
                    # Lanczos antialiases a downscale; reducing_gap=3 first shrinks large images by
                    # an integer box filter to within 3x of the target, which Pillow documents as
                    # indistinguishable from a full Lanczos pass and which is many times faster.
                    img = img.resize((res, res), Image.Resampling.LANCZOS, reducing_gap=3.0)
                pixels = np.asarray(img, dtype=np.uint8)
    except Exception as exc:  # Pillow's decoders raise many types for a damaged file; skip it, not the build
        # Pillow's messages often repeat the path, which the warning already names.
        reason = str(exc).replace(f"'{path}'", "").replace(path, "").strip(" :") or type(exc).__name__
        return None, False, reason.splitlines()[0][:120], 0
    return pixels, grey, "", side


def load_image(path: str, res: int, channels: int) -> np.ndarray:
    """One file as a C x R x R uint8 array, converted exactly as dataset=folder packs it (DataError if unreadable)."""
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise DataError(f"image {path} {what}; accepted: {IMAGE_FILES}")
    pixels, _, error, _ = decode((path, res, "1" if channels == 1 else "3"))
    if pixels is None:
        raise DataError(f"image {path} cannot be read ({error}); accepted: {IMAGE_FILES}")
    return np.ascontiguousarray(_rows(pixels, channels))


def _flatten(img, want: str):
    """`img` as 8-bit L or RGB; transparency composited on black, 16-bit greyscale scaled to 8 bits."""
    from PIL import Image

    if img.mode in SIXTEEN_BIT:
        # Pillow's convert("L") clips 16-bit values at 255 (a white image); keep the top byte instead.
        values = np.asarray(img, dtype=np.int64).clip(0, 65535)
        img = Image.fromarray(((values + 128) // 257).astype(np.uint8))
    elif img.mode == "F":
        img = Image.fromarray(np.asarray(img).clip(0, 255).round().astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        # On black, so a transparent background reads as 0 (the low end of dataset.range), and a
        # pixel's colour is weighted by its opacity, as a premultiplied image would have it.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return img if img.mode == want else img.convert(want)


# --- Reading the pack back --------------------------------------------------------------------------
class MappedImages:
    """The pack read through a read-only memory map, holding at most about `budget` bytes of it
    resident in this process."""

    def __init__(self, path: Path, budget: int = MAPPED_BUDGET):
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version != (1, 0):
                raise DataError(f"{path} is not a ganctl image pack (.npy version {version})")
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            offset = f.tell()
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if dtype != np.uint8 or fortran or len(shape) != 4:
            raise DataError(f"{path} is not a ganctl image pack (uint8 N x C x R x R)")
        # Batches are random rows: read-ahead around each would fetch bytes no batch asked for.
        self.mm.madvise(mmap.MADV_RANDOM)
        self.array = np.frombuffer(self.mm, dtype=np.uint8, count=math.prod(shape), offset=offset).reshape(shape)
        page = mmap.PAGESIZE
        row = math.prod(shape[1:])
        # Resident bytes a row read may add: its pages, plus what the kernel maps around a fault.
        self.row_cost = (row + page - 1) // page * page + FAULT_AROUND
        self.budget, self.touched = budget, 0

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """A copy of the rows `idx`, in that order."""
        out = self.array.take(idx, axis=0)
        self.touched += len(idx) * self.row_cost
        if self.touched >= self.budget:
            # The pages stay in the page cache; only this process's mapping of them goes, so its
            # resident size stops growing, and the next touch maps them again without I/O.
            self.mm.madvise(mmap.MADV_DONTNEED)
            self.touched = 0
        return out
