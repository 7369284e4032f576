"""Checkpoints: plain dicts of tensors and builtins, versioned, written atomically."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ganctl.errors import CheckpointError

FORMAT_VERSION = 1
MAGIC = "ganctl-checkpoint"


def atomic_write(path: Path, write) -> None:
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it into place.

    A crash at any moment leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def link_as(src: Path, dst: Path) -> None:
    """Give `src` the extra name `dst` (e.g. last.pt) atomically, without writing it twice."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # file systems without hard links
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save(path: Path, payload: dict[str, Any]) -> None:
    payload = {"magic": MAGIC, "format_version": FORMAT_VERSION, **payload}
    atomic_write(path, lambda f: torch.save(payload, f))


def resolve_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder meaning its checkpoints/last.pt."""
    p = Path(path)
    if p.is_dir():
        last = p / "checkpoints" / "last.pt"
        if not last.is_file():
            raise CheckpointError(f"{p} is a folder with no checkpoints/last.pt; pass a .pt file or a run folder")
        return last
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist; pass a .pt file or a run folder")
    return p


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = resolve_path(path)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # a damaged file fails in many ways inside torch.load (KeyError, EOFError, ...)
        reason = (str(exc).splitlines() or [""])[0]
        reason = f"{type(exc).__name__}: {reason[:100]}"
        try:
            with open(p, "rb") as f:
                zipped = f.read(2) == b"PK"  # torch.save writes a zip archive
            reason = f"damaged or cut short; {reason}" if zipped else "not a file written by torch.save: no zip header"
        except OSError:
            pass  # unreadable (permissions): the exception's own reason says so
        raise CheckpointError(f"{p} is not a readable ganctl checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("magic") != MAGIC:
        raise CheckpointError(f"{p} is not a ganctl checkpoint (no ganctl header)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format {version!r}, newer than this ganctl reads "
            f"(up to {FORMAT_VERSION}); upgrade ganctl"
        )
    return ckpt
