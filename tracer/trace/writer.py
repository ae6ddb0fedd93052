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
"""

from __future__ import annotations

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

from tracer.schedules import Schedule
from tracer.trace import schema


class TraceExistsError(FileExistsError):
    """The output trace exists and overwrite was not asked for."""


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


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version, "numpy": np.__version__}
    for dist in ("noisescope", "torch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def to_numpy(value: Any) -> np.ndarray:
    """A numpy view of a tensor, array or scalar (torch tensors are moved to the CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class TraceWriter:
    """Writes one trace file. Use as a context manager; see the module docstring."""

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
    ) -> None:
        if tensor_dtype not in schema.TENSOR_DTYPES:
            raise ValueError(f"unknown tensor dtype {tensor_dtype!r}; choose float32 or float16")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise TraceExistsError(f"{self.path} exists; pass --overwrite to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tensor_dtype = np.dtype(tensor_dtype)
        self._closed = False
        # Write to a temporary name first, so an existing trace survives until the new one exists.
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._file = h5py.File(self._tmp, "w", libver="latest")
        try:
            self._create(kind, config, list(series), schedule, attrs or {}, finals or {})
            self._file.swmr_mode = True
            self._file.flush()
            os.replace(self._tmp, self.path)
        except BaseException:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            raise

    # -- creation (before SWMR: every dataset and attribute is made here) ------------------------
    def _create(
        self,
        kind: str,
        config: Mapping[str, Any],
        series: list[Series],
        schedule: Schedule | None,
        attrs: Mapping[str, Any],
        finals: Mapping[str, tuple[tuple[int, ...], str]],
    ) -> None:
        f = self._file
        f.attrs[schema.ATTR_FORMAT] = schema.FORMAT
        f.attrs[schema.ATTR_SCHEMA_VERSION] = schema.SCHEMA_VERSION
        f.attrs[schema.ATTR_KIND] = kind
        f.attrs[schema.ATTR_CONFIG] = json.dumps(config, default=str)
        f.attrs[schema.ATTR_CREATED] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        f.attrs[schema.ATTR_VERSIONS] = json.dumps(library_versions())
        f.attrs[schema.ATTR_TENSOR_DTYPE] = self.tensor_dtype.name
        f.attrs[schema.ATTR_PLANNED] = json.dumps({s.name: s.planned for s in series})
        for key, value in attrs.items():
            f.attrs[key] = value if isinstance(value, (str, int, float, np.ndarray)) else json.dumps(value)
        self._status = f.create_dataset(schema.STATUS, data=np.array(b"running", dtype=schema.STATUS_DTYPE))
        if schedule is not None:
            group = f.create_group(schema.SCHEDULE)
            for name in schema.SCHEDULE_FIELDS:
                group.create_dataset(name, data=np.asarray(getattr(schedule, name), dtype=np.float64))
            group.attrs["name"] = schedule.name
        self._series: dict[str, _SeriesState] = {}
        for spec in series:
            self._series[spec.name] = self._create_series(spec)
        # Root datasets written once at the end (samples, labels); progress/final says when they are.
        self._finals: dict[str, h5py.Dataset] = {}
        for name, (shape, dtype_name) in finals.items():
            dtype = self.tensor_dtype if dtype_name == schema.TENSOR else np.dtype(dtype_name)
            # Chunked, as SWMR readers need: a contiguous dataset's late allocation changes its header.
            self._finals[name] = f.create_dataset(name, shape=shape, dtype=dtype, chunks=shape or None)
        self._finals_written = f.create_dataset(schema.progress_path(schema.FINAL), data=np.int64(0))

    def _create_series(self, spec: Series) -> _SeriesState:
        group = self._file.require_group(spec.name)
        capacity = max(spec.planned, 1)
        datasets, dtypes = {}, {}
        for name, (shape, dtype_name) in spec.fields.items():
            dtype = self.tensor_dtype if dtype_name == schema.TENSOR else np.dtype(dtype_name)
            rows_per_chunk = 1 if shape else min(capacity, 4096)
            datasets[name] = group.create_dataset(
                name, shape=(capacity, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(rows_per_chunk, *shape) if shape else (rows_per_chunk,)
            )
            dtypes[name] = dtype
        progress = self._file.create_dataset(schema.progress_path(spec.name), data=np.int64(0))
        state = _SeriesState(spec=spec, datasets=datasets, progress=progress, capacity=capacity, dtypes=dtypes,
                             row_shapes={name: shape for name, (shape, _) in spec.fields.items()})
        state.refresh_spaces()
        return state

    # -- writing -------------------------------------------------------------------------------------
    def append(self, series: str, row: Mapping[str, Any]) -> int:
        """Write one row to every field of ``series``, flush, then commit it. Returns the row index."""
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
        for name, value in arrays.items():
            if name not in self._finals:
                raise KeyError(f"{name!r} was not declared in finals when the trace was created")
            self._finals[name][...] = np.asarray(to_numpy(value), dtype=self._finals[name].dtype)
        self._file.flush()
        self._finals_written[()] = 1
        self._finals_written.flush()

    def set_status(self, status: schema.Status) -> None:
        self._status[()] = np.array(status.encode(), dtype=schema.STATUS_DTYPE)
        self._status.flush()

    @property
    def rows(self) -> dict[str, int]:
        return {name: state.rows for name, state in self._series.items()}

    def close(self, status: schema.Status = "complete") -> None:
        """Trim every series to the rows written, record the final status, close the file."""
        if self._closed:
            return
        self._closed = True
        try:
            for state in self._series.values():
                for ds in state.datasets.values():
                    if ds.shape[0] != state.rows:
                        ds.resize(state.rows, axis=0)
            self._file.flush()
            self.set_status(status)
        finally:
            self._file.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close("failed" if exc_type is not None else "complete")
