"""Files that survive accidents: atomic writes, refused writes as one-line errors, run-folder locks.

A write goes to a temporary file beside its target, is fsynced and renamed into place, so a crash
leaves the old file or the new one, never a partial one. When the environment refuses a write (a
full disk, a file-size limit, a read-only or vanished folder) the caller gets a StorageError that
names the file and the reason. A run folder is locked with flock(2) for the life of the process
that trains into it.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import BinaryIO, Callable

from ganctl.errors import FolderInUse, StorageError
from ganctl.runfolder import RunFolder

LOCK_NAME = ".ganctl.lock"

REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file-size limit (ulimit -f)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "its folder no longer exists",
    errno.ENOTDIR: "its folder no longer exists",
    errno.EIO: "input/output error",
}


def refused(path: Path | str, exc: OSError, doing: str = "write") -> StorageError:
    """The one-line error for a write the environment refused."""
    reason = REASONS.get(exc.errno, exc.strerror or str(exc))
    code = f" [{errno.errorcode[exc.errno]}]" if exc.errno in errno.errorcode else ""
    return StorageError(f"could not {doing} {path}: {reason}{code}")


class _RecordingFile:
    """A binary file that remembers the OSError of a failed write.

    torch's zip writer reports a failed write as `RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos`, without the reason (ENOSPC, EFBIG); this keeps it. It
    refuses fileno() on purpose: PIL's PNG encoder would otherwise write to the descriptor itself,
    past this wrapper, and report only "encoder error". Everything else is the file's own.
    """

    def __init__(self, f: BinaryIO):
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.error = exc
            raise

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    """Remove a temporary file that a failed write left, if the folder still allows it."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass  # a vanished or read-only folder: nothing was left there


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it into place.

    A crash at any moment leaves either the old file or the new one, never a partial file. A write
    the environment refuses raises StorageError naming `path`, and the old file stays as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    recorder = None
    try:
        with open(tmp, "wb") as f:
            recorder = _RecordingFile(f)
            write(recorder)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException as exc:
        _discard(tmp)
        cause = recorder.error if recorder is not None and recorder.error is not None else exc
        # Only an OSError with an errno is the environment's refusal; PIL's "cannot write mode"
        # OSErrors and everything else stay bugs with a traceback.
        if isinstance(cause, OSError) and cause.errno is not None and isinstance(exc, Exception):
            raise refused(path, cause) from None
        raise


def write_first_writable(paths: list[Path], write: Callable[[BinaryIO], object]) -> Path | None:
    """atomic_write into the first of `paths` whose folder can be made and written (a cache beside
    read-only data falls back to the user's); None when none can."""
    for path in paths:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(Path(path), write)
            return Path(path)
        except (OSError, StorageError):  # mkdir's refusal, or atomic_write's one-line form of it
            continue
    return None


def link_as(src: Path, dst: Path) -> None:
    """Give `src` the extra name `dst` (e.g. last.pt) atomically, without writing it twice."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError as exc:
            # Only a file system without hard links earns a copy; a full disk fails the copy too.
            if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        _fsync_folder(dst.parent)
    except OSError as exc:
        _discard(tmp)
        raise refused(dst, exc) from None


TEMPORARY = re.compile(r"^\..+\.tmp\d+$")


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed process left in `folder` and its checkpoints/ and samples/.

    Only safe while holding the folder's lock: then no live process is writing them.
    """
    removed = []
    run = RunFolder(folder)
    for sub in (folder, run.checkpoints, run.samples):
        if not sub.is_dir():
            continue
        for p in sub.iterdir():
            if TEMPORARY.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


# Folders this process holds, by absolute path: their open lock files. flock belongs to the open
# file, so a second open() and flock() here would conflict with our own lock.
_held: dict[Path, int] = {}


def _key(folder: Path) -> Path:
    return Path(os.path.realpath(folder))


def holds_lock(folder: Path) -> bool:
    return _key(folder) in _held


def _holder(fd: int) -> str:
    """Who holds the lock, from the line it wrote (it may not have written it yet)."""
    for _ in range(20):
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
        if text:
            pid, host = text[0], text[1] if len(text) > 1 else ""
            return f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")
        time.sleep(0.01)
    return "another process"


def lock_folder(folder: Path) -> None:
    """Take the exclusive lock of `folder` (created if missing) for this process, or raise FolderInUse.

    An flock on `folder/.ganctl.lock` rather than a PID file: the kernel drops it when the process
    dies, even by SIGKILL, so a crash never leaves a stale lock to clear by hand.
    """
    folder = Path(folder)
    if holds_lock(folder):
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise refused(folder / LOCK_NAME, exc, doing="create") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        who = _holder(fd) if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
        os.close(fd)
        if who is None:
            raise refused(folder / LOCK_NAME, exc, doing="lock") from None
        raise FolderInUse(
            f"{folder} is in use by {who}, which is training into it; accepted: another "
            "folder (hydra.run.dir=DIR), or the same command once that process has ended"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    except OSError:
        pass  # the lock holds without the note; a second process then names no PID
    _held[_key(folder)] = fd


def unlock_folder(folder: Path) -> None:
    fd = _held.pop(_key(folder), None)
    if fd is not None:
        os.close(fd)  # closing the last descriptor of the open file drops the flock


def move_aside(folder: Path) -> Path:
    """Rename `folder` to the first free `folder.old-N` beside it; nothing is deleted."""
    folder = Path(folder)
    n = 1
    while True:
        target = folder.with_name(f"{folder.name}.old-{n}")
        if not target.exists():
            break
        n += 1
    try:
        os.rename(folder, target)
    except OSError as exc:
        raise refused(folder, exc, doing=f"move aside to {target}") from None
    return target


def write_folder(out: Path, files: dict[str, Callable[[io.BufferedWriter], None]], force: bool) -> None:
    """Fill a temporary sibling folder, then swap it into place: no half-written output folder.

    A write the environment refuses (full disk, size limit) raises StorageError naming the file,
    with the temporary folder gone and an existing output left as it was.
    """
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    current = tmp
    try:
        tmp.mkdir()
        for name, write in files.items():
            current = tmp / name
            with open(current, "wb") as f:
                write(f)
        current = out
        if out.exists() and force:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno is None:  # PIL's own OSErrors ("cannot write mode ...") are bugs, not refusals
            raise
        raise refused(current, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
