"""Recording a sampling run: StepRecords in, a sampling trace out.

The sampler is a generator of ``StepRecord``s; recording is one more consumer
(docs/trace-format.md). ``record_sampling`` writes each record as one committed row of
the series ``steps`` and the last step's output as ``samples``.

What is recorded (tracer/trace/choice.py: ``RecordChoice``, ``noisescope sample --record,
--every, --samples``) is applied here and nowhere else, to full-batch records whoever made
them (our sampler loop, or several processes' rows gathered on one): ``step_row`` keeps the
chosen tensors of the chosen batch rows, and ``SamplingRecorder`` the chosen steps.
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
from tracer.trace.choice import EVERYTHING, RecordChoice
from tracer.trace.rows import RowTrace, TraceStart


def step_row(record: StepRecord, choice: RecordChoice = EVERYTHING, rows: range | None = None) -> dict[str, Any]:
    """One trace row from one record: the same names on both sides. ``choice`` says which tensors are kept
    (x_prev and steps/index too where it skips steps) and ``rows`` which rows of the batch (default: all)."""
    row: dict[str, Any] = {name: getattr(record, name) for name in schema.STEP_SCALARS}
    row.update({name: value for name in schema.OPTIONAL_STEP_SCALARS if (value := getattr(record, name)) is not None})
    if choice.skips:
        row[schema.STEP_INDEX] = record.index
    for name in (*schema.STEP_TENSORS, *schema.OPTIONAL_STEP_TENSORS, schema.X_PREV):
        if not choice.keeps_tensor(name):
            continue
        value = getattr(record, name)
        if value is not None:
            row[name] = _rows(value, rows)
    return row


def _rows(value: torch.Tensor, rows: range | None) -> torch.Tensor:
    """The kept rows of a [B, *D] tensor (a view: the writer copies it to the host)."""
    if rows is None or (rows.start == 0 and rows.step == 1 and rows.stop >= value.shape[0]):
        return value
    return value[rows.start : rows.stop : rows.step]


class SamplingRecorder:
    """A sampling trace written one ``StepRecord`` at a time, for callers that push records (an adapter seeing another
    library's steps one by one): tracer/trace/rows.py's RowTrace, fed our records' rows. Created at the first record,
    complete on ``close()``, failed on ``close("failed")``; every record appended and kept is committed (a crash keeps
    them). ``choice`` (tracer/trace/choice.py) says what is kept: the first record, and then, of a choice that skips
    steps, the records whose index is a multiple of ``every`` or the last planned one; the last record appended is
    written at a complete close if it was not (so the last step is always there, planned or not).
    ``record_sampling`` is the same for an iterable."""

    def __init__(self, path: str | os.PathLike[str], *, schedule: Schedule, config: Mapping[str, Any], planned: int,
                 labels: torch.Tensor | None = None, tensor_dtype: str = "float32", overwrite: bool = False,
                 attrs: Mapping[str, Any] | None = None, choice: RecordChoice = EVERYTHING) -> None:
        self.trace = RowTrace(path, tensor_dtype=tensor_dtype, overwrite=overwrite)
        self.schedule, self.config, self.planned, self.attrs, self.labels = schedule, dict(config), planned, dict(attrs or {}), labels
        self.choice = choice
        self.rows: range | None = None  # the batch rows kept, known at the first record
        self._batch = 0  # the run's batch, known at the first record
        self._left_out: tuple[str, ...] = ()  # the tensors the sampler yields that the choice does not keep
        self.samples: torch.Tensor | None = None
        self._held: StepRecord | None = None  # the last record appended, not written (its step is skipped so far)

    def _start(self) -> TraceStart:
        """How to create the trace, at the first record: with the choice in its attributes and config unless it is everything."""
        assert self.rows is not None
        config, attrs = dict(self.config), dict(self.attrs)
        labels = self.labels
        if not self.choice.everything:
            recorded = self.choice.to_json(self._batch, self._left_out, self.planned)
            config["record"] = recorded
            attrs[schema.ATTR_RECORD] = recorded
            if labels is not None:
                labels = labels[self.rows.start : self.rows.stop : self.rows.step]
        return TraceStart(self.schedule, config, self.choice.kept_steps(self.planned), attrs, labels)  # the rows planned

    def append(self, record: StepRecord) -> None:
        if self.rows is None:
            self._batch = int(record.x_t.shape[0])
            self.rows = self.choice.rows(self._batch)  # a range outside the batch: ConfigError, before the file exists
            self._left_out = tuple(name for name in (*schema.STEP_TENSORS, *schema.OPTIONAL_STEP_TENSORS)
                                   if getattr(record, name) is not None and not self.choice.keeps_tensor(name))
            first = True
        else:
            first = False
        self.samples = record.x_prev  # our rows carry no x_prev unless steps are skipped: the samples are the last record's
        if first or self.choice.keeps_step(record.index, self.planned):
            self._write(record)
        else:
            self._held = record

    def _write(self, record: StepRecord) -> None:
        self.trace.append(step_row(record, self.choice, self.rows), self._start)
        self.trace.last = _rows(record.x_prev, self.rows)
        self._held = None

    def close(self, status: schema.Status = "complete") -> None:
        """The final samples and labels if complete, the status, closed. No record: no trace."""
        if status == "complete" and self._held is not None and not self.trace.closed:
            try:
                self._write(self._held)  # the last step, whatever the plan said
            except BaseException:
                self.trace.close("failed")
                raise
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
    choice: RecordChoice = EVERYTHING,
) -> torch.Tensor:
    """Consume ``records`` into a trace at ``path``; return the final samples.

    The trace is complete when the records run out, failed if they raise
    (every step committed before the error stays readable; a full disk raises
    DiskFullError with one line). With ``overwrite`` an existing trace at
    ``path`` is replaced only by a complete one (tracer/trace/writer.py). Which
    optional tensors (eps_cond, eps_uncond, x0_pred_raw) the trace holds follows
    the first record; which tensors, steps and batch rows are kept, ``choice`` (tracer/trace/choice.py).
    The samples returned are the whole batch's, whatever ``choice`` keeps.
    """
    iterator = iter(records)
    first = next(iterator, None)
    if first is None:
        raise ValueError("the sampler produced no steps")
    recorder = SamplingRecorder(path, schedule=schedule, config=config, planned=planned, labels=labels, tensor_dtype=tensor_dtype,
                                overwrite=overwrite, attrs=attrs, choice=choice)
    try:
        for record in itertools.chain([first], iterator):
            recorder.append(record)
    except BaseException:
        recorder.close("failed")
        raise
    recorder.close()
    assert recorder.samples is not None
    return recorder.samples

