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
    batch, sample_shape = int(first.x_t.shape[0]), tuple(int(d) for d in first.x_t.shape[1:])
    series = steps_series(first, planned)
    finals = {schema.SAMPLES: ((batch, *sample_shape), schema.TENSOR), schema.LABELS: ((batch,), "int64")}
    with TraceWriter(
        path, kind="sampling", config=config, series=[series], schedule=schedule,
        tensor_dtype=tensor_dtype, overwrite=overwrite, attrs=attrs, finals=finals,
    ) as writer:
        for record in itertools.chain([first], iterator):
            writer.append(schema.STEPS, step_row(record))
            samples = record.x_prev
        label_array = np.full(batch, schema.NO_LABEL, dtype=np.int64) if labels is None else labels
        writer.write_final({schema.SAMPLES: samples, schema.LABELS: label_array})
    return samples

