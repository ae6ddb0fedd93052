"""Sampling with a trace: the samplers' records, a progress bar, and the trace writer, wired once.

Used by ``noisescope sample`` and ``noisescope demo``; the config written into
the trace is everything needed to know how the run was made, the sampler's options resolved
(every default filled in: docs/trace-format.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from tracer.models import prediction_type
from tracer.samplers.config import SamplerConfig
from tracer.samplers.loop import run
from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule
from tracer.trace.choice import EVERYTHING, RecordChoice
from tracer.trace.sampling import record_sampling


def record_run(
    model: Any,
    schedule: Schedule,
    config: SamplerConfig,
    *,
    x_T: torch.Tensor,  # noqa: N803
    labels: torch.Tensor | None,
    generator: torch.Generator | None,
    out: str | os.PathLike[str],
    tensor_dtype: str = "float32",
    overwrite: bool = False,
    extra_config: dict[str, Any] | None = None,
    progress: bool = True,
    records: Iterable[StepRecord] | None = None,
    choice: RecordChoice = EVERYTHING,
) -> torch.Tensor:
    """Sample with ``config`` from ``x_T`` and record its steps into ``out``; return the samples (the whole batch).

    ``choice`` (tracer/trace/choice.py) says which tensors, steps and samples the trace keeps (default: everything);
    tracer/trace/sampling.py applies it. An existing ``out`` (with ``overwrite``) is replaced only once the new trace
    is complete. ``records``, when given, are this run's records made elsewhere (the whole batch gathered from the
    processes that sampled its slices: tracer/sharding.py), recorded instead of running the sampler here.
    """
    planned = config.planned_steps(schedule.T, schedule.alpha_bar)
    if records is None:
        records = run(model, schedule, config, x_T, labels=labels, generator=generator)
    bar = tqdm(records, total=planned, desc=f"{config.sampler} -> {Path(out).name}", unit="step", disable=not progress, leave=False)
    trace_config = {"sampler": config.resolved(schedule.T, prediction_type(model), schedule.alpha_bar), **(extra_config or {})}
    with torch.no_grad():
        return record_sampling(
            bar,
            out,
            schedule=schedule,
            config=trace_config,
            planned=planned,
            labels=labels,
            tensor_dtype=tensor_dtype,
            overwrite=overwrite,
            attrs={"sampler": config.sampler},
            choice=choice,
        )
