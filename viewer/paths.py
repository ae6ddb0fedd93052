"""Which files the viewer may open: the allowed roots, the traces under them, and URL-safe names.

``noisescope view PATH ...`` names the roots (trace files or folders of traces). The
URL names a trace by its path relative to a root (``?trace=runs/ddim.h5``); a name is
accepted only if it is relative, has no ``..``, resolves inside a root (symlinks
followed) and is one of the listed traces. Nothing in the URL can reach another file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOTS_ENV = "NOISESCOPE_VIEW_ROOTS"  # os.pathsep-separated roots; wins over argv (AppTest sets it)
TRACE_SUFFIXES = (".h5", ".hdf5")
MAX_TRACES = 2000  # a folder with more is cut off: the list is for picking, not for crawling a disk


@dataclass(frozen=True)
class TraceEntry:
    """One openable trace: its resolved path, and the name the URL and the picker use."""

    path: Path
    name: str  # relative to its root, posix separators; for a file root, the file name


def roots_from(argv: Sequence[str], environ: os._Environ[str] | dict[str, str] | None = None) -> list[Path]:
    """The allowed roots: $NOISESCOPE_VIEW_ROOTS if set, else the script arguments (``streamlit run app.py -- PATHS``)."""
    env = (os.environ if environ is None else environ).get(ROOTS_ENV)
    raw = [p for p in env.split(os.pathsep) if p] if env else list(argv)
    return [Path(p).expanduser().resolve() for p in raw]


def _is_trace_file(path: Path) -> bool:
    return path.suffix.lower() in TRACE_SUFFIXES and not path.name.startswith(".")


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def list_traces(roots: Iterable[Path]) -> list[TraceEntry]:
    """Every trace file under the roots, sorted by name within each root; hidden files and partial writes skipped.

    A file root is listed even when its suffix is unusual (the user named it); a folder
    is searched recursively for ``*.h5``/``*.hdf5``. Files whose real path leaves the
    root (a symlink pointing out) are not listed. With several folder roots, names are
    prefixed by the folder's own name (``runs/ddim.h5``); a name already taken is skipped.
    """
    roots = list(roots)
    prefix_dirs = sum(1 for r in roots if r.is_dir()) > 1
    entries: list[TraceEntry] = []
    seen: set[Path] = set()
    names: set[str] = set()

    def add(entry: TraceEntry) -> None:
        if entry.name not in names:
            names.add(entry.name)
            entries.append(entry)

    for root in roots:
        if root.is_file():
            if root not in seen:
                seen.add(root)
                add(TraceEntry(root, root.name))
            continue
        if not root.is_dir():
            continue
        found: list[TraceEntry] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in filenames:
                candidate = Path(dirpath) / filename
                if not _is_trace_file(candidate):
                    continue
                real = candidate.resolve()
                if not _inside(real, root) or real in seen:
                    continue
                seen.add(real)
                relative = candidate.relative_to(root).as_posix()
                found.append(TraceEntry(real, f"{root.name}/{relative}" if prefix_dirs else relative))
            if len(entries) + len(found) >= MAX_TRACES:
                break
        for entry in sorted(found, key=lambda e: e.name):
            add(entry)
    return entries[:MAX_TRACES]


def safe_name(name: str) -> bool:
    """A URL trace name may only be a plain relative posix path: no '..', no absolute path, no drive, no oddities."""
    if not name or len(name) > 1024 or "\x00" in name or "\\" in name or name.startswith("~"):
        return False
    pure = PurePosixPath(name)
    if pure.is_absolute() or ":" in pure.parts[0]:
        return False
    return all(part not in ("..", ".", "") for part in name.split("/"))


def resolve_name(name: str, entries: Sequence[TraceEntry]) -> TraceEntry | None:
    """The listed trace a URL name points to, or None: the only way from a URL to a file."""
    if not safe_name(name):
        return None
    for entry in entries:
        if entry.name == name:
            # The listing resolved every path; refuse one whose file was swapped for a link since.
            return entry if entry.path.resolve() == entry.path else None
    return None
