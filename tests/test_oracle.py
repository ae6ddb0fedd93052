"""Samplers against exact noise predictors for Gaussian data (tracer/models/analytic.py).

For data N(mu, s^2 I) and the exact eps prediction, every DDPM and DDIM step is affine in
y_t = x_t - sqrt(alpha_bar_t) mu: with v_t = alpha_bar_t s^2 + 1 - alpha_bar_t,

    x0_pred - mu = sqrt(alpha_bar_t) s^2 y_t / v_t,
    DDPM:   y_prev = (c0 sqrt(alpha_bar_t) s^2 / v_t + c_t) y_t + sigma z   (c0, c_t: Eq. 7 coefficients)
    DDIM:   y_prev = (sqrt(alpha_bar_prev alpha_bar_t) s^2 + sqrt((1 - alpha_bar_prev)(1 - alpha_bar_t))) / v_t * y_t

so the output's mean and variance follow from a float64 recursion over the plan. That
recursion is the exact law of the discretised sampler: the samples must match it within a
few standard errors, and it differs from N(mu, s^2) by the discretisation error, the
allowance used when comparing with the data distribution.
"""

from __future__ import annotations

import math

import pytest
import torch

from tracer.forward import q_sample
from tracer.models.analytic import GaussianOracle
from tracer.samplers import ddim, ddpm, initial_noise
from tracer.samplers.timesteps import ddim_timesteps, plan
from tracer.schedules import Schedule, make_schedule


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _ddpm_law(schedule: Schedule, s: float) -> tuple[float, float]:
    """(R, variance) with y_final = R y_T + noise of that variance, for DDPM with beta_tilde."""
    gain, var = 1.0, 1.0
    for t in range(schedule.T - 1, -1, -1):
        ab, abp, a, b = float(schedule.alpha_bar[t]), schedule.alpha_bar_at(t - 1), float(schedule.alpha[t]), float(schedule.beta[t])
        v = ab * s * s + 1 - ab
        r = math.sqrt(abp) * b / (1 - ab) * math.sqrt(ab) * s * s / v + math.sqrt(a) * (1 - abp) / (1 - ab)
        sigma2 = 0.0 if t == 0 else (1 - abp) / (1 - ab) * b
        gain, var = r * gain, r * r * var + sigma2
    return gain, var


def _ddim_gain(schedule: Schedule, s: float, pairs: list[tuple[int, int]]) -> float:
    """R with y_final = R y_T for DDIM with eta = 0."""
    gain = 1.0
    for t, t_prev in pairs:
        ab, abp = float(schedule.alpha_bar[t]), schedule.alpha_bar_at(t_prev)
        gain *= (math.sqrt(abp * ab) * s * s + math.sqrt((1 - abp) * (1 - ab))) / (ab * s * s + 1 - ab)
    return gain


def _check_lands_on(samples: torch.Tensor, mu: torch.Tensor, s: float, law_mean: torch.Tensor, law_std: float) -> None:
    n = samples.shape[0]
    se_mean, se_std = law_std / math.sqrt(n), law_std / math.sqrt(2 * samples.numel())
    # 1. the samples follow the discretised sampler's exact law
    assert torch.all((samples.mean(0) - law_mean).abs() < 5 * se_mean)
    assert abs(samples.std(0).mean().item() - law_std) < 5 * se_std
    # 2. ... which is N(mu, s^2) up to a small discretisation allowance
    allowance_mean, allowance_std = (law_mean - mu).abs(), abs(law_std - s)
    assert allowance_std < 0.03 * s and torch.all(allowance_mean < 0.01)
    assert torch.all((samples.mean(0) - mu).abs() < 5 * se_mean + allowance_mean)
    assert abs(samples.std(0).mean().item() - s) < 5 * se_std + allowance_std


def test_oracle_is_the_conditional_mean_of_eps() -> None:
    # E[(eps - eps_theta(x_t)) g(x_t)] = 0 for every g: check g = 1, x_t, tanh(3 x_t) within 5 standard errors
    schedule = make_schedule("linear", 100)
    means = torch.tensor([[0.7, 0.2], [-0.6, -0.4]], dtype=torch.float64)
    oracle = GaussianOracle(schedule, means, 0.25, per_class=True)
    g, n = torch.Generator().manual_seed(0), 50_000
    y = torch.randint(0, 2, (n,), generator=g)
    x0 = means[y] + 0.25 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    for t in (5, 30, 70):
        eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
        x_t = q_sample(schedule, x0, torch.full((n,), t), eps)
        for labels in (y, None):  # the class-conditional and the mixture (unconditional) prediction
            residual = eps - oracle(x_t, torch.full((n,), t), labels)
            for feature in (torch.ones_like(x_t), x_t, torch.tanh(3 * x_t)):
                products = residual * feature
                assert torch.all(products.mean(0).abs() < 5 * products.std(0) / math.sqrt(n))
    # the null label is the unconditional prediction
    t_batch = torch.full((n,), 30)
    torch.testing.assert_close(oracle(x_t, t_batch, torch.full((n,), 2)), oracle(x_t, t_batch, None))


def test_ddim_eta0_is_the_exact_affine_map(class_oracle50: GaussianOracle, schedule50: Schedule) -> None:
    # per class y: x_final - mu_y = R (x_T - sqrt(alpha_bar_first) mu_y), sample by sample
    s, means = class_oracle50.std, class_oracle50.means
    x_T = initial_noise((10, 2), torch.Generator().manual_seed(0), dtype=torch.float64)  # noqa: N806
    labels = torch.tensor([0, 1] * 5)
    for spacing in ("leading", "trailing"):
        ts = ddim_timesteps(schedule50.T, 12, spacing)
        *_, last = ddim.sample(class_oracle50, schedule50, x_T, steps=12, spacing=spacing, labels=labels)
        gain, mu = _ddim_gain(schedule50, s, plan(ts, schedule50.T)), means[labels]
        expected = mu + gain * (x_T - math.sqrt(schedule50.alpha_bar[ts[0]]) * mu)
        torch.testing.assert_close(last.x_prev, expected, rtol=1e-10, atol=1e-10)


def test_ddpm_all_steps_lands_on_the_data_distribution() -> None:
    schedule, s, n = make_schedule("linear", 500), 0.5, 20_000
    mu = torch.tensor([0.5, -0.3], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x_T = initial_noise((n, 2), g, dtype=torch.float64)  # noqa: N806
    *_, last = ddpm.sample(GaussianOracle(schedule, mu, s), schedule, x_T, clip=False, generator=g)
    gain, var = _ddpm_law(schedule, s)
    law_mean = mu - gain * math.sqrt(schedule.alpha_bar[-1]) * mu  # E[y_T] = -sqrt(alpha_bar_{T-1}) mu
    _check_lands_on(last.x_prev, mu, s, law_mean, math.sqrt(var))


def test_ddim_100_steps_lands_on_the_data_distribution() -> None:
    schedule, s, n = make_schedule("linear", 1000), 0.5, 20_000
    mu = torch.tensor([0.5, -0.3], dtype=torch.float64)
    x_T = initial_noise((n, 2), torch.Generator().manual_seed(1), dtype=torch.float64)  # noqa: N806
    *_, last = ddim.sample(GaussianOracle(schedule, mu, s), schedule, x_T, steps=100)
    ts = ddim_timesteps(1000, 100, "leading")
    gain = _ddim_gain(schedule, s, plan(ts, 1000))
    law_mean = mu - gain * math.sqrt(schedule.alpha_bar[ts[0]]) * mu
    _check_lands_on(last.x_prev, mu, s, law_mean, gain)


def test_unconditional_sampling_of_a_mixture_finds_both_classes(class_oracle50: GaussianOracle, schedule50: Schedule) -> None:
    n, means = 4000, class_oracle50.means
    x_T = initial_noise((n, 2), torch.Generator().manual_seed(2), dtype=torch.float64)  # noqa: N806
    *_, last = ddim.sample(class_oracle50, schedule50, x_T, steps=50)  # labels None: the equal-weight mixture
    nearest = torch.cdist(last.x_prev, means).argmin(1)
    share = nearest.double().mean().item()
    assert abs(share - 0.5) < 5 * 0.5 / math.sqrt(n)
    for k in range(2):  # the clusters sit on the class means (separation 1.2, std 0.2)
        assert torch.all((last.x_prev[nearest == k].mean(0) - means[k]).abs() < 0.05)
