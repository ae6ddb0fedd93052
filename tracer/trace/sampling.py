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

import torch

from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule
from tracer.trace import schema
from tracer.trace.rows import RowTrace, TraceStart


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
    library's steps one by one): tracer/trace/rows.py's RowTrace, fed our records' rows. Created at the first record,
    complete on ``close()``, failed on ``close("failed")``; every record appended is committed (a crash keeps them).
    ``record_sampling`` is the same for an iterable."""

    def __init__(self, path: str | os.PathLike[str], *, schedule: Schedule, config: Mapping[str, Any], planned: int,
                 labels: torch.Tensor | None = None, tensor_dtype: str = "float32", overwrite: bool = False,
                 attrs: Mapping[str, Any] | None = None) -> None:
        self.trace = RowTrace(path, tensor_dtype=tensor_dtype, overwrite=overwrite)
        self.start = TraceStart(schedule, dict(config), planned, dict(attrs or {}), labels)
        self.samples: torch.Tensor | None = None

    def append(self, record: StepRecord) -> None:
        self.trace.append(step_row(record), lambda: self.start)
        self.trace.last = self.samples = record.x_prev  # our rows carry no x_prev: the samples are the last record's

    def close(self, status: schema.Status = "complete") -> None:
        """The final samples and labels if complete, the status, closed. No record: no trace."""
        self.trace.close(status)


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

