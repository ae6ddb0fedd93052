"""The forward (noising) process of Ho et al. 2020.

- ``q_sample``: the closed form q(x_t | x_0), Eq. 4:
  x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
- ``q_step``: one step of the Markov chain q(x_t | x_{t-1}), Eq. 2:
  x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps.
- ``q_chain``: x_0 pushed through the chain step by step, every x_t kept.

Both routes give the same distribution of x_t; tests/test_forward.py checks it.

Flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2023), the convention of SD3 (Esser et al. 2024):

- ``flow_sample``: x_t = (1 - t) x_0 + t eps, t in [0, 1] (t = 0 data, t = 1 noise);
- ``flow_velocity``: the network's target, the path's velocity dx_t/dt = eps - x_0.
"""

from __future__ import annotations

import torch

from tracer.schedules import Schedule


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a [B] vector so it broadcasts over a [B, *D] batch."""
    return values.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps  (Ho et al. 2020, Eq. 4)."""
    alpha_bar = torch.tensor(schedule.alpha_bar, dtype=torch.float64, device=x0.device)[t]  # a copy: the array is read-only
    return _per_sample(alpha_bar.sqrt(), x0) * x0 + _per_sample((1 - alpha_bar).sqrt(), x0) * eps


def training_target(prediction: str, schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """What a network of this prediction type regresses on: eps (Ho et al. 2020, Eq. 14), x0, or
    v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0 (Salimans and Ho 2022, Sec. 4)."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    alpha_bar = torch.tensor(schedule.alpha_bar, dtype=torch.float64, device=x0.device)[t]
    return _per_sample(alpha_bar.sqrt(), x0) * eps - _per_sample((1 - alpha_bar).sqrt(), x0) * x0  # v


def q_step(schedule: Schedule, x_prev: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps  (Ho et al. 2020, Eq. 2)."""
    return float(schedule.alpha[t]) ** 0.5 * x_prev + float(schedule.beta[t]) ** 0.5 * eps


def q_chain(schedule: Schedule, x0: torch.Tensor, t_max: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """[x_0, x_1, ..., x_{t_max+1}]: the chain run step by step, schedule indices 0..t_max."""
    xs = [x0]
    for t in range(t_max + 1):
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        xs.append(q_step(schedule, xs[-1], t, eps))
    return xs


def flow_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps, t per sample in [0, 1]  (Lipman et al. 2023, Eq. 20 with sigma_min = 0; Liu et al. 2023, Eq. 1)."""
    tt = _per_sample(t, x0)
    return (1.0 - tt) * x0 + tt * eps


def flow_velocity(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """v = dx_t / dt = eps - x_0: what a flow network regresses on  (Lipman et al. 2023, Eq. 23; Liu et al. 2023, Eq. 1)."""
    return eps - x0
