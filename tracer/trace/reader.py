"""The trace reader: lazy, checked, and live-aware.

``open_trace(path)`` checks that the file is an HDF5 noisescope trace of a
schema version this code understands and raises ``TraceError`` (one line)
for anything else. Nothing is read until asked for: ``tensor(name, i)`` reads
one step (one chunk), so a trace never has to fit in memory. A trace that a
writer holds open (still running, or killed mid-run) is opened in SWMR read
mode and can be followed: only rows the writer has committed
(``progress/<series>``) are visible, each one whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from tracer.schedules import Schedule, from_betas
from tracer.trace import schema


class TraceError(ValueError):
    """The file cannot be read as a noisescope trace; the message is one line for the user."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _open_h5(path: Path) -> h5py.File:
    if not path.exists():
        raise TraceError(f"{path}: no such file")
    if path.is_dir():
        raise TraceError(f"{path} is a directory, not a trace file")
    try:
        if not h5py.is_hdf5(path):
            raise TraceError(f"{path} is not an HDF5 file")
    except OSError as error:
        raise TraceError(f"{path} cannot be read: {_first_line(error)}") from None
    # A plain open first: it fails fast on a truncated file, where an SWMR open retries for minutes.
    # It is refused for a file a writer holds open in SWMR mode (live, or killed mid-run), and only
    # then is the file opened as an SWMR reader, which sees every committed row.
    # h5py reports a damaged file as OSError or, for some damage past the superblock, RuntimeError.
    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError) as error:
        if isinstance(error, RuntimeError) or "truncated" in str(error) or "signature" in str(error):
            raise TraceError(f"{path} is truncated or corrupt: {_first_line(error)}") from None
    try:
        return h5py.File(path, "r", libver="latest", swmr=True)
    except (OSError, RuntimeError) as error:
        raise TraceError(f"{path} is truncated or corrupt: {_first_line(error)}") from None


# What h5py raises when the bytes behind an object are damaged (bad checksums, garbage headers).
_H5_DAMAGE = (OSError, RuntimeError, KeyError)


@contextmanager
def _damage_is_trace_error(path: Path, what: str) -> Iterator[None]:
    """Turn h5py's errors for damaged bytes into a one-line TraceError naming what could not be read."""
    try:
        yield
    except TraceError:
        raise
    except _H5_DAMAGE as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise TraceError(f"{path} is corrupt: {what} cannot be read ({_first_line(Exception(message))})") from None


def _attr_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Trace:
    """An open trace file. Use ``open_trace``; close it (or use ``with``) when done."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.file = _open_h5(self.path)
        self._field_cache: dict[str, dict[str, h5py.Dataset]] = {}
        try:
            with _damage_is_trace_error(self.path, "the file's header"):
                self._check()
                for series in (schema.STEPS, schema.TRAIN, schema.EXAMPLES, schema.SNAPSHOTS):
                    self._fields(series)
        except BaseException:
            self.file.close()
            raise

    def _check(self) -> None:
        attrs = self.file.attrs
        if _attr_str(attrs.get(schema.ATTR_FORMAT, "")) != schema.FORMAT:
            raise TraceError(f"{self.path} is an HDF5 file but not a noisescope trace (no format={schema.FORMAT!r} attribute)")
        try:
            version = int(attrs[schema.ATTR_SCHEMA_VERSION])
        except (KeyError, TypeError, ValueError):
            raise TraceError(f"{self.path} has no valid schema_version attribute") from None
        if version > schema.SCHEMA_VERSION:
            raise TraceError(
                f"{self.path} has schema version {version}, newer than this noisescope reads ({schema.SCHEMA_VERSION}); upgrade noisescope"
            )
        if version < 1:
            raise TraceError(f"{self.path} has an invalid schema version {version}")
        kind = _attr_str(attrs.get(schema.ATTR_KIND, ""))
        if kind not in ("sampling", "training"):
            raise TraceError(f"{self.path} has an unknown kind {kind!r}")
        if schema.STATUS not in self.file:
            raise TraceError(f"{self.path} lacks the {schema.STATUS!r} dataset: not a complete noisescope trace")
        self.schema_version = version
        self.kind: schema.Kind = kind  # type: ignore[assignment]

    @property
    def live(self) -> bool:
        """True when the file was opened as an SWMR reader: a writer has (or had) it open."""
        return bool(self.file.swmr_mode)

    # -- metadata ---------------------------------------------------------------------------------
    @cached_property
    def config(self) -> dict[str, Any]:
        raw = self.file.attrs.get(schema.ATTR_CONFIG, "{}")
        try:
            value = json.loads(_attr_str(raw))
        except json.JSONDecodeError:
            raise TraceError(f"{self.path}: the config attribute is not valid JSON") from None
        return value if isinstance(value, dict) else {}

    def attr(self, name: str, default: Any = None) -> Any:
        value = self.file.attrs.get(name, default)
        return _attr_str(value) if isinstance(value, bytes) else value

    def json_attr(self, name: str) -> Any:
        raw = self.file.attrs.get(name)
        return None if raw is None else json.loads(_attr_str(raw))

    @property
    def created(self) -> str:
        return str(self.attr(schema.ATTR_CREATED, ""))

    @property
    def tensor_dtype(self) -> str:
        return str(self.attr(schema.ATTR_TENSOR_DTYPE, "float32"))

    @property
    def status(self) -> schema.Status:
        """running, complete or failed; read fresh from the file each time."""
        ds = self.file[schema.STATUS]
        if self.live:
            ds.refresh()
        value = _attr_str(ds[()]).strip("\x00")
        return value if value in schema.STATUSES else "failed"  # type: ignore[return-value]

    @property
    def recovered_from(self) -> str | None:
        value = self.attr(schema.ATTR_RECOVERED_FROM)
        return None if value is None else str(value)

    @cached_property
    def schedule(self) -> Schedule | None:
        group = self.file.get(schema.SCHEDULE)
        if group is None:
            return None
        return from_betas(_attr_str(group.attrs.get("name", "unknown")), group["beta"][()])

    def planned(self, series: str = schema.STEPS) -> int:
        plan = self.json_attr(schema.ATTR_PLANNED) or {}
        return int(plan.get(series, 0))

    # -- rows -----------------------------------------------------------------------------------------
    def has_series(self, series: str) -> bool:
        return series in self.file and schema.progress_path(series) in self.file

    def rows(self, series: str = schema.STEPS) -> int:
        """Rows of ``series`` committed so far (the only ones a reader may trust)."""
        if not self.has_series(series):
            return 0
        ds = self.file[schema.progress_path(series)]
        if self.live:
            ds.refresh()
        committed = int(ds[()])
        lengths = [d.shape[0] for d in self._fields(series).values()]
        return min([committed, *lengths]) if lengths else committed

    @property
    def num_steps(self) -> int:
        return self.rows(schema.STEPS)

    def refresh(self) -> None:
        """See rows the writer committed since the last look (live traces)."""
        if self.live:
            for ds in self._fields(schema.STEPS).values():
                ds.refresh()

    def _fields(self, series: str) -> dict[str, h5py.Dataset]:
        # The writer creates every dataset before it switches to SWMR, so a series' members never
        # change while the file is open: list them once (a group listing costs milliseconds).
        cached = self._field_cache.get(series)
        if cached is None:
            group = self.file.get(series)
            cached = {}
            if isinstance(group, h5py.Group):
                cached = {name: ds for name, ds in group.items() if isinstance(ds, h5py.Dataset)}
            self._field_cache[series] = cached
        return cached

    def field_names(self, series: str = schema.STEPS) -> list[str]:
        return list(self._fields(series))

    def tensor_names(self, series: str = schema.STEPS) -> list[str]:
        """Fields with per-row shape (tensors), in file order."""
        return [name for name, ds in self._fields(series).items() if ds.ndim > 1]

    def _dataset(self, series: str, name: str) -> h5py.Dataset:
        ds = self._fields(series).get(name)
        if ds is None:
            raise TraceError(f"{self.path} has no dataset {series}/{name}")
        if self.live:
            ds.refresh()
        return ds

    def column(self, name: str, series: str = schema.STEPS) -> np.ndarray:
        """All committed rows of one field (meant for scalars and small fields)."""
        with _damage_is_trace_error(self.path, f"{series}/{name}"):
            return self._dataset(series, name)[: self.rows(series)]

    def scalars(self, series: str = schema.STEPS) -> dict[str, np.ndarray]:
        """Every per-row scalar of ``series``, committed rows only."""
        n = self.rows(series)
        return {name: ds[:n] for name, ds in self._fields(series).items() if ds.ndim == 1}

    def series(self, series: str) -> dict[str, np.ndarray]:
        """Every field of a (small) series, committed rows only: for training logs."""
        n = self.rows(series)
        return {name: ds[:n] for name, ds in self._fields(series).items()}

    def tensor(self, name: str, i: int, series: str = schema.STEPS) -> np.ndarray:
        """Row ``i`` of tensor ``name`` as float32; reads that one row and nothing else."""
        n = self.rows(series)
        if not 0 <= i < n:
            raise IndexError(f"step {i} is out of range: {n} steps recorded")
        with _damage_is_trace_error(self.path, f"row {i} of {series}/{name}"):
            return np.asarray(self._dataset(series, name)[i], dtype=np.float32)

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

    # -- final outputs --------------------------------------------------------------------------------
    def has_final(self) -> bool:
        path = schema.progress_path(schema.FINAL)
        if path not in self.file:
            return False
        ds = self.file[path]
        if self.live:
            ds.refresh()
        return bool(ds[()])

    def final(self, name: str) -> np.ndarray | None:
        """A root dataset written at the end (``samples``, ``labels``), or None if not written yet."""
        if name not in self.file or not self.has_final():
            return None
        return np.asarray(self.file[name][()])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """D, the shape of one sample (from x_t); () if the trace has no steps group."""
        fields = self._fields(schema.STEPS)
        ds = fields.get("x_t")
        return tuple(ds.shape[2:]) if ds is not None else ()

    @property
    def batch_size(self) -> int:
        ds = self._fields(schema.STEPS).get("x_t")
        return int(ds.shape[1]) if ds is not None else 0

    # -- lifetime -------------------------------------------------------------------------------------
    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def open_trace(path: str | os.PathLike[str]) -> Trace:
    """Open a trace for reading; raises TraceError with one line if it is not a readable trace."""
    return Trace(path)
