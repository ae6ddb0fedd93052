"""The forward process: closed form q(x_t | x_0) (Eq. 4) against the step-by-step chain (Eq. 2)."""

from __future__ import annotations

import math

import torch

from tracer.forward import q_chain, q_sample
from tracer.samplers.prediction import predict_x0
from tracer.schedules import Schedule


def test_x0_recovered_from_q_sample_and_true_noise(schedule50: Schedule) -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(16, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.arange(16) * 3  # 0, 3, ..., 45
    x_t = q_sample(schedule50, x0, t, eps)
    for i in range(16):
        alpha_bar_t = float(schedule50.alpha_bar[t[i]])
        torch.testing.assert_close(predict_x0(x_t[i], eps[i], alpha_bar_t), x0[i], rtol=1e-12, atol=1e-12)


def _check_moments(x_t: torch.Tensor, x0_value: float, alpha_bar_t: float) -> None:
    """Sample mean and variance vs sqrt(alpha_bar_t) x0 and 1 - alpha_bar_t, within 5 standard errors."""
    n, var = x_t.numel(), 1.0 - alpha_bar_t
    assert abs(x_t.mean().item() - math.sqrt(alpha_bar_t) * x0_value) < 5 * math.sqrt(var / n)
    assert abs(x_t.var().item() - var) < 5 * var * math.sqrt(2.0 / (n - 1))


def test_chain_and_closed_form_agree_in_distribution(schedule50: Schedule) -> None:
    g = torch.Generator().manual_seed(1)
    x0_value, n = 0.7, 40_000
    x0 = torch.full((n,), x0_value, dtype=torch.float64)
    chain = q_chain(schedule50, x0, t_max=40, generator=g)  # chain[t + 1] is x_t at schedule index t
    for t in (0, 5, 20, 40):
        alpha_bar_t = float(schedule50.alpha_bar[t])
        _check_moments(chain[t + 1], x0_value, alpha_bar_t)
        eps = torch.randn(n, generator=g, dtype=torch.float64)
        _check_moments(q_sample(schedule50, x0, torch.full((n,), t), eps), x0_value, alpha_bar_t)
