"""The one sampling loop every sampler plug-in runs in, and the shared starting noise.

For each (t, t_prev) of the sampler's plan (tracer/samplers/base.py) the loop

1. calls the network once (guided and rescaled where asked: tracer/samplers/guidance.py),
2. turns its output into eps and x0_pred by what the network predicts (eps, x0 or v:
   tracer/samplers/prediction.py), clipping x0_pred where the options say so,
3. asks the sampler for the step's sigma, draws z ~ N(0, I) (zeros, and nothing drawn, where
   sigma is 0), and asks it for x_prev,

and yields one frozen ``StepRecord`` per step. Randomness is an input: the generator, or
x_T itself; the noise drawn is recorded, so a replay is exact.

A sampler in sigma space (``SPACE = "sigma"``: Euler, Heun, Euler ancestral, DPM-Solver++(2M);
tracer/samplers/karras.py) runs in ``_sigma_steps`` instead: from x = c x_T (c = sigma_0, or
sqrt(1 + sigma_0^2) with ``start="vp"``), each step of its noise levels calls the sampler's
``sigma_step`` with ``evaluate(x, sigma)`` (the network on x / sqrt(1 + sigma^2) at the timestep
t(sigma), guided where asked, its output turned into eps and x0_pred in sigma space) and ``draw()``;
the step's scalars are its noise levels, alpha_bar = 1 / (1 + sigma^2) of each, and the network's t.

A sampler of a flow-matching network (``SPACE = "flow"``: flow_euler, flow_heun; tracer/samplers/flow.py) runs in
the same branch with the flow path's ``_Space``: its levels are the times t_i, from x = x_T at t = 1; ``evaluate(x, t)``
calls the network on x itself at t T and turns its velocity v into eps = x + (1 - t) v and x0_pred = x - t v; the
step records t_flow and t_flow_next and alpha_bar = (1 - t)^2 / ((1 - t)^2 + t^2) of each (the same SNR).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tracer.config import ConfigError
from tracer.models import NoisePredictor, objective, prediction_type
from tracer.samplers import flow, karras
from tracer.samplers.base import Evaluation, SigmaStep, SigmaUpdate, effective_step, space
from tracer.samplers.config import SamplerConfig
from tracer.samplers.guidance import Guided, check_guidance, predict
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


def draw_noise(like: torch.Tensor, sigma: float, generator: torch.Generator | None, rows: slice = slice(None)) -> torch.Tensor:
    """z ~ N(0, I) shaped like ``like``, its ``rows`` kept; zeros, and nothing drawn from the generator, when sigma == 0.

    The whole of z is drawn whatever ``rows`` keeps, so a row's noise does not depend on which rows are kept.
    """
    if sigma == 0.0:
        return torch.zeros_like(like[rows])
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)[rows]


def planned_steps(schedule: Schedule, config: SamplerConfig) -> int:
    """How many StepRecords ``run`` will yield for this schedule and config."""
    return config.planned_steps(schedule.T, schedule.alpha_bar)


def run(
    model: NoisePredictor,
    schedule: Schedule,
    config: SamplerConfig,
    x_T: torch.Tensor,  # noqa: N803
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    rows: slice | None = None,
) -> Iterator[StepRecord]:
    """The records of the sampler ``config`` names, run from ``x_T`` (on x_T's device and dtype).

    With ``rows`` (a slice of the batch) the records hold only those rows of x_T (and of the labels), and the
    noise of every step is drawn for the whole batch and those rows of it kept: each row's steps are the ones
    it has in the run of the whole batch (sampling split across processes: tracer/sharding.py).
    Everything is checked here, before the first step; the steps run as the records are consumed.
    """
    check_objective(config.sampler, space(config.module), objective(model))
    resolved = config.resolve(schedule.T, schedule.alpha_bar)
    pairs = config.module.plan(resolved, schedule.T)
    check_guidance(model, config.guidance, labels)
    prediction = check_prediction(prediction_type(model))
    rows = slice(None) if rows is None else rows
    labels = None if labels is None else labels[rows]
    if space(config.module) == "sigma":
        return _sigma_steps(model, schedule, config, resolved, pairs, prediction, x_T, rows, labels, generator,
                            _sigma_space(resolved, schedule, prediction))
    if space(config.module) == "flow":
        return _sigma_steps(model, schedule, config, resolved, pairs, prediction, x_T, rows, labels, generator,
                            _flow_space(resolved, schedule))
    if prediction == "eps" and float(schedule.alpha_bar[pairs[0][0]]) == 0.0:
        raise ConfigError("this schedule has zero terminal SNR (alpha_bar = 0 at the first step): x0 from an eps "
                          "prediction divides by sqrt(alpha_bar) = 0; it needs a v-prediction model")
    return _steps(model, schedule, config, resolved, pairs, prediction, x_T, rows, labels, generator)


sample = run  # the entry point under its old name


FLOW_SAMPLERS = "flow_euler or flow_heun"


def check_objective(sampler: str, sampler_space: str, network_objective: str) -> None:
    """A flow sampler takes a flow network, and only a flow sampler does (one line, before anything runs)."""
    if sampler_space == "flow" and network_objective != "flow":
        raise ConfigError(f"--sampler {sampler} samples a flow-matching network (train --objective flow); this checkpoint's "
                          f"network is a {network_objective} model: use ddpm, ddim, euler, heun, euler_ancestral or dpmpp_2m")
    if sampler_space != "flow" and network_objective == "flow":
        raise ConfigError(f"--sampler {sampler} samples a diffusion network; this checkpoint's network was trained with "
                          f"--objective flow (it predicts the velocity eps - x0): use --sampler {FLOW_SAMPLERS}")


@torch.no_grad()
def _steps(
    model: NoisePredictor,
    schedule: Schedule,
    config: SamplerConfig,
    resolved: object,
    pairs: list[tuple[int, int]],
    prediction: str,
    x_T: torch.Tensor,  # noqa: N803
    rows: slice,
    labels: torch.Tensor | None,
    generator: torch.Generator | None,
) -> Iterator[StepRecord]:
    module = config.module
    clip = bool(getattr(resolved, "clip", False))
    x_t = x_T[rows]
    for index, (t, t_prev) in enumerate(pairs):
        step = effective_step(index, t, t_prev, schedule.alpha_bar, schedule.alpha, schedule.beta)
        guided = predict(model, x_t, t, labels, config.guidance, config.guidance_rescale)
        eps, x0_pred_raw = eps_and_x0(guided.output, x_t, step.alpha_bar_t, prediction)
        x0_pred = clip_x0(x0_pred_raw) if clip else x0_pred_raw
        sigma = module.sigma(resolved, step)
        noise = draw_noise(x_T, sigma, generator, rows)
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


@dataclass(frozen=True)
class _Space:
    """What the continuous-level branch of the loop needs to know about the variable a sampler steps."""

    levels: list[float]  # the plan's levels, the last the end
    start: float  # the first x is start * x_T
    model_input: Callable[[torch.Tensor, float], tuple[torch.Tensor, float]]  # (network input, its time) at (x, level)
    convert: Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]  # (eps, x0_pred) of an output at (x, level)
    alpha_bar: Callable[[float], float]  # the VP alpha_bar of a level
    names: tuple[str, str]  # the StepRecord names of a step's two levels


def _sigma_space(resolved: karras.SigmaOptions, schedule: Schedule, prediction: str) -> _Space:
    """Sigma space (Karras et al. 2022): the network on x / sqrt(1 + sigma^2) at t(sigma), its output through the denoiser."""
    assert resolved.sigmas is not None and resolved.timesteps is not None
    log_sigmas = [math.log(s) for s in karras.schedule_sigmas(schedule.alpha_bar.tolist())]

    def model_input(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, float]:
        return x * (1.0 / math.sqrt(1.0 + sigma * sigma)), karras.sigma_to_t(sigma, log_sigmas)

    def convert(output: torch.Tensor, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        return karras.denoise(output, x, sigma, prediction)  # type: ignore[no-any-return]

    return _Space(list(resolved.sigmas), karras.start_scale(resolved), model_input, convert,
                  karras.alpha_bar_of_sigma, ("sigma_t", "sigma_next"))


def _flow_space(resolved: flow.FlowOptions, schedule: Schedule) -> _Space:
    """The flow path (tracer/samplers/flow.py): the network on x itself at t T, its velocity into eps and x0_pred."""
    assert resolved.times is not None
    T = schedule.T  # noqa: N806

    def model_input(x: torch.Tensor, t: float) -> tuple[torch.Tensor, float]:
        return x, flow.model_time(t, T)

    return _Space(list(resolved.times), 1.0, model_input, lambda v, x, t: flow.velocity_to_eps_x0(v, x, t),
                  flow.alpha_bar_of_time, ("t_flow", "t_flow_next"))


@torch.no_grad()
def _sigma_steps(
    model: NoisePredictor,
    schedule: Schedule,
    config: SamplerConfig,
    resolved: Any,
    pairs: list[tuple[int, int]],
    prediction: str,
    x_T: torch.Tensor,  # noqa: N803
    rows: slice,
    labels: torch.Tensor | None,
    generator: torch.Generator | None,
    where: _Space,
) -> Iterator[StepRecord]:
    """The records of a sampler with continuous levels (``SPACE = "sigma"`` or ``"flow"``): see the module docstring."""
    step_fn = config.module.sigma_step if space(config.module) == "sigma" else config.module.flow_step  # type: ignore[attr-defined]
    sigmas = where.levels
    calls: list[tuple[float, Guided, torch.Tensor]] = []  # (t, guided output, x) of each network call in the step

    def evaluate(x: torch.Tensor, sigma: float) -> Evaluation:
        """The network at level sigma (a noise level, or a flow time): on its input at its time (fractional, float64)."""
        x_in, t_model = where.model_input(x, sigma)
        t_batch = torch.full((x.shape[0],), t_model, dtype=torch.float64, device=x.device)
        guided = predict(model, x_in, t_batch, labels, config.guidance, config.guidance_rescale)
        calls.append((t_model, guided, x))
        eps, x0_pred = where.convert(guided.output, x, sigma)
        return Evaluation(x, sigma, eps, x0_pred, guided.output)

    def draw() -> torch.Tensor:
        return torch.randn(x_T.shape, generator=generator, device=x_T.device, dtype=x_T.dtype)[rows]

    x = x_T[rows] * where.start
    previous: SigmaUpdate | None = None
    for index, (t, t_prev) in enumerate(pairs):
        sigma_t, sigma_next = sigmas[index], sigmas[index + 1]
        step = SigmaStep(index, sigma_t, sigma_next, sigmas[index - 1] if index else None, len(pairs))
        calls.clear()
        update: SigmaUpdate = step_fn(resolved, step, x, evaluate, draw, previous)
        t_model, guided, _ = calls[0]
        first = update.first
        eps_cond = eps_uncond = None
        if guided.cond is not None and guided.uncond is not None:
            eps_cond = where.convert(guided.cond, first.x, first.sigma)[0]
            eps_uncond = where.convert(guided.uncond, first.x, first.sigma)[0]
        own = prediction != "eps"
        alpha_bar_t, alpha_bar_prev = where.alpha_bar(sigma_t), where.alpha_bar(sigma_next)
        fields = dict(update.fields)
        levels: dict[str, Any] = {where.names[0]: sigma_t, where.names[1]: sigma_next}  # sigma_t/sigma_next or t_flow/t_flow_next
        unknown = set(fields) - _RECORD_FIELDS
        assert not unknown, f"{config.sampler}.sigma_step returned fields a StepRecord does not have: {sorted(unknown)}"
        yield StepRecord(
            index=index,
            t=t,
            t_prev=t_prev,
            alpha_bar_t=alpha_bar_t,
            alpha_bar_prev=alpha_bar_prev,
            alpha_t=alpha_bar_t / alpha_bar_prev,
            beta_t=1.0 - alpha_bar_t / alpha_bar_prev,
            sigma=update.sigma,
            x_t=x,
            eps=first.eps,
            x0_pred=first.x0_pred,
            noise=update.noise if update.noise is not None else torch.zeros_like(x),
            x_prev=update.x_next,
            eps_cond=eps_cond,
            eps_uncond=eps_uncond,
            model_output=guided.output if own else None,
            model_output_cond=guided.cond if own else None,
            model_output_uncond=guided.uncond if own else None,
            model_output_cfg=guided.cfg,
            t_model=t_model,
            **levels,
            **fields,
        )
        x, previous = update.x_next, update


_RECORD_FIELDS = {f.name for f in dataclasses.fields(StepRecord)} - {
    "index", "t", "t_prev", "alpha_bar_t", "alpha_bar_prev", "alpha_t", "beta_t", "sigma", "x_t", "eps", "x0_pred", "noise",
    "x_prev", "sigma_t", "sigma_next", "t_flow", "t_flow_next", "t_model"}  # what a step may add: the loop fills these itself
