"""Recording a sampling run: StepRecords in, a sampling trace out.

The sampler is a generator of ``StepRecord``s; recording is one more consumer
(DESIGN.md). ``record_sampling`` writes each record as one committed row of
the series ``steps`` and the last step's output as ``samples``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule
from tracer.trace import schema
from tracer.trace.writer import Series, TraceWriter


def steps_series(sample_shape: tuple[int, ...], batch: int, planned: int, *, guided: bool, clipped: bool) -> Series:
    """The ``steps`` series: every scalar of STEP_SCALARS and the tensors this run produces."""
    fields: dict[str, tuple[tuple[int, ...], str]] = {name: ((), dtype) for name, dtype in schema.STEP_SCALARS.items()}
    tensors = list(schema.STEP_TENSORS)
    if guided:
        tensors += ["eps_cond", "eps_uncond"]
    if clipped:
        tensors.append("x0_pred_raw")
    for name in tensors:
        fields[name] = ((batch, *sample_shape), schema.TENSOR)
    return Series(schema.STEPS, fields, planned=planned)


def step_row(record: StepRecord) -> dict[str, Any]:
    """One trace row from one record: the same names on both sides."""
    row: dict[str, Any] = {name: getattr(record, name) for name in schema.STEP_SCALARS}
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
    x_T: torch.Tensor,  # noqa: N803
    labels: torch.Tensor | None,
    guided: bool,
    clipped: bool,
    tensor_dtype: str = "float32",
    overwrite: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Consume ``records`` into a trace at ``path``; return the final samples.

    The trace is complete when the records run out, failed if they raise
    (every step committed before the error stays readable).
    """
    batch, sample_shape = int(x_T.shape[0]), tuple(int(d) for d in x_T.shape[1:])
    series = steps_series(sample_shape, batch, planned, guided=guided, clipped=clipped)
    finals = {schema.SAMPLES: ((batch, *sample_shape), schema.TENSOR), schema.LABELS: ((batch,), "int64")}
    samples = x_T
    with TraceWriter(
        path, kind="sampling", config=config, series=[series], schedule=schedule,
        tensor_dtype=tensor_dtype, overwrite=overwrite, attrs=attrs, finals=finals,
    ) as writer:
        for record in records:
            writer.append(schema.STEPS, step_row(record))
            samples = record.x_prev
        label_array = np.full(batch, schema.NO_LABEL, dtype=np.int64) if labels is None else labels
        writer.write_final({schema.SAMPLES: samples, schema.LABELS: label_array})
    return samples

