"""The trace writer: an HDF5 file written row by row, crash-safe and readable while it grows.

Crash safety and live reading use HDF5's single-writer/multiple-reader mode
(SWMR): every dataset is created up front, then the file switches to SWMR and
each appended row is written, flushed, and only then *committed* by bumping
``progress/<series>``. A reader trusts only committed rows, so it sees every
row whole or not at all, and a writer killed with SIGKILL leaves every
committed row readable (``noisescope recover`` makes a clean copy).

Datasets are sized ahead to the planned number of rows (resizing each step is
measurably slower) and grown by doubling if a series runs longer; on a normal
close they are trimmed to what was written. Tensors are chunked one row a
chunk, so reading step k touches only step k.

Files on disk (tracer/atomic.py holds the rule): the file is created as ``DIR/.NAME.partial``.
If ``DIR/NAME`` does not exist, the partial is renamed onto it as soon as its datasets
exist, before the first row, so a live reader follows the run at its path and a killed
run leaves its committed rows there (``live=False`` waits for the close instead). If ``DIR/NAME`` exists (``overwrite=True``), the new
trace stays beside it and replaces it only when the writer closes with status
``complete`` (or when ``publish()`` is called): a failed or killed run leaves the old trace
intact and its own committed rows in the ``.partial``, which the next writer of the same
target removes. A file that is not a noisescope trace is never replaced.

A full disk (ENOSPC, or EFBIG under ``ulimit -f``) raises ``DiskFullError`` with one line:
the trace is marked failed where that can still be written, closed, and every row
committed before stays readable. So that a full disk fails in a plain write and never
while HDF5 flushes its chunk cache (HDF5 2.0 crashes closing a dataset whose cached chunk
it could not write), the file is built in memory and written out whole, scalar rows get
their chunks ahead of time, and tensors and finals are written as whole chunks.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from tracer import atomic
from tracer.atomic import DiskFullError
from tracer.schedules import Schedule
from tracer.trace import liveness, schema

__all__ = ["DiskFullError", "Series", "TraceExistsError", "TraceWriter"]


class TraceExistsError(FileExistsError):
    """The output trace exists and overwrite was not asked for, or it is not a trace and is never replaced."""


@dataclass(frozen=True)
class Series:
    """A group of datasets that grow together along axis 0, one row per append.

    ``fields`` maps a name to (per-row shape, dtype); the dtype ``"tensor"`` means
    the trace's tensor dtype (float32, or float16 on request).
    """

    name: str
    fields: Mapping[str, tuple[tuple[int, ...], str]]
    planned: int = 0


@dataclass
class _SeriesState:
    spec: Series
    datasets: dict[str, h5py.Dataset]
    progress: h5py.Dataset
    capacity: int
    rows: int = 0
    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    row_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Scalars are written through h5py's low-level API: its high-level __setitem__ costs ~0.1 ms a
    # call, more than the rest of a row together. One file dataspace per field, re-made on resize.
    file_spaces: dict[str, h5py.h5s.SpaceID] = field(default_factory=dict)

    def refresh_spaces(self) -> None:
        self.file_spaces = {name: ds.id.get_space() for name, ds in self.datasets.items() if not self.row_shapes[name]}


_ONE_ROW = h5py.h5s.create_simple((1,))


def _allocate_rows(ds: h5py.Dataset, start: int, stop: int) -> None:
    """Write zero chunks to a scalar dataset for rows ``start`` (the first row of no chunk yet) to ``stop``.

    A scalar row then only ever overwrites space the file already has: a full disk fails in
    this direct write, cleanly, and never leaves a dirty cached chunk that HDF5 cannot flush
    (HDF5 2.0 crashes closing a dataset with one).
    """
    rows = ds.chunks[0]
    zeros = np.zeros(rows, dtype=ds.dtype)
    for first in range(-(-start // rows) * rows, stop, rows):  # never a chunk that holds rows
        ds.id.write_direct_chunk((first,), zeros)


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version, "numpy": np.__version__}
    for dist in ("noisescope", "torch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def is_trace_file(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file whose root says it is a noisescope trace (or HDF5 too damaged to say).

    A damaged HDF5 file is most likely a trace of ours whose run died; anything readable
    that is not a trace (a checkpoint, another program's HDF5 file) is not.
    """
    try:
        if not h5py.is_hdf5(path):
            return False
    except OSError:
        return False
    for kwargs in ({}, {"libver": "latest", "swmr": True}):
        try:
            with h5py.File(path, "r", **kwargs) as f:
                value = f.attrs.get(schema.ATTR_FORMAT)
                return (value.decode() if isinstance(value, bytes) else str(value)) == schema.FORMAT
        except (OSError, RuntimeError, UnicodeDecodeError):
            continue
    return True


def to_numpy(value: Any) -> np.ndarray:
    """A numpy view of a tensor, array or scalar (torch tensors are moved to the CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class TraceWriter:
    """Writes one trace file. Use as a context manager; see the module docstring.

    ``live=False`` keeps the file at its ``.partial`` until it is closed complete (or
    ``publish()`` is called) even where the target does not exist: for a copy that no one
    follows while it grows, so that a kill leaves nothing at the target's name.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        kind: schema.Kind,
        config: Mapping[str, Any],
        series: Iterable[Series],
        schedule: Schedule | None = None,
        tensor_dtype: str = "float32",
        overwrite: bool = False,
        attrs: Mapping[str, Any] | None = None,
        finals: Mapping[str, tuple[tuple[int, ...], str]] | None = None,
        live: bool = True,
    ) -> None:
        if tensor_dtype not in schema.TENSOR_DTYPES:
            raise ValueError(f"unknown tensor dtype {tensor_dtype!r}; choose float32 or float16")
        self.path = Path(path)
        exists = self.path.exists()
        if exists and not overwrite:
            raise TraceExistsError(f"{self.path} exists; pass --overwrite to replace it")
        if exists and not is_trace_file(self.path):
            raise TraceExistsError(f"{self.path} is not a noisescope trace; refusing to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tensor_dtype = np.dtype(tensor_dtype)
        self._closed = False
        self._partial = atomic.partial_path(self.path)
        self._at_target = False  # where the file is: at self.path, or still at the partial
        atomic.stale_partial(self.path)
        series = list(series)
        finals = dict(finals or {})
        try:
            # Every dataset and attribute is made in memory and the image written by Python: a full
            # disk then fails in one plain write, never inside an HDF5 flush (HDF5 2.0 crashes on those).
            in_memory = f"{self._partial}.{id(self)}.in-memory"  # a name no open file has; never touched on disk
            with h5py.File(in_memory, "w", driver="core", backing_store=False, libver="latest") as memory:
                self._create(memory, kind, config, series, schedule, attrs or {}, finals)
                memory.flush()
                image = memory.id.get_file_image()
            with open(self._partial, "wb") as out:
                out.write(image)
            del image
            self._file = h5py.File(self._partial, "r+", libver="latest")
            try:
                self._bind(series, finals)
                self._file.swmr_mode = True
                self._file.flush()
            except BaseException:
                with contextlib.suppress(Exception):  # on a full disk closing fails too; the error that matters is raised
                    self._file.close()
                raise
        except BaseException as error:
            self._partial.unlink(missing_ok=True)
            if isinstance(error, (OSError, RuntimeError)) and atomic.is_disk_full(error):
                kept = f"{self.path} is unchanged" if exists else "nothing was written"
                raise DiskFullError(f"disk full creating the trace {self.path}; {kept}") from None
            raise
        if live and not exists:  # no trace to keep: the file lives at its path from before its first row
            os.replace(self._partial, self.path)
            self._at_target = True

    @property
    def file_path(self) -> Path:
        """Where the file is now: the target path, or its ``.partial`` until it replaces an existing trace."""
        return self.path if self._at_target else self._partial

    def publish(self) -> None:
        """Move the file onto the target path now (it stays open); a no-op once there.

        For a writer that must replace an old trace before closing: a resumed run, once
        the old rows are copied in, so a live reader follows it at its path.
        """
        if self._at_target:
            return
        if not self._closed:
            self._file.flush()
        atomic.replace(self._partial, self.path)
        self._at_target = True

    # -- creation (in memory, before SWMR: every dataset and attribute is made here) ------------------
    def _create(
        self,
        f: h5py.File,
        kind: str,
        config: Mapping[str, Any],
        series: list[Series],
        schedule: Schedule | None,
        attrs: Mapping[str, Any],
        finals: Mapping[str, tuple[tuple[int, ...], str]],
    ) -> None:
        f.attrs[schema.ATTR_FORMAT] = schema.FORMAT
        f.attrs[schema.ATTR_SCHEMA_VERSION] = schema.SCHEMA_VERSION
        f.attrs[schema.ATTR_KIND] = kind
        f.attrs[schema.ATTR_CONFIG] = json.dumps(config, default=str)
        f.attrs[schema.ATTR_CREATED] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        f.attrs[schema.ATTR_VERSIONS] = json.dumps(library_versions())
        f.attrs[schema.ATTR_TENSOR_DTYPE] = self.tensor_dtype.name
        f.attrs[schema.ATTR_PLANNED] = json.dumps({s.name: s.planned for s in series})
        writer = liveness.identity()
        if writer is not None:  # who writes it: a reader can tell a killed run's trace from a live one
            f.attrs[schema.ATTR_WRITER] = json.dumps(writer)
        for key, value in attrs.items():
            f.attrs[key] = value if isinstance(value, (str, int, float, np.ndarray)) else json.dumps(value)
        f.create_dataset(schema.STATUS, data=np.array(b"running", dtype=schema.STATUS_DTYPE))
        if schedule is not None:
            group = f.create_group(schema.SCHEDULE)
            for name in schema.SCHEDULE_FIELDS:
                group.create_dataset(name, data=np.asarray(getattr(schedule, name), dtype=np.float64))
            group.attrs["name"] = schedule.name
        for spec in series:
            group = f.require_group(spec.name)
            capacity = max(spec.planned, 1)
            for name, (shape, dtype_name) in spec.fields.items():
                rows_per_chunk = 1 if shape else min(capacity, 4096)
                ds = group.create_dataset(name, shape=(capacity, *shape), maxshape=(None, *shape), dtype=self._dtype(dtype_name),
                                          chunks=(rows_per_chunk, *shape))
                if not shape:
                    _allocate_rows(ds, 0, capacity)
            f.create_dataset(schema.progress_path(spec.name), data=np.int64(0))
        # Root datasets written once at the end (samples, labels); progress/final says when they are.
        for name, (shape, dtype_name) in finals.items():
            # Chunked, as SWMR readers need: a contiguous dataset's late allocation changes its header.
            f.create_dataset(name, shape=shape, dtype=self._dtype(dtype_name), chunks=shape or None)
        f.create_dataset(schema.progress_path(schema.FINAL), data=np.int64(0))

    def _dtype(self, name: str) -> np.dtype:
        return self.tensor_dtype if name == schema.TENSOR else np.dtype(name)

    def _bind(self, series: list[Series], finals: Mapping[str, tuple[tuple[int, ...], str]]) -> None:
        """Open what ``_create`` made, in the file on disk."""
        f = self._file
        self._status = f[schema.STATUS]
        self._series: dict[str, _SeriesState] = {}
        for spec in series:
            datasets = {name: f[f"{spec.name}/{name}"] for name in spec.fields}
            state = _SeriesState(spec=spec, datasets=datasets, progress=f[schema.progress_path(spec.name)],
                                 capacity=max(spec.planned, 1), dtypes={name: ds.dtype for name, ds in datasets.items()},
                                 row_shapes={name: shape for name, (shape, _) in spec.fields.items()})
            state.refresh_spaces()
            self._series[spec.name] = state
        self._finals: dict[str, h5py.Dataset] = {name: f[name] for name in finals}
        self._finals_written = f[schema.progress_path(schema.FINAL)]

    # -- writing -------------------------------------------------------------------------------------
    def append(self, series: str, row: Mapping[str, Any]) -> int:
        """Write one row to every field of ``series``, flush, then commit it. Returns the row index."""
        try:
            return self._append(series, row)
        except (OSError, RuntimeError) as error:
            self._raise_if_disk_full(error)
            raise

    def _append(self, series: str, row: Mapping[str, Any]) -> int:
        state = self._series[series]
        missing = state.datasets.keys() - row.keys()
        if missing:
            raise KeyError(f"row for {series!r} lacks {sorted(missing)}")
        i = state.rows
        if i >= state.capacity:
            state.capacity *= 2
            for ds in state.datasets.values():
                ds.resize(state.capacity, axis=0)
            state.refresh_spaces()
            for name, ds in state.datasets.items():
                if not state.row_shapes[name]:
                    _allocate_rows(ds, i, state.capacity)
        values = {name: np.asarray(to_numpy(row[name]), dtype=state.dtypes[name]) for name in state.datasets}
        for name, value in values.items():  # every shape checked before anything of the row is written
            if value.shape != state.row_shapes[name]:
                raise ValueError(f"{series}/{name}: row shape {value.shape} does not match {state.row_shapes[name]}")
        for name, ds in state.datasets.items():
            value = values[name]
            if value.ndim:
                # A whole chunk: skip the selection machinery and the chunk cache.
                ds.id.write_direct_chunk((i,) + (0,) * value.ndim, np.ascontiguousarray(value))
            else:
                space = state.file_spaces[name]
                space.select_hyperslab((i,), (1,))
                ds.id.write(_ONE_ROW, space, value.reshape(1))
        self._file.flush()
        state.rows = i + 1
        state.progress.id.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(state.rows, dtype=np.int64))  # the commit: readers trust rows below it
        state.progress.flush()
        return i

    def write_final(self, arrays: Mapping[str, Any]) -> None:
        """Write root datasets reserved at creation with ``finals`` (e.g. samples, labels)."""
        try:
            self._write_final(arrays)
        except (OSError, RuntimeError) as error:
            self._raise_if_disk_full(error)
            raise

    def _write_final(self, arrays: Mapping[str, Any]) -> None:
        for name, value in arrays.items():
            if name not in self._finals:
                raise KeyError(f"{name!r} was not declared in finals when the trace was created")
            ds = self._finals[name]
            array = np.asarray(to_numpy(value), dtype=ds.dtype)
            if ds.chunks is None:
                ds[...] = array
                continue
            if array.shape != ds.shape:
                raise ValueError(f"{name}: shape {array.shape} does not match {ds.shape}")
            ds.id.write_direct_chunk((0,) * array.ndim, np.ascontiguousarray(array))  # one chunk, past the chunk cache
        self._file.flush()
        self._finals_written[()] = 1
        self._finals_written.flush()

    def set_status(self, status: schema.Status) -> None:
        self._status[()] = np.array(status.encode(), dtype=schema.STATUS_DTYPE)
        self._status.flush()

    @property
    def rows(self) -> dict[str, int]:
        return {name: state.rows for name, state in self._series.items()}

    def close(self, status: schema.Status = "complete", *, replace: bool | None = None) -> None:
        """Trim every series to the rows written, record the final status, close the file.

        A writer still beside an existing trace then replaces it if ``replace`` (default:
        when ``status`` is ``complete``); otherwise the old trace stays and this one stays
        at its ``.partial``.
        """
        if self._closed:
            return
        try:
            for state in self._series.values():
                for ds in state.datasets.values():
                    if ds.shape[0] != state.rows:
                        ds.resize(state.rows, axis=0)
            self._file.flush()
            self.set_status(status)
        except BaseException as error:
            if isinstance(error, (OSError, RuntimeError)):
                self._raise_if_disk_full(error)
            self._close_file()
            raise
        try:
            self._close_file()
        except (OSError, RuntimeError) as error:
            self._raise_if_disk_full(error)
            raise
        if status == "complete" if replace is None else replace:
            self.publish()

    def _close_file(self) -> None:
        self._closed = True
        self._file.close()

    def _raise_if_disk_full(self, error: BaseException) -> None:
        """On a full disk: mark the trace failed if that can still be written, close it, raise DiskFullError."""
        if not atomic.is_disk_full(error):
            return
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):  # best effort: written in place, it needs no new space
                self.set_status("failed")
            with contextlib.suppress(Exception):  # the committed rows are on disk already
                self._file.close()
        first = next(iter(self._series.values()), None)
        n = first.rows if first is not None else 0
        unit = "steps" if first is None or first.spec.name == schema.STEPS else f"{first.spec.name} rows"
        where = self.file_path
        kept = "" if self._at_target else f"; {self.path} is unchanged"
        raise DiskFullError(
            f"disk full after {n} {unit} writing {where}; the {n} committed {unit} are readable (noisescope recover {where}){kept}"
        ) from None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close("failed" if exc_type is not None else "complete")
