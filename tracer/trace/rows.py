"""A sampling trace written from rows handed over one step at a time: for loops noisescope does not run itself.

Our own samplers yield ``StepRecord``s (tracer/trace/sampling.py writes them). A loop written
elsewhere (a diffusers scheduler, tracer/integrations/diffusers.py; a user's own loop through
the recording API, tracer/recorder.py) hands over one row of the ``steps`` series per step
instead, named by the schema's field table. ``RowTrace`` turns those rows into the same
crash-safe trace (tracer/trace/writer.py):

- the file is created at the first row, when the shapes are known (every dataset of an SWMR
  file must exist before its first row), with the fields that row holds, each with the dtype
  the schema gives it;
- every row is one committed step (a killed or failed run keeps every committed step);
- on a ``complete`` close the last row's ``x_prev`` becomes ``samples`` (with the labels);
  a run that records no ``x_prev`` has no ``samples``, and ``noisescope check`` says that its
  last step's update is not judged. Nothing is written if no row came.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tracer.schedules import Schedule
from tracer.trace import schema
from tracer.trace.writer import Series, TraceExistsError, TraceWriter


@dataclass(frozen=True)
class TraceStart:
    """What creating a trace needs beyond its first row: the schedule, the config, the planned steps, root attributes."""

    schedule: Schedule
    config: dict[str, Any]
    planned: int
    attrs: dict[str, Any]
    labels: Any = None  # [B] int64 class labels written with the samples; None: unconditional (-1)


def row_fields(row: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (row shape, dtype)}`` of a row of ``steps``: every name the schema's, with the schema's dtype (KeyError otherwise)."""
    fields: dict[str, tuple[tuple[int, ...], str]] = {}
    for name, value in row.items():
        spec = schema.field(schema.STEPS, name)
        fields[name] = (tuple(int(d) for d in value.shape) if spec.dtype == schema.TENSOR else (), spec.dtype)
    return fields


class RowTrace:
    """The trace of one run at ``path``, created at the first row (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, tensor_dtype: str = "float32", overwrite: bool = False,
                 config: Mapping[str, Any] | None = None) -> None:
        if tensor_dtype not in schema.TENSOR_DTYPES:
            raise ValueError(f"unknown tensor dtype {tensor_dtype!r}; choose float32 or float16")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise TraceExistsError(f"{path} exists; pass overwrite=True to replace it")
        self.tensor_dtype = tensor_dtype
        self.overwrite = overwrite
        self.extra_config = dict(config or {})
        self.writer: TraceWriter | None = None
        self.last: Any = None  # the last committed row's x_prev
        self.labels: Any = None
        self.closed = False

    @property
    def rows(self) -> int:
        """Steps committed so far."""
        return 0 if self.writer is None else self.writer.rows[schema.STEPS]

    def append(self, row: Mapping[str, Any], begin: Callable[[], TraceStart]) -> None:
        """Write and commit one step; ``begin`` says how to create the trace, and is called only for the first step."""
        if self.closed:
            raise RuntimeError(f"the trace {self.path} is closed; record a new run into a new trace")
        if self.writer is None:
            start = begin()
            x_t = row["x_t"]
            batch = int(x_t.shape[0])
            finals = {schema.SAMPLES: (tuple(int(d) for d in x_t.shape), schema.TENSOR), schema.LABELS: ((batch,), "int64")}
            self.labels = start.labels
            self.writer = TraceWriter(
                self.path, kind="sampling", config={**start.config, **self.extra_config},
                series=[Series(schema.STEPS, row_fields(row), planned=start.planned)], schedule=start.schedule,
                tensor_dtype=self.tensor_dtype, overwrite=self.overwrite, attrs=start.attrs, finals=finals,
            )
        self.writer.append(schema.STEPS, row)
        self.last = row.get(schema.X_PREV)

    def close(self, status: schema.Status) -> None:
        """Finish the trace: on ``complete``, the last x_prev written as ``samples`` with the labels; then the status."""
        if self.closed:
            return
        self.closed = True
        if self.writer is None:
            return  # no step ran: no trace
        try:
            if self.last is not None and status == "complete":
                batch = int(self.last.shape[0])
                labels = np.full(batch, schema.NO_LABEL, dtype=np.int64) if self.labels is None else self.labels
                self.writer.write_final({schema.SAMPLES: self.last, schema.LABELS: labels})
        except BaseException:
            self.writer.close("failed")  # no samples written: not a complete trace
            raise
        self.writer.close(status)
