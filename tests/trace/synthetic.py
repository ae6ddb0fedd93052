"""Synthetic step records with known values, for trace tests that need no sampler."""

from __future__ import annotations

import torch

from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule


def records(schedule: Schedule, steps: int, batch: int = 3, shape: tuple[int, ...] = (1, 4, 4), *, guided: bool = False, seed: int = 0):
    """A deterministic chain of records: step i's x_prev is step i+1's x_t, every value distinct."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=g)
    ts = list(range(steps - 1, -1, -1))
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < steps else -1
        ab_t, ab_prev = schedule.alpha_bar_at(t), schedule.alpha_bar_at(t_prev)
        eps = torch.randn(batch, *shape, generator=g)
        x0 = (x - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5
        noise = torch.randn(batch, *shape, generator=g)
        x_prev = ab_prev**0.5 * x0 + (1 - ab_prev) ** 0.5 * eps
        extra = {"eps_cond": eps + 1, "eps_uncond": eps - 1} if guided else {}
        yield StepRecord(
            index=i, t=t, t_prev=t_prev, alpha_bar_t=ab_t, alpha_bar_prev=ab_prev, alpha_t=ab_t / ab_prev,
            beta_t=1 - ab_t / ab_prev, sigma=0.0, x_t=x, eps=eps, x0_pred=x0, noise=noise, x_prev=x_prev, **extra,
        )
        x = x_prev
