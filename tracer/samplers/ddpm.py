"""DDPM ancestral sampling: Ho et al. 2020, Algorithm 2, with the posterior of Eq. 6-7.

Every step t = T-1, ..., 0 (0-based schedule indices) predicts the noise, turns it
into a clean-sample estimate (Eq. 15),

    x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t),

optionally clipped to [-1, 1], and samples x_{t-1} from the posterior q(x_{t-1} | x_t, x0_pred):

    mu    = sqrt(alpha_bar_prev) beta_t / (1 - alpha_bar_t) x0_pred
          + sqrt(alpha_t) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t          (Eq. 7)
    sigma^2 = beta_t, or beta_tilde_t = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta_t  (Sec. 3.2)
    x_{t-1} = mu + sigma z,   z ~ N(0, I), and z = 0 at the last step.

Scalars are Python floats computed in float64 from the schedule; tensors stay on x_T's device and dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal, get_args

import torch

from tracer.config import ConfigError
from tracer.models import NoisePredictor
from tracer.samplers.guidance import check_guidance, predict
from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule

Variance = Literal["beta_tilde", "beta"]
VARIANCES: tuple[str, ...] = get_args(Variance)


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float) -> torch.Tensor:
    """x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)  (Ho et al. 2020, Eq. 15)."""
    return (x_t - math.sqrt(1.0 - alpha_bar_t) * eps) / math.sqrt(alpha_bar_t)


def clip_x0(x0_pred_raw: torch.Tensor) -> torch.Tensor:
    """x0_pred = clip(x0_pred_raw, -1, 1): the data range, images being scaled to [-1, 1] (Ho et al. 2020, Sec. 3.3)."""
    return x0_pred_raw.clamp(-1.0, 1.0)


def posterior_mean(
    x0_pred: torch.Tensor, x_t: torch.Tensor, alpha_bar_t: float, alpha_bar_prev: float, alpha_t: float, beta_t: float
) -> torch.Tensor:
    """mu = sqrt(alpha_bar_prev) beta_t / (1 - alpha_bar_t) x0 + sqrt(alpha_t) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t  (Eq. 7)."""
    coef_x0 = math.sqrt(alpha_bar_prev) * beta_t / (1.0 - alpha_bar_t)
    coef_xt = math.sqrt(alpha_t) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)
    return coef_x0 * x0_pred + coef_xt * x_t


def posterior_sigma(alpha_bar_t: float, alpha_bar_prev: float, beta_t: float, variance: str) -> float:
    """sigma = sqrt(beta_t) or sqrt(beta_tilde_t), beta_tilde_t = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta_t  (Eq. 7)."""
    if variance == "beta":
        return math.sqrt(beta_t)
    if variance == "beta_tilde":
        return math.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t) * beta_t)
    raise ConfigError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")


def ddpm_step(mu: torch.Tensor, sigma: float, noise: torch.Tensor) -> torch.Tensor:
    """x_{t-1} = mu + sigma z  (Alg. 2, line 4, with mu the posterior mean of Eq. 7)."""
    return mu + sigma * noise


def draw_noise(like: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    """z ~ N(0, I) shaped like ``like``; zeros, and nothing drawn from the generator, when sigma == 0."""
    if sigma == 0.0:
        return torch.zeros_like(like)
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def sample(
    model: NoisePredictor,
    schedule: Schedule,
    x_T: torch.Tensor,  # noqa: N803
    *,
    labels: torch.Tensor | None = None,
    variance: str = "beta_tilde",
    clip: bool = True,
    guidance: float | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[StepRecord]:
    """Run Algorithm 2 from x_T over t = T-1, ..., 0 and yield one StepRecord per step.

    The arguments are checked here, before the first step; the steps run as the records are consumed.
    """
    if variance not in VARIANCES:
        raise ConfigError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")
    check_guidance(model, guidance, labels)
    return _steps(model, schedule, x_T, labels, variance, clip, guidance, generator)


@torch.no_grad()
def _steps(
    model: NoisePredictor,
    schedule: Schedule,
    x_T: torch.Tensor,  # noqa: N803
    labels: torch.Tensor | None,
    variance: str,
    clip: bool,
    guidance: float | None,
    generator: torch.Generator | None,
) -> Iterator[StepRecord]:
    x_t = x_T
    for index, t in enumerate(range(schedule.T - 1, -1, -1)):
        alpha_bar_t, alpha_bar_prev = schedule.alpha_bar_at(t), schedule.alpha_bar_at(t - 1)
        alpha_t, beta_t = float(schedule.alpha[t]), float(schedule.beta[t])
        prediction = predict(model, x_t, t, labels, guidance)
        x0_pred_raw = predict_x0(x_t, prediction.eps, alpha_bar_t)
        x0_pred = clip_x0(x0_pred_raw) if clip else x0_pred_raw
        mu = posterior_mean(x0_pred, x_t, alpha_bar_t, alpha_bar_prev, alpha_t, beta_t)
        sigma = 0.0 if t == 0 else posterior_sigma(alpha_bar_t, alpha_bar_prev, beta_t, variance)  # no noise at the last step
        noise = draw_noise(x_t, sigma, generator)
        x_prev = ddpm_step(mu, sigma, noise)  # Alg. 2, line 4
        yield StepRecord(
            index=index,
            t=t,
            t_prev=t - 1,
            alpha_bar_t=alpha_bar_t,
            alpha_bar_prev=alpha_bar_prev,
            alpha_t=alpha_t,
            beta_t=beta_t,
            sigma=sigma,
            x_t=x_t,
            eps=prediction.eps,
            x0_pred=x0_pred,
            noise=noise,
            x_prev=x_prev,
            eps_cond=prediction.eps_cond,
            eps_uncond=prediction.eps_uncond,
            x0_pred_raw=x0_pred_raw if clip else None,
        )
        x_t = x_prev
