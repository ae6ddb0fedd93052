"""Files replaced only when their successor is complete, and a full disk said in one line.

The one place for the house rule "nothing is lost": a writer of ``DIR/NAME`` writes
``DIR/.NAME.partial`` beside it and os.replace()s that onto ``DIR/NAME`` only once it is
whole (written, closed and fsynced), so ``DIR/NAME`` is at every moment either the old
file or the new one, never a part of either. A ``.partial`` left by a killed run is
removed when the next writer of the same target starts (``stale_partial``); nothing in
noisescope lists or opens a ``.partial`` as data (``is_partial``).

A full disk (ENOSPC, EDQUOT, or EFBIG under ``ulimit -f``: Python ignores SIGXFSZ, so the
write fails instead of killing the process) is raised as ``DiskFullError``, an OSError
with a one-line message, whichever library (h5py, safetensors, torch) hit it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

PARTIAL_SUFFIX = ".partial"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# How HDF5 (through h5py), Rust's std::io (safetensors) and the C library spell those errors.
_DISK_FULL_TEXT = tuple(f"errno = {n}" for n in DISK_FULL_ERRNOS) + tuple(f"os error {n}" for n in DISK_FULL_ERRNOS) + (
    "no space left", "file too large", "disk quota exceeded",
)


class DiskFullError(OSError):
    """The disk (or the file size limit) is full; the one-line message says what was kept."""


def partial_path(path: str | os.PathLike[str]) -> Path:
    """Where the successor of ``path`` is written until it is complete: ``DIR/.NAME.partial``."""
    path = Path(path)
    return path.with_name(f".{path.name}{PARTIAL_SUFFIX}")


def is_partial(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an unfinished write (never data to list or open)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


def stale_partial(path: str | os.PathLike[str]) -> bool:
    """Remove the ``.partial`` a killed writer of ``path`` left; True if there was one.

    Called when a writer of ``path`` starts: one writer per target at a time.
    """
    partial = partial_path(path)
    if partial.is_file() or partial.is_symlink():
        partial.unlink()
        return True
    return False


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) says the disk or the file size limit is full."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "errno", None) in DISK_FULL_ERRNOS:
            return True
        text = str(current).lower()
        if any(marker in text for marker in _DISK_FULL_TEXT):
            return True
        current = current.__cause__ or current.__context__
    return False


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some file systems cannot fsync a directory; a file they can
            raise
    finally:
        os.close(fd)


def replace(partial: Path, path: Path) -> None:
    """Make the complete ``partial`` the file at ``path``: fsync it, rename it over ``path``, fsync the folder."""
    _fsync(partial)
    os.replace(partial, path)
    _fsync(path.parent, directory=True)


def write_partial(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path``'s ``.partial`` and return it; ``replace`` it onto ``path`` when the time comes.

    A full disk removes the partial and raises DiskFullError; ``path`` is untouched either way.
    """
    path = Path(path)
    partial = partial_path(path)
    try:
        with open(partial, "wb") as out:  # truncates a stale partial
            out.write(data)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, (OSError, RuntimeError)) and is_disk_full(error):
            raise disk_full_writing(path) from None
        raise
    return partial


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically: the old file stays whole until the new one is."""
    path = Path(path)
    partial = write_partial(path, data)
    try:
        replace(partial, path)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, OSError) and is_disk_full(error):
            raise disk_full_writing(path) from None
        raise
    return path


def disk_full_writing(path: Path) -> DiskFullError:
    """The one-line error for a whole-file write that found the disk full."""
    kept = f"the previous {path.name} is unchanged" if path.exists() else "nothing was written"
    return DiskFullError(f"disk full writing {path}; {kept}")
