"""``noisescope recover``: a clean copy of everything a trace committed.

A writer killed mid-run (SIGKILL, power loss, a full disk) leaves a file whose status
says ``running`` and whose datasets are sized for the planned rows. The copy is read
through the reader (tracer/trace/reader.py: only committed rows, every damage one
``TraceError`` line) and written by the trace writer, so it is an ordinary trace: the
committed rows, every root attribute, the schedule as stored, and the final datasets if
they were written. Its status is ``complete`` if the source completed and ``failed``
otherwise, and ``recovered_from`` names the source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tracer.schedules import Schedule
from tracer.trace import schema
from tracer.trace.reader import Trace, TraceError, open_trace
from tracer.trace.writer import Series, TraceExistsError, TraceWriter

# Attributes the writer sets itself from its arguments (the rest are copied as they are).
_WRITER_ATTRS = (schema.ATTR_FORMAT, schema.ATTR_SCHEMA_VERSION, schema.ATTR_KIND, schema.ATTR_CONFIG,
                 schema.ATTR_TENSOR_DTYPE, schema.ATTR_PLANNED, schema.ATTR_WRITER)


def default_output(path: Path) -> Path:
    name = path.name.removeprefix(".").removesuffix(".partial") if path.name.endswith(".partial") else path.name
    stem, suffix = os.path.splitext(name)
    return path.with_name(f"{stem}.recovered{suffix or '.h5'}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def recover(source: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> tuple[Path, dict[str, int]]:
    """Copy the committed part of ``source`` to ``out``; return the output path and the rows kept per series."""
    src_path = Path(source)
    out_path = Path(out) if out is not None else default_output(src_path)
    if _same_file(out_path, src_path):
        raise ValueError("--out must differ from the trace being recovered")
    if out_path.is_dir():
        raise ValueError(f"--out {out_path} is a directory; give a file name")
    if out_path.exists() and not overwrite:
        raise TraceExistsError(f"{out_path} exists; pass --overwrite to replace it")
    with open_trace(src_path) as trace:
        return out_path, _copy(trace, out_path, overwrite)


def _schedule(trace: Trace) -> Schedule | None:
    arrays = trace.schedule_arrays()
    if not all(name in arrays for name in schema.SCHEDULE_FIELDS):
        return None
    schedule = trace.schedule
    assert schedule is not None
    return Schedule(schedule.name, arrays["beta"], arrays["alpha"], arrays["alpha_bar"])  # as stored, not recomputed


def _copy(trace: Trace, out: Path, overwrite: bool) -> dict[str, int]:
    status: schema.Status = "complete" if trace.status == "complete" else "failed"
    kept = {name: trace.rows(name) for name in trace.series_names()}
    series = [Series(name, trace.field_specs(name), planned=kept[name]) for name in kept]
    attrs: dict[str, Any] = {k: v for k, v in trace.attrs.items() if k not in _WRITER_ATTRS}
    attrs[schema.ATTR_RECOVERED_FROM] = str(trace.path)
    finals = trace.root_specs()
    written = trace.has_final()
    if trace.kind == "sampling" and schema.STEPS not in kept:
        raise TraceError(f"{trace.path} has no committed steps series to recover")
    # Not live: the copy stays at its partial until it is whole, so a killed recover leaves no half copy under
    # the asked name, and it replaces an existing --out whatever the source's status.
    with TraceWriter(out, kind=trace.kind, config=trace.config, series=series, schedule=_schedule(trace),
                     tensor_dtype=trace.tensor_dtype, overwrite=overwrite, attrs=attrs, finals=finals, live=False) as writer:
        for name, rows in kept.items():
            scalars = trace.scalars(name)
            tensors = trace.tensor_names(name)
            dtypes = {field: dtype for field, (_, dtype) in trace.field_specs(name).items()}
            for i in range(rows):  # one row at a time: a trace never has to fit in memory
                row: dict[str, Any] = {field: values[i] for field, values in scalars.items()}
                row.update({field: trace.tensor(field, i, name, dtype=dtypes[field]) for field in tensors})
                writer.append(name, row)
        if written:
            arrays = {name: trace.final(name) for name in finals}
            writer.write_final({name: value for name, value in arrays.items() if value is not None})
        writer.close(status, replace=True)
    return kept
