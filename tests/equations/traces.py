"""Sampling traces of noisescope's own samplers for the equation tests, made with the exact Gaussian oracle.

The oracle (tracer/models/analytic.py) needs no training, so a trace takes milliseconds: a
linear schedule of T = 40 steps, a batch of 4 two-dimensional samples, two classes.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from tracer.samplers.config import SamplerConfig
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.schedules import Schedule, make_schedule

T = 40
LABELS = torch.tensor([0, 1, 0, 1])


def oracle(schedule: Schedule) -> GaussianOracle:
    """Class-conditional oracle, K = 2 (null label 2): data N(mu_y, 0.3^2 I) with means inside [-1, 1]."""
    return GaussianOracle(schedule, torch.tensor([[0.6, 0.4], [-0.5, -0.2]]), 0.3, per_class=True)


def record(path: Path, config: SamplerConfig, *, dtype: str = "float32", schedule: Schedule | None = None, seed: int = 0) -> Path:
    """Sample with ``config`` from the oracle and record the run into ``path``."""
    schedule = schedule or make_schedule("linear", T)
    generator = torch.Generator().manual_seed(seed)
    x_T = torch.randn(len(LABELS), 2, generator=generator)  # noqa: N806
    labels = LABELS if config.guidance is not None else None
    record_run(oracle(schedule), schedule, config, x_T=x_T, labels=labels, generator=generator, out=path, tensor_dtype=dtype,
               overwrite=True, progress=False)
    return path


def edit(path: Path, name: str, step: int, delta: float) -> None:
    """Add ``delta`` to every element of tensor ``steps/name`` at one step (a deliberately broken trace)."""
    with h5py.File(path, "r+") as f:
        ds = f[f"steps/{name}"]
        ds[step] = np.asarray(ds[step], dtype=np.float64) + delta


def set_scalar(path: Path, name: str, step: int, value: float) -> None:
    with h5py.File(path, "r+") as f:
        f[f"steps/{name}"][step] = value
