"""The trace reader: the one way to read a trace, lazy, validated, and live-aware.

``open_trace(path)`` checks, once, that the file is an HDF5 noisescope trace whose
structure this code understands (required datasets present, dtypes and ranks as the
schema says, commit counters within the datasets, attributes parseable and finite, no
external links, external storage or virtual datasets) and raises ``TraceError`` with one
line for anything else. Every h5py/HDF5 error of a later read becomes a ``TraceError``
too, naming what could not be read.

Nothing is read until asked for: ``tensor(name, i)`` reads one step (one chunk), so a
trace never has to fit in memory. A trace that a writer holds open (still running, or
killed mid-run: the superblock's consistency flags say so), or one a writer closed short of
its recorded end (a full disk), is opened in SWMR read mode, with HDF5's metadata read
retries bounded so that a damaged file fails in milliseconds instead of retrying for
minutes; only rows the writer has committed (``progress/<series>``) are visible, each one
whole.

One process, one handle: HDF5 shares an open file between every handle of a process,
and refreshing a second handle to a dataset of a file that an SWMR writer holds leaves
every handle reading row 0 (h5py 3.16 / HDF5 2.0). So the reader keeps one ``h5py.File``
per file (by device and inode) and one ``h5py.Dataset`` per dataset, shared by every
``Trace`` of that file in the process, and no other module opens a trace's datasets.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import h5py
import h5py._objects
import numpy as np

from tracer.schedules import Schedule, betas_valid, from_betas
from tracer.trace import bounded, liveness, schema
from tracer.trace.choice import RecordChoice, Recorded
from tracer.trace.liveness import WriterState


class TraceError(ValueError):
    """The file cannot be read as a noisescope trace; the message is one line for the user."""


T = TypeVar("T")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_WRITER_FLAGS = 0x01 | 0x04  # superblock v2+ file consistency flags: opened for write, for SWMR write
SWMR_READ_ATTEMPTS = 8  # HDF5's default for SWMR readers is 100, with sleeps that add up to minutes
MAX_SCHEDULE_LENGTH = 10_000_000
MAX_ROW_BYTES = 1 << 32  # one row of one field: 4 GiB
MAX_NESTING = 64  # groups inside groups
MAX_JSON_CHARS = 16 << 20


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0].strip() if text else type(error).__name__


def _attr_str(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# -- opening ----------------------------------------------------------------------------------------


def superblock_flags(path: Path) -> int | None:
    """The file consistency flags of an HDF5 superblock (version 2 and later), 0 for older
    superblocks, None if no HDF5 signature is found where HDF5 looks for it (0, 512, 1024, ...)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        base = 0
        while base + 12 <= size:
            fh.seek(base)
            head = fh.read(12)
            if head[:8] == HDF5_SIGNATURE:
                return head[11] if head[8] >= 2 else 0
            base = 512 if base == 0 else base * 2
    return None


def _hdf5_library() -> ctypes.CDLL | None:
    """The libhdf5 that h5py uses (already loaded in this process), for the one call h5py does not wrap."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "/libhdf5" in path and "/libhdf5_hl" not in path and ".so" in path:
                    return ctypes.CDLL(path)
    except (OSError, IndexError):
        pass
    for name in ("libhdf5.so", "libhdf5_serial.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


_LIB: list[ctypes.CDLL | None] = []


def _bounded_swmr_fapl() -> h5py.h5p.PropFAID:
    """A file access property list for SWMR reading with few metadata read attempts."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    if not _LIB:
        _LIB.append(_hdf5_library())
    lib = _LIB[0]
    if lib is not None and hasattr(lib, "H5Pset_metadata_read_attempts"):
        lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
        lib.H5Pset_metadata_read_attempts.restype = ctypes.c_int
        lib.H5Pset_metadata_read_attempts(fapl.id, SWMR_READ_ATTEMPTS)
    return fapl


def _open_h5(path: Path) -> h5py.File:
    if not path.exists():
        raise TraceError(f"{path}: no such file")
    if path.is_dir():
        raise TraceError(f"{path} is a directory, not a trace file")
    try:
        flags = superblock_flags(path)
    except OSError as error:
        raise TraceError(f"{path} cannot be read: {error.strerror or _first_line(error)}") from None
    if flags is None:
        raise TraceError(f"{path} is not an HDF5 file")
    # h5py reports a damaged file as OSError or, for some damage past the superblock, RuntimeError.
    if flags & _WRITER_FLAGS and not flags & 0x04:
        raise TraceError(f"{path} is open for writing by a program that does not use SWMR: close it first")
    try:
        if flags & _WRITER_FLAGS:
            # A writer holds the file (live) or held it and was killed: only an SWMR reader may open it,
            # and it sees every committed row.
            return _open_swmr(path)
        try:
            return h5py.File(path, "r")
        except Exception as error:  # noqa: BLE001
            # A writer that hit a full disk closed a file shorter than its superblock says: the plain open
            # refuses it, an SWMR reader (which does not hold the file to its recorded end) reads every
            # committed row. Bounded like every SWMR open here, so a truncated file fails fast.
            if "truncated file" not in str(error):
                raise
            return _open_swmr(path)
    except Exception as error:  # noqa: BLE001 - any failure to open a damaged file is one line
        raise TraceError(f"{path} is truncated or corrupt: {_first_line(error)}") from None


def _ends_short(file: h5py.File, size: int) -> bool:
    """The file is shorter than the end its superblock records (a writer stopped by a full disk, or truncation)."""
    try:
        return bool(file.id.get_filesize() > size)
    except Exception:  # noqa: BLE001
        return False


def _open_swmr(path: Path) -> h5py.File:
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=_bounded_swmr_fapl())
    return h5py.File(fid)


@contextmanager
def _guard(path: Path, what: str, damage: str = "corrupt") -> Iterator[None]:
    """Turn any error of h5py/HDF5 (damaged bytes, bad checksums, garbage headers) into one TraceError line."""
    try:
        yield
    except (TraceError, IndexError):
        raise
    except MemoryError:
        raise TraceError(f"{path} is {damage}: {what} is too large to read") from None
    except Exception as error:  # noqa: BLE001 - h5py raises OSError, RuntimeError, KeyError, ValueError, TypeError...
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise TraceError(f"{path} is {damage}: {what} cannot be read ({_first_line(Exception(message))})") from None


# -- structure, validated once at open ----------------------------------------------------------------


def _int_kind(ds: h5py.Dataset) -> bool:
    return ds.dtype.kind in "iu"


def _float_kind(ds: h5py.Dataset) -> bool:
    return ds.dtype.kind == "f"


def _numeric(ds: h5py.Dataset) -> bool:
    return ds.dtype.kind in "iuf" and ds.dtype.itemsize <= 8


def _row_bytes(ds: h5py.Dataset) -> int:
    return int(np.prod(ds.shape[1:], dtype=np.float64) * ds.dtype.itemsize)


@dataclass
class _Shared:
    """One open file of this process and everything validated about it, shared by its Traces."""

    key: tuple[int, int]
    path: Path
    file: h5py.File
    size: int
    damage: str = "corrupt"  # how read errors describe the file: "truncated or corrupt" when it ends short
    lock: threading.RLock = field(default_factory=threading.RLock)
    refs: int = 0
    schema_version: int = 0
    kind: schema.Kind = "sampling"
    fields: dict[str, dict[str, h5py.Dataset]] = field(default_factory=dict)
    progress: dict[str, h5py.Dataset] = field(default_factory=dict)
    roots: dict[str, h5py.Dataset] = field(default_factory=dict)
    schedule: dict[str, h5py.Dataset] = field(default_factory=dict)
    schedule_name: str = "unknown"
    status: h5py.Dataset | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    planned: dict[str, int] = field(default_factory=dict)
    committed: dict[str, int] = field(default_factory=dict)  # last committed count seen (rows only grow)
    record: Recorded | None = None  # what a run that recorded less kept (attribute record)

    @property
    def live(self) -> bool:
        return bool(self.file.swmr_mode)

    def fail(self, message: str) -> TraceError:
        return TraceError(f"{self.path} {message}")


def _walk(group: h5py.Group, prefix: str, depth: int, found: dict[str, h5py.HLObject], shared: _Shared) -> None:
    """Every object below ``group`` by path; refuses links other than hard links within the file."""
    if depth > MAX_NESTING:
        raise shared.fail("nests groups too deeply to be a trace")
    for name in group:
        link = group.get(name, getlink=True)
        path = f"{prefix}{name}"
        if isinstance(link, h5py.ExternalLink):
            raise shared.fail(f"links {path} to another file ({link.filename}): traces that reference other files are refused")
        if isinstance(link, h5py.SoftLink):
            raise shared.fail(f"has a soft link {path} -> {link.path}: not a trace layout")
        item = group[name]
        if isinstance(item, h5py.Dataset):
            if item.is_virtual:
                raise shared.fail(f"has a virtual dataset {path} (its data lives in other files): refused")
            if item.external:
                raise shared.fail(f"stores {path} in external files: traces that reference other files are refused")
            found[path] = item
        elif isinstance(item, h5py.Group):
            found[path] = item
            _walk(item, f"{path}/", depth + 1, found, shared)


def _json_attr(shared: _Shared, name: str, raw: Any) -> Any:
    text = _attr_str(raw)
    if len(text) > MAX_JSON_CHARS:
        raise shared.fail(f"has a {name} attribute too large to be a trace's ({len(text)} characters)")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise shared.fail(f"has a {name} attribute that is not valid JSON") from None


def _attr_value(value: Any) -> Any:
    """An attribute as a plain Python value (numpy scalars and byte strings converted)."""
    if isinstance(value, bytes):
        return _attr_str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _validate_root(shared: _Shared) -> None:
    attrs = {key: _attr_value(shared.file.attrs[key]) for key in shared.file.attrs}
    shared.attrs = attrs
    if _attr_str(attrs.get(schema.ATTR_FORMAT, "")) != schema.FORMAT:
        raise shared.fail(f"is an HDF5 file but not a noisescope trace (no format={schema.FORMAT!r} attribute)")
    raw_version = attrs.get(schema.ATTR_SCHEMA_VERSION)
    try:
        number = float(raw_version)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise shared.fail("has no valid schema_version attribute") from None
    if not math.isfinite(number) or number != int(number):
        raise shared.fail(f"has an invalid schema version {raw_version!r}")
    version = int(number)
    if version > schema.SCHEMA_VERSION:
        raise shared.fail(f"has schema version {version}, newer than this noisescope reads ({schema.SCHEMA_VERSION}); upgrade noisescope")
    if version < 1:
        raise shared.fail(f"has an invalid schema version {version}")
    kind = _attr_str(attrs.get(schema.ATTR_KIND, ""))
    if kind not in ("sampling", "training"):
        raise shared.fail(f"has an unknown kind {kind[:40]!r}")
    dtype = _attr_str(attrs.get(schema.ATTR_TENSOR_DTYPE, "float32"))
    if dtype not in schema.TENSOR_DTYPES:
        raise shared.fail(f"has an unknown tensor_dtype {dtype[:40]!r}")
    config = _json_attr(shared, schema.ATTR_CONFIG, attrs.get(schema.ATTR_CONFIG, "{}"))
    if not isinstance(config, dict):
        raise shared.fail("has a config attribute that is not a JSON object")
    planned: dict[str, int] = {}
    if schema.ATTR_PLANNED in attrs:
        value = _json_attr(shared, schema.ATTR_PLANNED, attrs[schema.ATTR_PLANNED])
        if not isinstance(value, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()):
            raise shared.fail("has a planned attribute that is not a JSON object of row counts")
        planned = {str(k): int(v) for k, v in value.items()}
    if schema.ATTR_RECORD in attrs:
        try:
            shared.record = RecordChoice.from_json(_json_attr(shared, schema.ATTR_RECORD, attrs[schema.ATTR_RECORD]))
        except ValueError as error:
            raise shared.fail(f"has a {schema.ATTR_RECORD} attribute that is not a recording choice ({_first_line(error)})") from None
    shared.schema_version, shared.kind, shared.config, shared.planned = version, kind, config, planned  # type: ignore[assignment]


def _validate_layout(shared: _Shared) -> None:
    found: dict[str, h5py.HLObject] = {}
    _walk(shared.file, "", 0, found, shared)
    status = found.get(schema.STATUS)
    if status is None:
        raise shared.fail(f"lacks the {schema.STATUS!r} dataset: not a complete noisescope trace")
    if not isinstance(status, h5py.Dataset) or status.shape != () or status.dtype.kind not in "SOU":
        raise shared.fail(f"has a {schema.STATUS!r} that is not a scalar string dataset")
    shared.status = status
    # The schedule: beta, alpha, alpha_bar, 1-D float of one length.
    group = found.get(schema.SCHEDULE)
    if group is not None:
        if not isinstance(group, h5py.Group):
            raise shared.fail(f"has a {schema.SCHEDULE!r} that is not a group")
        lengths = set()
        for name in schema.SCHEDULE_FIELDS:
            ds = found.get(f"{schema.SCHEDULE}/{name}")
            if ds is None:
                continue
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or not _float_kind(ds) or not 1 <= ds.shape[0] <= MAX_SCHEDULE_LENGTH:
                raise shared.fail(f"has a {schema.SCHEDULE}/{name} that is not a 1-D float array of 1 to {MAX_SCHEDULE_LENGTH} values")
            lengths.add(ds.shape[0])
            shared.schedule[name] = ds
        if len(lengths) > 1:
            raise shared.fail(f"has schedule arrays of different lengths {sorted(lengths)}")
        values = {name: np.asarray(ds[()], dtype=np.float64) for name, ds in shared.schedule.items()}
        if "beta" in values and not betas_valid(values["beta"]):
            raise shared.fail("has a schedule whose beta is not in (0, 1) (the last in (0, 1])")
        for name in ("alpha", "alpha_bar"):
            if name in values and not np.all((values[name] >= 0) & (values[name] <= 1)):
                raise shared.fail(f"has a schedule whose {name} is not in [0, 1]")
        shared.schedule_name = _attr_str(_attr_value(group.attrs.get("name", "unknown")))[:200]
    # Series: groups whose members grow together along axis 0, each with a commit counter.
    for series in (schema.STEPS, schema.TRAIN, schema.EXAMPLES, schema.SNAPSHOTS):
        item = found.get(series)
        counter = found.get(schema.progress_path(series))
        if item is None:
            continue
        if not isinstance(item, h5py.Group):
            raise shared.fail(f"has a {series!r} that is not a group")
        prefix = f"{series}/"
        members = {path[len(prefix):]: ds for path, ds in found.items()
                   if path.startswith(prefix) and "/" not in path[len(prefix):] and isinstance(ds, h5py.Dataset)}
        for name, ds in members.items():
            if ds.ndim < 1 or not _numeric(ds):
                raise shared.fail(f"has {series}/{name} of dtype {ds.dtype} and rank {ds.ndim}: not a per-row numeric field")
            if _row_bytes(ds) > MAX_ROW_BYTES:
                raise shared.fail(f"has {series}/{name} rows of {_row_bytes(ds)} bytes: too large to be a trace's")
        if counter is not None:
            if not isinstance(counter, h5py.Dataset) or counter.shape != () or not _int_kind(counter):
                raise shared.fail(f"has a {schema.progress_path(series)} that is not a scalar integer")
            shared.progress[series] = counter
        shared.fields[series] = members
    if shared.kind == "sampling":
        missing = [f"{schema.SCHEDULE}/{name}" for name in schema.SCHEDULE_FIELDS if name not in shared.schedule]
        if schema.STEPS not in shared.fields or schema.STEPS not in shared.progress:
            missing += [schema.STEPS] if schema.STEPS not in shared.fields else [schema.progress_path(schema.STEPS)]
        else:
            missing += [f"{schema.STEPS}/{name}" for name in schema.REQUIRED_STEP_FIELDS if name not in shared.fields[schema.STEPS]]
        if missing:
            raise shared.fail(f"lacks {', '.join(missing)}: not a complete sampling trace")
    _validate_steps(shared)
    for series, names in _SCALAR_COLUMNS.items():  # what the commands index as one number a row
        for name in names:
            ds = shared.fields.get(series, {}).get(name)
            if ds is not None and ds.ndim != 1:
                raise shared.fail(f"has {series}/{name} of rank {ds.ndim}; it is one number a row")
    for name in schema.ROOT_DATASETS:
        ds = found.get(name)
        if isinstance(ds, h5py.Dataset):
            if not _numeric(ds) or ds.size * ds.dtype.itemsize > MAX_ROW_BYTES:
                raise shared.fail(f"has a {name} dataset of dtype {ds.dtype} and shape {ds.shape}: not a trace's")
            shared.roots[name] = ds
    final = found.get(schema.progress_path(schema.FINAL))
    if final is not None:
        if not isinstance(final, h5py.Dataset) or final.shape != () or not _int_kind(final):
            raise shared.fail(f"has a {schema.progress_path(schema.FINAL)} that is not a scalar integer")
        shared.progress[schema.FINAL] = final
    x_t = shared.fields.get(schema.STEPS, {}).get("x_t")
    samples = shared.roots.get(schema.SAMPLES)
    if x_t is not None and samples is not None and samples.shape != x_t.shape[1:]:
        raise shared.fail(f"has samples of shape {samples.shape}, but steps/x_t rows of shape {x_t.shape[1:]}")
    labels = shared.roots.get(schema.LABELS)
    if x_t is not None and labels is not None and (labels.shape != x_t.shape[1:2] or not _int_kind(labels)):
        raise shared.fail(f"has labels of shape {labels.shape} and dtype {labels.dtype} for a batch of {x_t.shape[1]}")


_SCALAR_COLUMNS = {series: tuple(f.name for f in schema.fields_of(series) if f.shape == "scalar")
                   for series in (schema.TRAIN, schema.SNAPSHOTS, schema.EXAMPLES)}


def _validate_steps(shared: _Shared) -> None:
    """The steps series as the schema spells it: integer timesteps, float scalars, tensors [S, B, *D] like x_t."""
    steps = shared.fields.get(schema.STEPS, {})
    for name, dtype in {**schema.STEP_SCALARS, **schema.OPTIONAL_STEP_SCALARS}.items():
        ds = steps.get(name)
        if ds is None:
            continue
        if ds.ndim != 1 or (_int_kind(ds) if dtype == "int64" else _float_kind(ds)) is False:
            raise shared.fail(f"has steps/{name} of dtype {ds.dtype} and rank {ds.ndim}; the schema says a column of {dtype}")
    if schema.ETA in steps and (steps[schema.ETA].ndim != 1 or not _float_kind(steps[schema.ETA])):
        raise shared.fail(f"has steps/{schema.ETA} that is not a float column")
    if schema.STEP_INDEX in steps and (steps[schema.STEP_INDEX].ndim != 1 or not _int_kind(steps[schema.STEP_INDEX])):
        raise shared.fail(f"has steps/{schema.STEP_INDEX} that is not an integer column")
    x_t = steps.get("x_t")
    if shared.record is not None and x_t is not None and x_t.ndim >= 2 and x_t.shape[1] != len(shared.record.rows):
        raise shared.fail(f"keeps {x_t.shape[1]} samples a step, but its {schema.ATTR_RECORD} attribute says {len(shared.record.rows)}")
    for name in schema.ALL_STEP_TENSORS:
        ds = steps.get(name)
        if ds is None:
            continue
        if not _float_kind(ds) or ds.ndim < 3:
            raise shared.fail(f"has steps/{name} of dtype {ds.dtype} and rank {ds.ndim}; the schema says [S, B, *D] floats")
        if x_t is not None and ds.shape[1:] != x_t.shape[1:]:
            raise shared.fail(f"has steps/{name} rows of shape {ds.shape[1:]}, but steps/x_t rows of shape {x_t.shape[1:]}")


def _validate_counters(shared: _Shared) -> None:
    """Commit counters are non-negative, within their datasets, and within what the file can hold."""
    for series, counter in shared.progress.items():
        value = int(counter[()])
        if value < 0:
            raise shared.fail(f"has a negative commit counter {schema.progress_path(series)} = {value}")
        if series == schema.FINAL:
            if value not in (0, 1):
                raise shared.fail(f"has {schema.progress_path(series)} = {value}; it is 0 or 1")
            continue
        members = shared.fields.get(series, {})
        lengths = [ds.shape[0] for ds in members.values()]
        if lengths and value > min(lengths):
            raise shared.fail(f"says {value} rows of {series} are committed, but its datasets hold {min(lengths)}")
        row_bytes = sum(_row_bytes(ds) for ds in members.values())
        if value * row_bytes > 1000 * shared.size + (1 << 30):
            raise shared.fail(f"says {value} rows of {series} are committed: more than a file of {shared.size} bytes can hold")
        shared.committed[series] = value
    if shared.damage != "corrupt":  # the file ends short of its recorded end: are the committed rows inside it?
        # A live writer flushes a row's bytes before it commits the row: the size now, taken after the
        # counters were read, covers every row they commit (the size taken before opening may not).
        shared.size = max(shared.size, _size_on_disk(shared.path))
        for series, members in shared.fields.items():
            for name, ds in members.items():
                row = _first_row_past_end(ds, shared.committed.get(series, 0), shared.size)
                if row is not None:
                    raise shared.fail(f"is truncated or corrupt: row {row} of {series}/{name}, committed, lies past the file's end "
                                      f"({shared.size} bytes)")


def _size_on_disk(path: Path) -> int:
    """The file's size now (0 if it cannot be stat'ed: the caller keeps the size it had)."""
    try:
        return int(os.stat(path).st_size)
    except OSError:
        return 0


def _first_row_past_end(ds: h5py.Dataset, rows: int, size: int) -> int | None:
    """The first of the ``rows`` first rows of ``ds`` whose stored bytes lie past ``size`` (None: all inside)."""
    if rows <= 0:
        return None
    if ds.chunks is None:
        offset = ds.id.get_offset()
        row_bytes = max(_row_bytes(ds), ds.dtype.itemsize)
        if offset is None:
            return 0
        return None if offset + rows * row_bytes <= size else max(0, (size - offset) // row_bytes)
    per_chunk = ds.chunks[0]
    for first in range(0, rows, per_chunk):
        info = ds.id.get_chunk_info_by_coord((first,) + (0,) * (ds.ndim - 1))
        if info.byte_offset is None or info.byte_offset + info.size > size:
            return first
    return None


# -- the shared handles of this process -----------------------------------------------------------------

_REGISTRY_LOCK = threading.RLock()
_OPEN: dict[tuple[int, int], _Shared] = {}


def _open_validated(path: Path, stat: os.stat_result) -> _Shared:
    """Open ``path`` and validate its header, layout and counters (the file is closed again on failure)."""
    key = (int(stat.st_dev), int(stat.st_ino))
    file = _open_h5(path)
    shared = _Shared(key=key, path=path, file=file, size=max(int(stat.st_size), _size_on_disk(path)))
    if _ends_short(file, shared.size):
        shared.damage = "truncated or corrupt"
    try:
        with _guard(path, "the file's header", shared.damage):
            _validate_root(shared)
            _validate_layout(shared)
            _validate_counters(shared)
    except BaseException:
        file.close()
        raise
    return shared


def _validate_in_child(path: str) -> None:
    """What the reader does at open, in a child process (tracer.trace.bounded): it must end."""
    shared = _open_validated(Path(path), os.stat(path))
    shared.file.close()


_HEADER_READS_END: set[tuple[int, int, int, int]] = set()  # (dev, inode, size, mtime) of files whose header reads ended


def _check_header_reads_end(path: Path, stat: os.stat_result) -> None:
    """Refuse a file whose header HDF5 cannot read without looping or crashing (tracer.trace.bounded)."""
    version = (int(stat.st_dev), int(stat.st_ino), int(stat.st_size), int(stat.st_mtime_ns))
    if version in _HEADER_READS_END:
        return
    limit = bounded.timeout_s()
    outcome = bounded.run(_validate_in_child, str(path), limit, lock=h5py._objects.phil)
    if outcome == "timeout":
        raise TraceError(f"{path} is corrupt: HDF5 did not finish reading its header in {limit:g} s "
                         f"(damaged heaps make it loop; ${bounded.TIMEOUT_ENV} sets the limit)")
    if outcome == "crashed":
        raise TraceError(f"{path} is corrupt: reading its header crashes HDF5")
    _HEADER_READS_END.add(version)


def _acquire(path: Path) -> _Shared:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except OSError as error:
        raise TraceError(f"{path} cannot be read: {error.strerror}") from None
    key = (int(stat.st_dev), int(stat.st_ino))
    with _REGISTRY_LOCK:
        known = key in _OPEN
    if not known and path.is_file():  # outside the lock: other files open meanwhile (what is not a file gets _open_h5's line)
        _check_header_reads_end(path, stat)
    with _REGISTRY_LOCK:
        shared = _OPEN.get(key)
        if shared is None:
            shared = _open_validated(path, stat)
            _OPEN[key] = shared
        shared.refs += 1
        return shared


def _release(shared: _Shared) -> None:
    with _REGISTRY_LOCK:
        shared.refs -= 1
        if shared.refs <= 0:
            _OPEN.pop(shared.key, None)
            try:
                shared.file.close()
            except Exception:  # noqa: BLE001 - closing a damaged file must not raise
                pass


class Trace:
    """An open trace file. Use ``open_trace``; close it (or use ``with``) when done."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._shared = _acquire(self.path)
        self._closed = False
        self.schema_version = self._shared.schema_version
        self.kind: schema.Kind = self._shared.kind

    def _read(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` under the file's lock, its h5py errors as one TraceError line naming ``what``."""
        if self._closed:
            raise TraceError(f"{self.path}: the trace is closed")
        with self._shared.lock, _guard(self.path, what, self._shared.damage), np.errstate(all="ignore"):  # damaged values: no warnings
            return fn()

    @property
    def file(self) -> h5py.File:
        """The underlying h5py file, for tests of the layout only: reads through it bypass every check here."""
        return self._shared.file

    @property
    def live(self) -> bool:
        """True when the file was opened as an SWMR reader: a writer has (or had) it open."""
        return self._shared.live

    # -- metadata ---------------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration (a JSON object, validated at open)."""
        return self._shared.config

    @property
    def attrs(self) -> dict[str, Any]:
        """Every root attribute as a plain Python value."""
        return dict(self._shared.attrs)

    def attr(self, name: str, default: Any = None) -> Any:
        return self._shared.attrs.get(name, default)

    def json_attr(self, name: str) -> Any:
        """A root attribute parsed as JSON, None if absent; TraceError if it is not JSON."""
        raw = self._shared.attrs.get(name)
        return None if raw is None else _json_attr(self._shared, name, raw)

    @property
    def created(self) -> str:
        return str(self.attr(schema.ATTR_CREATED, ""))

    @property
    def tensor_dtype(self) -> str:
        return str(self.attr(schema.ATTR_TENSOR_DTYPE, "float32"))

    @property
    def status(self) -> schema.Status:
        """running, complete or failed; read fresh from the file each time."""

        def read() -> schema.Status:
            ds = self._shared.status
            assert ds is not None
            if self.live:
                ds.refresh()
            value = _attr_str(ds[()]).strip("\x00")
            return value if value in schema.STATUSES else "failed"  # type: ignore[return-value]

        return self._read("the status", read)

    def writer_state(self) -> WriterState:
        """Whether the process that wrote (or writes) the trace still runs: "alive", "gone" or "unknown" (a trace without
        the stamp, written on another machine, or an unreadable stamp): tracer/trace/liveness.py."""
        raw = self._shared.attrs.get(schema.ATTR_WRITER)
        try:
            return liveness.state(None if raw is None else json.loads(_attr_str(raw)))
        except (ValueError, TypeError):
            return "unknown"

    @property
    def abandoned(self) -> bool:
        """Whether the trace says "running" but its writer is gone: the run was killed (SIGKILL, the out-of-memory
        killer) before it could close the trace. Its committed rows read as any; nothing more will come."""
        return self.status == "running" and self.writer_state() == "gone"

    @property
    def recovered_from(self) -> str | None:
        value = self.attr(schema.ATTR_RECOVERED_FROM)
        return None if value is None else str(value)

    def schedule_arrays(self) -> dict[str, np.ndarray]:
        """beta, alpha, alpha_bar as stored in the file, float64 ({} when the trace has no schedule)."""
        return self._read("the schedule", lambda: {name: np.asarray(ds[()], dtype=np.float64) for name, ds in self._shared.schedule.items()})

    @property
    def schedule(self) -> Schedule | None:
        arrays = self.schedule_arrays()
        if "beta" not in arrays:
            return None
        beta = arrays["beta"]
        if not betas_valid(beta):
            raise TraceError(f"{self.path} has a schedule whose beta is not in (0, 1) (the last in (0, 1])")
        return from_betas(self._shared.schedule_name, beta)

    def planned(self, series: str = schema.STEPS) -> int:
        return self._shared.planned.get(series, 0)

    # -- rows -----------------------------------------------------------------------------------------
    def has_series(self, series: str) -> bool:
        return series in self._shared.fields and series in self._shared.progress

    def rows(self, series: str = schema.STEPS) -> int:
        """Rows of ``series`` committed so far (the only ones a reader may trust); read fresh."""
        if not self.has_series(series):
            return 0

        def read() -> int:
            shared = self._shared
            counter = shared.progress[series]
            members = shared.fields[series].values()
            if shared.live:
                counter.refresh()
                for ds in members:
                    ds.refresh()
            committed = int(counter[()])
            lengths = [ds.shape[0] for ds in members]
            shared.committed[series] = max(0, min([committed, *lengths]))
            return shared.committed[series]

        return self._read(f"the commit counter of {series}", read)

    @property
    def num_steps(self) -> int:
        return self.rows(schema.STEPS)

    def refresh(self) -> None:
        """See rows the writer committed since the last look (live traces)."""
        for series in self._shared.fields:
            self.rows(series)

    def field_names(self, series: str = schema.STEPS) -> list[str]:
        return list(self._shared.fields.get(series, {}))

    def field_specs(self, series: str = schema.STEPS) -> dict[str, tuple[tuple[int, ...], str]]:
        """(per-row shape, stored dtype name) of every field of ``series``; () is a scalar."""
        return {name: (tuple(int(d) for d in ds.shape[1:]), ds.dtype.name) for name, ds in self._shared.fields.get(series, {}).items()}

    def series_names(self) -> list[str]:
        """The series this trace holds (steps; or train, snapshots, examples), in file order."""
        return [name for name in self._shared.fields if self.has_series(name)]

    def root_specs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """(shape, dtype name) of the root datasets written at the end (samples, labels, snapshot_x_T, ...)."""
        return {name: (tuple(int(d) for d in ds.shape), ds.dtype.name) for name, ds in self._shared.roots.items()}

    def tensor_names(self, series: str = schema.STEPS) -> list[str]:
        """Fields with per-row shape (tensors), in file order."""
        return [name for name, ds in self._shared.fields.get(series, {}).items() if ds.ndim > 1]

    def _dataset(self, series: str, name: str) -> h5py.Dataset:
        ds = self._shared.fields.get(series, {}).get(name)
        if ds is None:
            raise TraceError(f"{self.path} has no dataset {series}/{name}")
        return ds

    def column(self, name: str, series: str = schema.STEPS) -> np.ndarray:
        """All committed rows of one field (meant for scalars and small fields)."""
        n = self.rows(series)
        ds = self._dataset(series, name)

        def read() -> np.ndarray:
            if self.live:
                ds.refresh()
            return np.asarray(ds[:n])

        return self._read(f"{series}/{name}", read)

    def scalars(self, series: str = schema.STEPS) -> dict[str, np.ndarray]:
        """Every per-row scalar of ``series``, committed rows only."""
        return {name: self.column(name, series) for name in self.field_names(series) if self._shared.fields[series][name].ndim == 1}

    def series(self, series: str) -> dict[str, np.ndarray]:
        """Every field of a (small) series, committed rows only: for training logs."""
        return {name: self.column(name, series) for name in self.field_names(series)}

    def tensor(self, name: str, i: int, series: str = schema.STEPS, dtype: Any = np.float32) -> np.ndarray:
        """Row ``i`` of field ``name`` (float32 unless ``dtype`` says otherwise); reads that one row and nothing else."""
        n = self._shared.committed.get(series, 0)
        if not 0 <= i < n:
            n = self.rows(series)  # maybe committed since the last look
            if not 0 <= i < n:
                raise IndexError(f"step {i} is out of range: {n} steps recorded")
        ds = self._dataset(series, name)
        # The hot path of every viewer frame and check step: the guard spelled out.
        if self._closed:
            raise TraceError(f"{self.path}: the trace is closed")
        try:
            with self._shared.lock, np.errstate(all="ignore"):  # a damaged value cast to float: no warning
                if self._shared.live:
                    ds.refresh()
                return np.asarray(ds[i], dtype=dtype)
        except Exception:  # noqa: BLE001 - re-read under the guard for its one-line message
            return self._read(f"row {i} of {series}/{name}", lambda: np.asarray(ds[i], dtype=dtype))

    def step(self, i: int) -> dict[str, Any]:
        """Scalars and tensors of step ``i``."""
        out: dict[str, Any] = {name: values[i] for name, values in self.scalars().items()}
        for name in self.tensor_names():
            out[name] = self.tensor(name, i)
        return out

    def index_of_t(self, t: int) -> int:
        """The step whose model timestep is ``t``; raises KeyError if the trace never visits it."""
        hits = np.flatnonzero(self.column("t") == t)
        if hits.size == 0:
            raise KeyError(f"timestep {t} is not visited by this trace")
        return int(hits[0])

    def nearest_index(self, t: int) -> int:
        """The step whose model timestep is closest to ``t`` (ties go to the earlier step)."""
        ts = self.column("t")
        if ts.size == 0:
            raise IndexError("the trace has no steps")
        return int(np.argmin(np.abs(ts.astype(np.int64) - int(t))))

    # -- what was recorded (tracer/trace/choice.py) ---------------------------------------------------------
    @property
    def recorded(self) -> Recorded | None:
        """What a run that recorded less than everything kept (``noisescope sample --record/--every/--samples``,
        tracer/trace/choice.py); None for a trace that records everything."""
        return self._shared.record

    @property
    def record_choice(self) -> RecordChoice | None:
        """The recording choice of a run that recorded less than everything; None for one that records everything."""
        return None if self._shared.record is None else self._shared.record.choice

    @property
    def run_batch(self) -> int:
        """The batch the run sampled: larger than ``batch_size`` where only some of its samples were kept."""
        return self._shared.record.batch if self._shared.record is not None else self.batch_size

    def sample_indices(self) -> range:
        """The run's batch index of each stored sample: ``range(batch_size)`` unless a slice of the batch was kept."""
        return self._shared.record.rows if self._shared.record is not None else range(self.batch_size)

    def step_indices(self, series: str = schema.STEPS) -> np.ndarray:
        """The run's loop index of each committed row (``steps/index``, written where steps were skipped; else 0, 1, ...)."""
        if series == schema.STEPS and schema.STEP_INDEX in self._shared.fields.get(series, {}):
            return np.asarray(self.column(schema.STEP_INDEX, series), dtype=np.int64)
        return np.arange(self.rows(series), dtype=np.int64)

    # -- final outputs --------------------------------------------------------------------------------
    def has_root(self, name: str) -> bool:
        """Whether the root dataset ``name`` (samples, labels, ...) exists, written or not."""
        return name in self._shared.roots

    def has_final(self) -> bool:
        counter = self._shared.progress.get(schema.FINAL)
        if counter is None:
            return False

        def read() -> bool:
            if self.live:
                counter.refresh()
            return int(counter[()]) == 1

        return self._read("progress/final", read)

    def final(self, name: str) -> np.ndarray | None:
        """A root dataset written at the end (``samples``, ``labels``), or None if not written yet."""
        ds = self._shared.roots.get(name)
        if ds is None or not self.has_final():
            return None

        def read() -> np.ndarray:
            if self.live:
                ds.refresh()
            return np.asarray(ds[()])

        return self._read(name, read)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """D, the shape of one sample (from x_t); () if the trace has no steps group."""
        ds = self._shared.fields.get(schema.STEPS, {}).get("x_t")
        return tuple(int(d) for d in ds.shape[2:]) if ds is not None else ()

    @property
    def batch_size(self) -> int:
        ds = self._shared.fields.get(schema.STEPS, {}).get("x_t")
        return int(ds.shape[1]) if ds is not None else 0

    # -- lifetime -------------------------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self._shared)

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


def open_trace(path: str | os.PathLike[str]) -> Trace:
    """Open a trace for reading; raises TraceError with one line if it is not a readable trace."""
    return Trace(path)
