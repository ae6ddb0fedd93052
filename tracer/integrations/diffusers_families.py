"""Recording diffusers' sigma-space and flow schedulers in the names of noisescope's own sampler families.

``TracedScheduler`` (tracer/integrations/diffusers.py) hands the step of these schedulers (diffusers 0.42) to a
``FamilyRecording``, which writes the rows noisescope's samplers write, so that the same equations check them:

| diffusers scheduler | family | equations (tracer/samplers/...) |
|---|---|---|
| EulerDiscreteScheduler | ``euler`` | Karras et al. 2022, Alg. 2, lines 7-8 (euler.py) |
| EulerAncestralDiscreteScheduler | ``euler_ancestral`` | k-diffusion's get_ancestral_step, eta = S_noise = 1 (euler_ancestral.py) |
| HeunDiscreteScheduler | ``heun`` | Karras et al. 2022, Alg. 2, lines 7-11 (heun.py) |
| DPMSolverMultistepScheduler (dpmsolver++, order 2, midpoint) | ``dpmpp_2m`` | Lu et al. 2022, Alg. 2 (dpmpp_2m.py) |
| FlowMatchEulerDiscreteScheduler | ``flow_euler`` | Liu et al. 2023, Eq. 1 (flow_euler.py) |
| another sigma-based one (LMSDiscrete, ...) | ``sigma`` | the denoiser, the levels and the chain; no step equation: INCOMPLETE |

Sigma space (Karras et al. 2022, tracer/samplers/karras.py): x = x0 + sigma eps. Euler, Euler ancestral and Heun
step that variable themselves (their ``scale_model_input`` divides by sqrt(1 + sigma^2)): x_t and x_prev are their
samples as they are. DPMSolverMultistepScheduler steps the VP variable x / sqrt(1 + sigma^2): its samples are recorded
multiplied by sqrt(1 + sigma^2) of their level, which turns its update (Lu et al. 2022, Alg. 2 with VP alpha_t and
sigma_t) into the sigma-space form the dpmpp_2m.step equation states (lambda = -log sigma in both). The network's
output is recorded as ``eps`` (an epsilon scheduler) or as ``model_output`` with eps = (x - x0_pred) / sigma beside it
(v_prediction and sample: Karras et al. 2022, Table 1), so ``prediction.conversion`` checks the conversion.

What diffusers does its own way is recorded as it did it, and declared in the config for the checks:

- ``sigma_interpolation = "linear"``: diffusers places a fractional timestep's sigma linearly in sigma between the
  schedule's levels (``np.interp(timesteps, arange(T), sigmas)``), not in log sigma; ``sigma.timestep`` inverts that.
- ``first_order_final``: DPMSolverMultistepScheduler takes a first-order last step (to sigma 0; to sigma_min with
  ``lower_order_final`` and fewer than 15 steps, or ``euler_at_final``); ``dpmpp_2m.step`` takes it as such.
- ``final_sigmas_type="sigma_min"``: the plan's last level is sigma_min, so ``check`` says NOISE LEFT.
- Heun calls ``step`` twice a step (predictor, then corrector at x_euler and sigma_next): one row per Heun step, with
  x_euler, eps_2 and x0_pred_2 of the corrector; the last step (to sigma 0) is Euler's alone.

A configuration none of those equations describes is refused with one ValueError naming the option, before the
trace is created (churn, exponential/beta sigmas, DPM-Solver's karras sigmas, other DPM-Solver variants, thresholding,
clipping...). Euler's and Heun's karras sigmas are recorded: diffusers calls the network at t(sigma) with log sigma
interpolated there (``sigma_interpolation = "log"``), at the schedule's levels with sigma linear in t ("linear").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tracer.integrations.diffusers import _float, _replay_noise, _rng_state, _scaled, _tensor, schedule_of
from tracer.schedules import Schedule, flow_alpha_bar, make_schedule
from tracer.trace import schema

FAMILIES: dict[str, str] = {
    "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler_ancestral",
    "HeunDiscreteScheduler": "heun",
    "DPMSolverMultistepScheduler": "dpmpp_2m",
    "FlowMatchEulerDiscreteScheduler": "flow_euler",
}
GENERIC = "sigma"  # another sigma-based scheduler (LMSDiscrete, ...): recorded in sigma space with no step equation
PREDICTIONS: dict[str, str] = {"epsilon": "eps", "v_prediction": "v", "sample": "x0", "eps": "eps", "v": "v", "x0": "x0"}


def family_of(scheduler: Any) -> str | None:
    """The noisescope family a diffusers scheduler is recorded as (by its class or a base class), None for others."""
    for cls in type(scheduler).__mro__:
        if cls.__name__ in FAMILIES:
            return FAMILIES[cls.__name__]
    return None


def _refuse(scheduler: Any, option: str, value: Any, why: str) -> None:
    raise ValueError(f"TracedScheduler cannot record {type(scheduler).__name__} with {option}={value!r}: {why}")


def check_supported(scheduler: Any, family: str) -> None:
    """Raise one ValueError naming the first option this recording does not describe (before any trace exists)."""
    config = scheduler.config
    if family == GENERIC:
        if not hasattr(scheduler, "alphas_cumprod"):
            _refuse(scheduler, "alphas_cumprod", None, "a sigma-based scheduler is recorded against its training schedule, and this one has none")
        if getattr(scheduler, "order", 1) != 1:
            _refuse(scheduler, "order", scheduler.order, "one step() call per step is recorded generically; only Heun's two calls are paired")
    flags = {"use_karras_sigmas": "karras", "use_exponential_sigmas": "exponential", "use_beta_sigmas": "beta",
             "use_lu_lambdas": "Lu's lambda", "use_flow_sigmas": "flow"}
    for flag, what in flags.items():
        if config.get(flag, False) and not (family == "flow_euler" and flag == "use_flow_sigmas") and not (
                flag == "use_karras_sigmas" and family in ("euler", "heun")):
            _refuse(scheduler, flag, True, f"{what} noise levels call the network at a timestep the recording does not check; "
                    "use the schedule's own levels")
    if family == "flow_euler":
        for option in ("stochastic_sampling", "invert_sigmas"):
            if config.get(option, False):
                _refuse(scheduler, option, True, "only the deterministic Euler step of the flow ODE is recorded")
        return
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction", "sample"):
        _refuse(scheduler, "prediction_type", prediction, "choose epsilon, v_prediction or sample")
    if family == "euler_ancestral" and prediction == "sample":
        _refuse(scheduler, "prediction_type", prediction, "its step() does not implement it (NotImplementedError in diffusers)")
    if config.get("timestep_type", "discrete") != "discrete":
        _refuse(scheduler, "timestep_type", config.get("timestep_type"), "the network's timestep must be the schedule's")
    if config.get("interpolation_type", "linear") != "linear":
        _refuse(scheduler, "interpolation_type", config.get("interpolation_type"), "only linear interpolation is recorded")
    if config.get("clip_sample", False):
        _refuse(scheduler, "clip_sample", True, "clipping x0_pred is not part of the sigma-space equations")
    if config.get("thresholding", False):
        _refuse(scheduler, "thresholding", True, "dynamic thresholding is not part of the sigma-space equations")
    if family == "dpmpp_2m":
        expected = {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint", "variance_type": None}
        for option, value in expected.items():
            if config.get(option) != value:
                _refuse(scheduler, option, config.get(option), f"the dpmpp_2m family is {option}={value!r}")


def check_plan(scheduler: Any, family: str) -> None:
    """Raise where the levels ``set_timesteps`` made hold a step of size 0 (final_sigmas_type sigma_min after levels that
    already end at sigma_min): its h = 0, and DPM-Solver's r = h_{i-1} / h is undefined."""
    sigmas = [_float(s) for s in scheduler.sigmas]
    if family == "heun":
        sigmas = sigmas[0::2] + sigmas[-1:]
    if any(a <= b for a, b in zip(sigmas, sigmas[1:])):
        _refuse(scheduler, "final_sigmas_type", scheduler.config.get("final_sigmas_type"),
                f"its levels {sigmas[-3:]} repeat a level (a step of size 0); choose timestep_spacing='trailing' "
                "(its timesteps end above t = 0) or final_sigmas_type='zero'")


@dataclass(frozen=True)
class _Levels:
    """A step's two levels (noise levels, or flow times), the network's timestep, and its place in the plan."""

    index: int  # the row
    level: float
    level_next: float
    t_model: float


def _index(scheduler: Any, timestep: Any) -> int:
    """The scheduler's step index for this call (before ``step`` sets it at the first call, as it will)."""
    index = scheduler.step_index
    if index is None:
        begin = getattr(scheduler, "begin_index", None)
        index = begin if begin is not None else scheduler.index_for_timestep(timestep)
    return int(index)


def _unpack(output: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(prev_sample, pred_original_sample or None) of a step's output object or tuple."""
    if isinstance(output, tuple):
        return _tensor(output[0]), _tensor(output[1]) if len(output) > 1 else None
    x0 = getattr(output, "pred_original_sample", None)
    return _tensor(output.prev_sample), None if x0 is None else _tensor(x0)


class FamilyRecording:
    """The rows of one run of a scheduler of ``FAMILIES``: ``step`` runs the scheduler's step and returns its output and
    the row to write (None for Heun's predictor call, whose row waits for the corrector)."""

    def __init__(self, scheduler: Any, family: str, model_prediction: str | None) -> None:
        check_supported(scheduler, family)
        self.family = family
        own = scheduler.config.get("prediction_type", "epsilon")
        self.prediction = "v" if family == "flow_euler" else PREDICTIONS[own]  # what the scheduler takes the output for
        self.model_prediction = model_prediction  # what the network predicts, where the caller says (noisescope's names)
        self.pending: dict[str, Any] | None = None  # Heun: the predictor's half of the row
        self.checked_plan = False

    # -- what the trace is created with ------------------------------------------------------------------------------
    def levels(self, scheduler: Any) -> list[float]:
        sigmas = [_float(s) for s in scheduler.sigmas]
        return sigmas[0::2] + sigmas[-1:] if self.family == "heun" else sigmas

    def planned(self, scheduler: Any) -> int:
        return len(self.levels(scheduler)) - 1

    def schedule(self, scheduler: Any) -> Schedule:
        if self.family == "flow_euler":  # the flow path's schedule: alpha_bar at t_k = (k + 1) / T (tracer/schedules.py)
            return make_schedule("flow", int(scheduler.config.num_train_timesteps))
        return schedule_of(scheduler)

    def sampler_config(self, scheduler: Any) -> dict[str, Any]:
        """The ``sampler`` part of the config, in the terms of the family's own options (tracer/samplers/karras.py, flow.py)."""
        config = scheduler.config
        levels = self.levels(scheduler)
        common: dict[str, Any] = {"sampler": self.family, "steps": len(levels) - 1, "guidance": None, "spacing": config.get("timestep_spacing")}
        if self.family == "flow_euler":
            return {**common, "times": levels, "shift": config.get("shift", 1.0)}
        if self.family == GENERIC:
            return {**common, "sigmas": levels, "prediction_type": config.get("prediction_type", "epsilon"),
                    "prediction": self.model_prediction or self.prediction}
        start = math.sqrt(1.0 + levels[0] ** 2)  # DPMSolver steps x / sqrt(1 + sigma^2) from z: the vp start in sigma space
        if self.family != "dpmpp_2m":
            start = _float(scheduler.init_noise_sigma)
        out = {
            **common, "sigmas": levels, "sigma_schedule": "karras" if config.get("use_karras_sigmas") else "schedule",
            "sigma_interpolation": "log" if config.get("use_karras_sigmas") else "linear",
            "final_sigma": "zero" if levels[-1] == 0 else "sigma_min",
            "start": "vp" if abs(start - math.sqrt(1.0 + levels[0] ** 2)) <= 1e-6 * start else "sigma",
            "s_churn": 0.0, "s_tmin": 0.0, "s_tmax": None, "s_noise": 1.0,
            "prediction_type": config.get("prediction_type", "epsilon"),
            "prediction": self.model_prediction or self.prediction,
        }
        if self.family == "euler_ancestral":
            out["eta"] = 1.0
        if self.family == "dpmpp_2m":
            out["first_order_final"] = bool(config.get("euler_at_final") or (config.get("lower_order_final") and len(scheduler.timesteps) < 15)
                                            or config.get("final_sigmas_type", "zero") == "zero")
        return out

    # -- one call of the scheduler's step -----------------------------------------------------------------------------
    def step(self, scheduler: Any, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, arguments: Mapping[str, Any],
             call: Callable[[], Any]) -> tuple[Any, dict[str, Any] | None]:
        """Run ``call`` (the scheduler's step with ``arguments``) and return its output and the row it makes, if any."""
        if not self.checked_plan:
            check_plan(scheduler, self.family)
            self.checked_plan = True
        model_output, sample = _tensor(model_output), _tensor(sample)
        if float(arguments.get("s_churn", 0.0) or 0.0) > 0:
            raise ValueError("TracedScheduler records sigma-based schedulers with s_churn = 0 only (the churn noise is not exposed)")
        if arguments.get("per_token_timesteps") is not None:
            raise ValueError("TracedScheduler cannot record per_token_timesteps: one time per step is recorded")
        index = _index(scheduler, timestep)
        if self.family == "heun" and not scheduler.state_in_first_order:
            return self._heun_corrector(scheduler, model_output, sample, call)
        levels = self.levels(scheduler)
        row_index = index // 2 if self.family == "heun" else index
        at = _Levels(row_index, levels[row_index], levels[row_index + 1], _float(timestep))
        if self.family == "flow_euler":
            output = call()
            return output, self._flow_row(scheduler, at, model_output, sample, _unpack(output)[0])
        if self.family == "dpmpp_2m":
            return self._dpmpp(scheduler, at, model_output, sample, call)
        rng = _rng_state(arguments.get("generator"), model_output.device) if self.family == "euler_ancestral" else None
        output = call()
        prev, x0_pred = _unpack(output)
        if x0_pred is None:
            raise TypeError(f"{type(scheduler).__name__}.step returns no pred_original_sample: it cannot be traced")
        row = self._sigma_row(scheduler, at, sample.double(), model_output, x0_pred)
        if self.family == GENERIC:  # its noise, and how its timesteps map to levels, are its own: not claimed
            del row["t_model"], row["noise"]
            row["sigma"] = float("nan")
        if self.family == "euler_ancestral":
            self._ancestral(row, at, rng, arguments.get("generator"), model_output)
        elif self.family == "heun":
            row["x_euler"] = prev
            if at.level_next > 0:  # the corrector's call completes the row
                self.pending = row
                return output, None
            row.update(eps_2=torch.zeros_like(prev), x0_pred_2=torch.zeros_like(prev))  # Alg. 2, line 9: no correction at 0
        row[schema.X_PREV] = prev
        return output, row

    def _sigma_row(self, scheduler: Any, at: _Levels, x: torch.Tensor, model_output: torch.Tensor, x0_pred: torch.Tensor) -> dict[str, Any]:
        """The row noisescope's sigma-space loop writes (tracer/samplers/loop.py), x in sigma space: x = x0 + sigma eps."""
        sigma_t, sigma_next = at.level, at.level_next
        alpha_bar_t, alpha_bar_prev = 1.0 / (1.0 + sigma_t**2), 1.0 / (1.0 + sigma_next**2)  # Karras et al. 2022, Table 1 (VP)
        nearest = _nearest_indices(scheduler)
        row: dict[str, Any] = {
            "t": nearest(sigma_t), "t_prev": -1 if sigma_next == 0 else nearest(sigma_next),
            "alpha_bar_t": alpha_bar_t, "alpha_bar_prev": alpha_bar_prev, "alpha_t": alpha_bar_t / alpha_bar_prev,
            "beta_t": 1.0 - alpha_bar_t / alpha_bar_prev, "sigma": 0.0, "sigma_t": sigma_t, "sigma_next": sigma_next,
            "t_model": at.t_model, "x_t": x,
        }
        row.update(self._outputs(model_output, x, sigma_t, x0_pred))
        row["noise"] = torch.zeros_like(model_output)
        return row

    def _outputs(self, model_output: torch.Tensor, x: torch.Tensor, sigma: float, x0_pred: torch.Tensor) -> dict[str, Any]:
        """eps as the scheduler took the output: the output itself (epsilon), sigma x / (1 + sigma^2) + v / sqrt(1 + sigma^2)
        (v_prediction: Salimans and Ho 2022, App. D, in sigma space; from v, not from x0_pred, whose rounding 1 / sigma would
        magnify), or (x - x0_pred) / sigma (sample: Karras et al. 2022, Eq. 3); model_output where the scheduler or the
        declared model does not take it for eps; and x0_pred."""
        out: dict[str, Any] = {}
        if self.prediction != "eps" or (self.model_prediction not in (None, "eps")):
            out[schema.MODEL_OUTPUT] = model_output
        if self.prediction == "eps":
            out["eps"] = model_output
        elif self.prediction == "v":
            out["eps"] = (sigma / (1.0 + sigma**2)) * x + model_output.double() / math.sqrt(1.0 + sigma**2)
        else:
            out["eps"] = (x - x0_pred.double()) / sigma
        out["x0_pred"] = x0_pred
        return out

    def _ancestral(self, row: dict[str, Any], at: _Levels, rng: Any, generator: Any, like: torch.Tensor) -> None:
        """sigma_up, sigma_down (eta 1) and the noise EulerAncestralDiscreteScheduler drew, drawn again from its saved state."""
        s, s_next = at.level, at.level_next
        sigma_up = math.sqrt(max(s_next**2 * (s**2 - s_next**2) / s**2, 0.0))
        row.update(sigma_up=sigma_up, sigma_down=math.sqrt(max(s_next**2 - sigma_up**2, 0.0)), sigma=sigma_up if s_next > 0 else 0.0)
        if row["sigma"] > 0:
            if rng is None:
                raise ValueError(f"cannot replay the noise of an ancestral step on device {like.device.type}")
            row["noise"] = _replay_noise(rng, generator, like)

    def _heun_corrector(self, scheduler: Any, model_output: torch.Tensor, sample: torch.Tensor, call: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
        """The corrector's call (Karras et al. 2022, Alg. 2, lines 10-11): eps_2 and x0_pred_2 at x_euler and sigma_next."""
        if self.pending is None:
            raise RuntimeError("a Heun corrector call without the predictor call of its step: record the run from its first step")
        row, self.pending = self.pending, None
        output = call()
        prev, x0_pred_2 = _unpack(output)
        assert x0_pred_2 is not None
        sigma_next = float(row["sigma_next"])
        outputs = self._outputs(model_output, sample.double(), sigma_next, x0_pred_2)
        row.update(eps_2=outputs["eps"], x0_pred_2=x0_pred_2)
        row[schema.X_PREV] = prev
        return output, row

    def _dpmpp(self, scheduler: Any, at: _Levels, model_output: torch.Tensor, sample: torch.Tensor, call: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
        """DPM-Solver++(2M): diffusers' VP sample times sqrt(1 + sigma^2) is x in sigma space; x0_pred and the previous one are
        the data predictions the scheduler keeps (``model_outputs``); h and r as Lu et al. 2022, Alg. 2 (r 0 where first order)."""
        config = scheduler.config
        last = at.index == len(scheduler.timesteps) - 1
        first_order = scheduler.lower_order_nums < 1 or (last and bool(
            config.euler_at_final or (config.lower_order_final and len(scheduler.timesteps) < 15) or config.final_sigmas_type == "zero"))
        output = call()
        prev = _unpack(output)[0]
        x0_pred, x0_pred_prev = _tensor(scheduler.model_outputs[-1]), scheduler.model_outputs[-2]
        sigma_t, sigma_next = at.level, at.level_next
        x = _scaled(sample, math.sqrt(1.0 + sigma_t**2))
        row = self._sigma_row(scheduler, at, x, model_output, x0_pred)
        h = math.inf if sigma_next == 0 else math.log(sigma_t / sigma_next)  # lambda = -log sigma
        r = 0.0 if first_order else math.log(self.levels(scheduler)[at.index - 1] / sigma_t) / h
        row.update(h=h, r=r, x0_pred_prev=torch.zeros_like(x0_pred) if x0_pred_prev is None else _tensor(x0_pred_prev))  # zeros at the first
        row[schema.X_PREV] = _scaled(prev, math.sqrt(1.0 + sigma_next**2))
        return output, row

    def _flow_row(self, scheduler: Any, at: _Levels, v: torch.Tensor, x: torch.Tensor, prev: torch.Tensor) -> dict[str, Any]:
        """The flow family's row (tracer/samplers/flow.py): x0_pred = x - t v, eps = x + (1 - t) v; t the schedule's nearest
        index round(t T) - 1 (-1 at t = 0); alpha_bar of the same SNR."""
        T = int(scheduler.config.num_train_timesteps)  # noqa: N806
        t, t_next = at.level, at.level_next
        a, b = flow_alpha_bar(t), flow_alpha_bar(t_next)
        x64, v64 = x.double(), v.double()
        return {
            "t": max(round(t * T) - 1, 0), "t_prev": -1 if t_next == 0 else max(round(t_next * T) - 1, 0),
            "alpha_bar_t": a, "alpha_bar_prev": b, "alpha_t": a / b, "beta_t": 1.0 - a / b, "sigma": 0.0,
            "t_flow": t, "t_flow_next": t_next, "t_model": at.t_model, "x_t": x, schema.MODEL_OUTPUT: v,
            "eps": x64 + (1.0 - t) * v64, "x0_pred": x64 - t * v64, "noise": torch.zeros_like(v), schema.X_PREV: prev,
        }


def _nearest_indices(scheduler: Any) -> Callable[[float], int]:
    """sigma -> the schedule index nearest t(sigma), t(sigma) placing sigma linearly between the schedule's levels as
    diffusers' ``np.interp(timesteps, arange(T), sigmas)`` does."""
    alpha_bar = np.asarray(scheduler.alphas_cumprod.detach().cpu().double().numpy())
    levels = np.sqrt((1.0 - alpha_bar) / alpha_bar)
    steps = np.arange(len(levels), dtype=np.float64)
    return lambda sigma: int(round(float(np.interp(sigma, levels, steps))))
