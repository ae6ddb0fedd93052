"""The one sampling loop every sampler plug-in runs in, and the shared starting noise.

For each (t, t_prev) of the sampler's plan (tracer/samplers/base.py) the loop

1. calls the network once (guided and rescaled where asked: tracer/samplers/guidance.py),
2. turns its output into eps and x0_pred by what the network predicts (eps, x0 or v:
   tracer/samplers/prediction.py), clipping x0_pred where the options say so,
3. asks the sampler for the step's sigma, draws z ~ N(0, I) (zeros, and nothing drawn, where
   sigma is 0), and asks it for x_prev,

and yields one frozen ``StepRecord`` per step. Randomness is an input: the generator, or
x_T itself; the noise drawn is recorded, so a replay is exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from tracer.config import ConfigError
from tracer.models import NoisePredictor, prediction_type
from tracer.samplers.base import effective_step
from tracer.samplers.config import SamplerConfig
from tracer.samplers.guidance import check_guidance, predict
from tracer.samplers.prediction import check_prediction, clip_x0, eps_and_x0
from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule

__all__ = ["SamplerConfig", "draw_noise", "initial_noise", "planned_steps", "run", "sample"]


def initial_noise(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """x_T ~ N(0, I) of the given shape, drawn from ``generator`` (the start of Alg. 2 and of DDIM)."""
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)


def draw_noise(like: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    """z ~ N(0, I) shaped like ``like``; zeros, and nothing drawn from the generator, when sigma == 0."""
    if sigma == 0.0:
        return torch.zeros_like(like)
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def planned_steps(schedule: Schedule, config: SamplerConfig) -> int:
    """How many StepRecords ``run`` will yield for this schedule and config."""
    return config.planned_steps(schedule.T)


def run(
    model: NoisePredictor,
    schedule: Schedule,
    config: SamplerConfig,
    x_T: torch.Tensor,  # noqa: N803
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[StepRecord]:
    """The records of the sampler ``config`` names, run from ``x_T`` (on x_T's device and dtype).

    Everything is checked here, before the first step; the steps run as the records are consumed.
    """
    resolved = config.resolve(schedule.T)
    pairs = config.module.plan(resolved, schedule.T)
    check_guidance(model, config.guidance, labels)
    prediction = check_prediction(prediction_type(model))
    if prediction == "eps" and float(schedule.alpha_bar[pairs[0][0]]) == 0.0:
        raise ConfigError("this schedule has zero terminal SNR (alpha_bar = 0 at the first step): x0 from an eps "
                          "prediction divides by sqrt(alpha_bar) = 0; it needs a v-prediction model")
    return _steps(model, schedule, config, resolved, pairs, prediction, x_T, labels, generator)


sample = run  # the entry point under its old name


@torch.no_grad()
def _steps(
    model: NoisePredictor,
    schedule: Schedule,
    config: SamplerConfig,
    resolved: object,
    pairs: list[tuple[int, int]],
    prediction: str,
    x_T: torch.Tensor,  # noqa: N803
    labels: torch.Tensor | None,
    generator: torch.Generator | None,
) -> Iterator[StepRecord]:
    module = config.module
    clip = bool(getattr(resolved, "clip", False))
    x_t = x_T
    for index, (t, t_prev) in enumerate(pairs):
        step = effective_step(index, t, t_prev, schedule.alpha_bar, schedule.alpha, schedule.beta)
        guided = predict(model, x_t, t, labels, config.guidance, config.guidance_rescale)
        eps, x0_pred_raw = eps_and_x0(guided.output, x_t, step.alpha_bar_t, prediction)
        x0_pred = clip_x0(x0_pred_raw) if clip else x0_pred_raw
        sigma = module.sigma(resolved, step)
        noise = draw_noise(x_t, sigma, generator)
        x_prev = module.update(resolved, step, x_t, eps, x0_pred, noise, sigma)
        eps_cond = eps_uncond = None
        if guided.cond is not None and guided.uncond is not None:
            eps_cond = eps_and_x0(guided.cond, x_t, step.alpha_bar_t, prediction)[0]
            eps_uncond = eps_and_x0(guided.uncond, x_t, step.alpha_bar_t, prediction)[0]
        own = prediction != "eps"  # the output in its own space, recorded when it is not eps
        yield StepRecord(
            index=index,
            t=t,
            t_prev=t_prev,
            alpha_bar_t=step.alpha_bar_t,
            alpha_bar_prev=step.alpha_bar_prev,
            alpha_t=step.alpha_t,
            beta_t=step.beta_t,
            sigma=sigma,
            x_t=x_t,
            eps=eps,
            x0_pred=x0_pred,
            noise=noise,
            x_prev=x_prev,
            eps_cond=eps_cond,
            eps_uncond=eps_uncond,
            x0_pred_raw=x0_pred_raw if clip else None,
            model_output=guided.output if own else None,
            model_output_cond=guided.cond if own else None,
            model_output_uncond=guided.uncond if own else None,
            model_output_cfg=guided.cfg,
        )
        x_t = x_prev
