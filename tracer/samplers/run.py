"""One entry point from a SamplerConfig to the right sampler, and the shared starting noise.

- ``sample``: dispatches to DDPM (Ho et al. 2020, Alg. 2) or DDIM (Song et al. 2021, Eq. 12)
  with the config's options, or to the report's conventions (``preset="seed-report"``,
  arXiv 2512.07201; docs/training.md):
  DDIM visits 1, 1 + c, 1 + 2c, ... (c = T // steps) and its last step moves to t = 0
  (alpha_bar_prev = alpha_bar[0], not 1), eta 0, x0 clipped, direction term with the raw eps;
  DDPM uses beta_tilde and clips x0.
- ``initial_noise``: x_T ~ N(0, I), so DDPM and DDIM can start from the very same x_T.
- ``planned_steps``: how many records a run will yield.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from tracer.config import ConfigError, SamplerConfig
from tracer.models import NoisePredictor
from tracer.samplers import ddim, ddpm
from tracer.samplers.records import StepRecord
from tracer.samplers.timesteps import ddim_timesteps, seed_report_timesteps
from tracer.schedules import Schedule


def initial_noise(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """x_T ~ N(0, I) of the given shape, drawn from ``generator`` (the start of Alg. 2 and of DDIM)."""
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)


def _check_preset(config: SamplerConfig) -> None:
    """The seed-report preset fixes eta, clipping, spacing and variance: refuse values that contradict it."""
    if config.clip is False:
        raise ConfigError("the seed-report preset clips x0_pred; drop --no-clip or the preset")
    if config.sampler == "ddim" and config.eta != 0:
        raise ConfigError(f"the seed-report preset runs DDIM with eta = 0, got eta = {config.eta}")
    if config.sampler == "ddim" and config.spacing != "leading":
        raise ConfigError(f"the seed-report preset has its own timesteps; drop --spacing {config.spacing}")
    if config.sampler == "ddpm" and config.variance != "beta_tilde":
        raise ConfigError(f"the seed-report preset samples DDPM with beta_tilde, got variance {config.variance!r}")


def ddim_plan_timesteps(schedule: Schedule, config: SamplerConfig) -> list[int]:
    """The timesteps a DDIM run with ``config`` visits, descending."""
    steps = config.steps_for(schedule.T)
    if config.preset == "seed-report":
        return seed_report_timesteps(schedule.T, steps)
    return ddim_timesteps(schedule.T, steps, config.spacing)


def planned_steps(schedule: Schedule, config: SamplerConfig) -> int:
    """How many StepRecords ``sample`` will yield for this schedule and config."""
    if config.sampler == "ddpm":
        return config.steps_for(schedule.T)
    return len(ddim_plan_timesteps(schedule, config))


def sample(
    model: NoisePredictor,
    schedule: Schedule,
    config: SamplerConfig,
    x_T: torch.Tensor,  # noqa: N803
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[StepRecord]:
    """The records of the sampler ``config`` names, run from ``x_T`` (on x_T's device and dtype)."""
    if config.preset == "seed-report":
        _check_preset(config)
    if config.sampler == "ddpm":
        config.steps_for(schedule.T)  # DDPM runs all T steps; raises otherwise
        return ddpm.sample(
            model,
            schedule,
            x_T,
            labels=labels,
            variance=config.variance,
            clip=config.preset == "seed-report" or config.clip_x0(),
            guidance=config.guidance,
            generator=generator,
        )
    if config.preset == "seed-report":
        return ddim.sample(
            model,
            schedule,
            x_T,
            timesteps=ddim_plan_timesteps(schedule, config),
            t_prev_last=0,  # the report's last step uses alpha_bar[0], not 1
            final_alpha_bar="alpha_bar_0",
            eta=0.0,
            clip=True,
            guidance=config.guidance,
            labels=labels,
            generator=generator,
        )
    return ddim.sample(
        model,
        schedule,
        x_T,
        steps=config.steps_for(schedule.T),
        eta=config.eta,
        spacing=config.spacing,
        clip=config.clip_x0(),
        final_alpha_bar=config.final_alpha_bar,
        guidance=config.guidance,
        labels=labels,
        generator=generator,
    )
