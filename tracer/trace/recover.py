"""``noisescope recover``: a clean copy of everything a trace committed.

A writer killed mid-run (SIGKILL, power loss) leaves a file whose status says
``running`` and whose datasets are sized for the planned rows. The copy keeps
the committed rows only, every attribute, the schedule and the final datasets
if they were written; its status is ``complete`` if the source completed and
``failed`` otherwise, and ``recovered_from`` names the source.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from tracer.trace import schema
from tracer.trace.reader import Trace, open_trace
from tracer.trace.writer import TraceExistsError


def default_output(path: Path) -> Path:
    return path.with_name(f"{path.stem}.recovered{path.suffix or '.h5'}")


def recover(source: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> tuple[Path, dict[str, int]]:
    """Copy the committed part of ``source`` to ``out``; return the output path and the rows kept per series."""
    src_path = Path(source)
    out_path = Path(out) if out is not None else default_output(src_path)
    if out_path.resolve() == src_path.resolve():
        raise ValueError("--out must differ from the trace being recovered")
    if out_path.exists() and not overwrite:
        raise TraceExistsError(f"{out_path} exists; pass --overwrite to replace it")
    tmp = out_path.with_name(f".{out_path.name}.partial")
    with open_trace(src_path) as trace:
        status = "complete" if trace.status == "complete" else "failed"
        kept = _copy(trace, tmp, status)
    os.replace(tmp, out_path)
    return out_path, kept


def _copy(trace: Trace, tmp: Path, status: str) -> dict[str, int]:
    src = trace.file
    kept: dict[str, int] = {}
    with h5py.File(tmp, "w", libver="latest") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        dst.attrs[schema.ATTR_RECOVERED_FROM] = str(trace.path)
        dst.create_dataset(schema.STATUS, data=np.array(status.encode(), dtype=schema.STATUS_DTYPE))
        if schema.SCHEDULE in src:
            src.copy(src[schema.SCHEDULE], dst, name=schema.SCHEDULE)
        for name, item in src.items():
            if name in (schema.STATUS, schema.PROGRESS, schema.SCHEDULE) or not isinstance(item, h5py.Group):
                continue
            rows = trace.rows(name)
            kept[name] = rows
            group = dst.create_group(name)
            for field, ds in item.items():
                data = ds[:rows]
                chunks = (1, *ds.shape[1:]) if ds.ndim > 1 else None
                group.create_dataset(field, data=data, maxshape=(None, *ds.shape[1:]), chunks=chunks or True)
            dst.create_dataset(schema.progress_path(name), data=np.int64(rows))
        finals_written = trace.has_final()
        dst.create_dataset(schema.progress_path(schema.FINAL), data=np.int64(int(finals_written)))
        if finals_written:
            for name, item in src.items():
                if isinstance(item, h5py.Dataset) and name != schema.STATUS:
                    dst.create_dataset(name, data=item[()])
    return kept
