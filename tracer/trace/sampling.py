"""Recording a sampling run: StepRecords in, a sampling trace out.

The sampler is a generator of ``StepRecord``s; recording is one more consumer
(docs/trace-format.md). ``record_sampling`` writes each record as one committed row of
the series ``steps`` and the last step's output as ``samples``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule
from tracer.trace import schema
from tracer.trace.writer import Series, TraceWriter


def steps_series(first: StepRecord, planned: int) -> Series:
    """The ``steps`` series: every scalar of STEP_SCALARS, and the optional scalars and tensors the run's first record carries."""
    fields: dict[str, tuple[tuple[int, ...], str]] = {name: ((), dtype) for name, dtype in schema.STEP_SCALARS.items()}
    fields.update({name: ((), dtype) for name, dtype in schema.OPTIONAL_STEP_SCALARS.items() if getattr(first, name) is not None})
    for name in (*schema.STEP_TENSORS, *schema.OPTIONAL_STEP_TENSORS):
        value = getattr(first, name)
        if value is not None:
            fields[name] = (tuple(int(d) for d in value.shape), schema.TENSOR)
    return Series(schema.STEPS, fields, planned=planned)


def step_row(record: StepRecord) -> dict[str, Any]:
    """One trace row from one record: the same names on both sides."""
    row: dict[str, Any] = {name: getattr(record, name) for name in schema.STEP_SCALARS}
    row.update({name: value for name in schema.OPTIONAL_STEP_SCALARS if (value := getattr(record, name)) is not None})
    for name in (*schema.STEP_TENSORS, *schema.OPTIONAL_STEP_TENSORS):
        value = getattr(record, name)
        if value is not None:
            row[name] = value
    return row


class SamplingRecorder:
    """A sampling trace written one ``StepRecord`` at a time, for callers that push records (an adapter seeing another
    library's steps one by one): created at the first record, complete on ``close()``, failed on ``close("failed")``.
    Every record appended is committed: a crash keeps them readable. ``record_sampling`` is the same for an iterable."""

    def __init__(self, path: str | os.PathLike[str], *, schedule: Schedule, config: Mapping[str, Any], planned: int,
                 labels: torch.Tensor | None = None, tensor_dtype: str = "float32", overwrite: bool = False,
                 attrs: Mapping[str, Any] | None = None) -> None:
        self.path, self.schedule, self.config, self.planned = path, schedule, config, planned
        self.labels, self.tensor_dtype, self.overwrite, self.attrs = labels, tensor_dtype, overwrite, attrs
        self.writer: TraceWriter | None = None
        self.samples: torch.Tensor | None = None
        self.closed = False

    def append(self, record: StepRecord) -> None:
        if self.closed:
            raise RuntimeError(f"the trace {self.path} is closed; record a new run into a new trace")
        if self.writer is None:
            batch, sample_shape = int(record.x_t.shape[0]), tuple(int(d) for d in record.x_t.shape[1:])
            finals = {schema.SAMPLES: ((batch, *sample_shape), schema.TENSOR), schema.LABELS: ((batch,), "int64")}
            self.writer = TraceWriter(
                self.path, kind="sampling", config=self.config, series=[steps_series(record, self.planned)], schedule=self.schedule,
                tensor_dtype=self.tensor_dtype, overwrite=self.overwrite, attrs=self.attrs, finals=finals,
            )
        self.writer.append(schema.STEPS, step_row(record))
        self.samples = record.x_prev

    def close(self, status: schema.Status = "complete") -> None:
        """Write the final samples (the last record's x_prev) and labels if complete, set the status, close. No record: no trace."""
        if self.closed:
            return
        self.closed = True
        if self.writer is None:
            return
        try:
            if status == "complete" and self.samples is not None:
                batch = int(self.samples.shape[0])
                labels = np.full(batch, schema.NO_LABEL, dtype=np.int64) if self.labels is None else self.labels
                self.writer.write_final({schema.SAMPLES: self.samples, schema.LABELS: labels})
        except BaseException:
            self.writer.close("failed")
            raise
        self.writer.close(status)


def record_sampling(
    records: Iterable[StepRecord],
    path: str | os.PathLike[str],
    *,
    schedule: Schedule,
    config: Mapping[str, Any],
    planned: int,
    labels: torch.Tensor | None,
    tensor_dtype: str = "float32",
    overwrite: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Consume ``records`` into a trace at ``path``; return the final samples.

    The trace is complete when the records run out, failed if they raise
    (every step committed before the error stays readable; a full disk raises
    DiskFullError with one line). With ``overwrite`` an existing trace at
    ``path`` is replaced only by a complete one (tracer/trace/writer.py). Which
    optional tensors (eps_cond, eps_uncond, x0_pred_raw) the trace holds follows
    the first record.
    """
    iterator = iter(records)
    first = next(iterator, None)
    if first is None:
        raise ValueError("the sampler produced no steps")
    recorder = SamplingRecorder(path, schedule=schedule, config=config, planned=planned, labels=labels, tensor_dtype=tensor_dtype,
                                overwrite=overwrite, attrs=attrs)
    try:
        for record in itertools.chain([first], iterator):
            recorder.append(record)
    except BaseException:
        recorder.close("failed")
        raise
    recorder.close()
    assert recorder.samples is not None
    return recorder.samples

