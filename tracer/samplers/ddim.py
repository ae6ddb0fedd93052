"""DDIM sampling: Song et al. 2021, Eq. 12 with the noise level of Eq. 16.

The reverse process visits a descending sub-sequence of timesteps (tracer.samplers.timesteps);
step i goes from t to t_prev, the t of step i + 1 (-1, where alpha_bar = 1, after the last).

    x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)                       (Eq. 12, "predicted x0")
    sigma   = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)   (Eq. 16)
    x_prev  = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z        (Eq. 12)

eta = 0 is the deterministic DDIM; eta = 1 over all T steps is DDPM with beta_tilde.
When clipping, x0_pred is clamped to [-1, 1] but the direction term keeps the eps the model
(with guidance) predicted, as diffusers and the report do.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Literal, get_args

import torch

from tracer.config import ConfigError
from tracer.models import NoisePredictor
from tracer.samplers.ddpm import clip_x0, draw_noise, predict_x0
from tracer.samplers.guidance import check_guidance, predict
from tracer.samplers.records import StepRecord
from tracer.samplers.timesteps import ddim_timesteps, plan
from tracer.schedules import Schedule

FinalAlphaBar = Literal["one", "alpha_bar_0"]
FINAL_ALPHA_BARS: tuple[str, ...] = get_args(FinalAlphaBar)


def ddim_sigma(alpha_bar_t: float, alpha_bar_prev: float, eta: float) -> float:
    """sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)  (Eq. 16)."""
    return eta * math.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)) * math.sqrt(1.0 - alpha_bar_t / alpha_bar_prev)


def ddim_step(
    x0_pred: torch.Tensor, eps: torch.Tensor, alpha_bar_prev: float, sigma: float, noise: torch.Tensor
) -> torch.Tensor:
    """x_prev = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z  (Eq. 12)."""
    direction = math.sqrt(max(1.0 - alpha_bar_prev - sigma**2, 0.0))  # >= 0 in exact arithmetic; guard rounding
    return math.sqrt(alpha_bar_prev) * x0_pred + direction * eps + sigma * noise


def sample(
    model: NoisePredictor,
    schedule: Schedule,
    x_T: torch.Tensor,  # noqa: N803
    *,
    steps: int | None = None,
    eta: float = 0.0,
    spacing: str = "leading",
    clip: bool = False,
    final_alpha_bar: str = "one",
    guidance: float | None = None,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    timesteps: Sequence[int] | None = None,
    t_prev_last: int | None = None,
) -> Iterator[StepRecord]:
    """Run DDIM from x_T and yield one StepRecord per step.

    Give ``steps`` (timesteps spaced by ``spacing``) or an explicit descending ``timesteps`` list.
    The last step moves to ``t_prev_last``: by default -1 (alpha_bar_prev = 1) for
    ``final_alpha_bar="one"`` and 0 (alpha_bar_prev = alpha_bar[0]) for ``"alpha_bar_0"``.
    The arguments are checked here, before the first step; the steps run as the records are consumed.
    """
    if final_alpha_bar not in FINAL_ALPHA_BARS:
        raise ConfigError(f"unknown final alpha_bar {final_alpha_bar!r}; choose one of {', '.join(FINAL_ALPHA_BARS)}")
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        raise ConfigError(f"eta must lie in [0, 1], got {eta!r}")
    if (steps is None) == (timesteps is None):
        raise ConfigError("give DDIM either steps or timesteps, not both or neither")
    ts = ddim_timesteps(schedule.T, steps, spacing) if steps is not None else list(timesteps or [])
    default_last = -1 if final_alpha_bar == "one" else 0
    if t_prev_last is not None and final_alpha_bar == "alpha_bar_0" and t_prev_last != 0:
        raise ConfigError(f"final alpha_bar 'alpha_bar_0' means the last step moves to t=0, got t_prev_last={t_prev_last}")
    pairs = plan(ts, schedule.T, default_last if t_prev_last is None else t_prev_last)
    check_guidance(model, guidance, labels)
    return _steps(model, schedule, x_T, pairs, float(eta), clip, guidance, labels, generator)


@torch.no_grad()
def _steps(
    model: NoisePredictor,
    schedule: Schedule,
    x_T: torch.Tensor,  # noqa: N803
    pairs: list[tuple[int, int]],
    eta: float,
    clip: bool,
    guidance: float | None,
    labels: torch.Tensor | None,
    generator: torch.Generator | None,
) -> Iterator[StepRecord]:
    x_t = x_T
    for index, (t, t_prev) in enumerate(pairs):
        alpha_bar_t, alpha_bar_prev = schedule.alpha_bar_at(t), schedule.alpha_bar_at(t_prev)
        alpha_t = alpha_bar_t / alpha_bar_prev  # the step's effective alpha
        prediction = predict(model, x_t, t, labels, guidance)
        x0_pred_raw = predict_x0(x_t, prediction.eps, alpha_bar_t)
        x0_pred = clip_x0(x0_pred_raw) if clip else x0_pred_raw
        sigma = ddim_sigma(alpha_bar_t, alpha_bar_prev, eta)
        noise = draw_noise(x_t, sigma, generator)
        x_prev = ddim_step(x0_pred, prediction.eps, alpha_bar_prev, sigma, noise)
        yield StepRecord(
            index=index,
            t=t,
            t_prev=t_prev,
            alpha_bar_t=alpha_bar_t,
            alpha_bar_prev=alpha_bar_prev,
            alpha_t=alpha_t,
            beta_t=1.0 - alpha_t,
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
