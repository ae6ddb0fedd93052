"""Sampling a flow-matching network (Lipman et al. 2023; rectified flow, Liu et al. 2023): what the ``flow_euler`` and
``flow_heun`` plug-ins share (tracer/samplers/base.py; they run in the shared loop's continuous branch, tracer/samplers/loop.py).

The path, in the convention of current image models (SD3, Esser et al. 2024; diffusers' FlowMatchEulerDiscreteScheduler):

    x_t = (1 - t) x0 + t eps,   t in [0, 1]   (t = 0: data, t = 1: pure noise)
    v   = dx_t / dt = eps - x0                  (what the network predicts, called at the time t T)

Some libraries (and Lipman et al.'s paper) run time the other way, x_s = s x1 + (1 - s) x0 with s = 1 - t, x1 the data
and x0 the noise: their velocity is the negative of this one (s -> 1 - t, v -> -v); the ODE and its solutions are the same.

From one velocity the clean-sample and noise estimates follow, so a flow trace records the same x0_pred and eps as a
diffusion trace (``velocity_to_eps_x0``):

    x0_pred = x_t - t v,    eps = x_t + (1 - t) v

Sampling solves the ODE dx/dt = v_theta(x, t) from t = 1 (x = x_T ~ N(0, I)) down to t = 0 over the times
t_0 = 1 > t_1 > ... > t_N = 0: the uniform grid t_i = 1 - i / N, shifted by s as SD3 does (Esser et al. 2024, Sec. 5.3.2):

    t' = s t / (1 + (s - 1) t)                (s = 1: uniform; s > 1 spends more steps at high noise)

Each time's noise level, for lining a flow trace up with diffusion traces (same log SNR), is the alpha_bar of the
same signal-to-noise ratio: SNR(t) = (1 - t)^2 / t^2, alpha_bar(t) = (1 - t)^2 / ((1 - t)^2 + t^2)
(tracer/schedules.py ``flow_alpha_bar``). The network is called at t T (T of its ``flow`` schedule), the schedule
index a time records is the nearest one, round(t T) - 1 (the schedule's times are t_k = (k + 1) / T; -1 at t = 0).

Torch-free: the functions work on torch tensors and NumPy arrays alike.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from tracer.config import ConfigError
from tracer.samplers.base import check_steps, option
from tracer.schedules import flow_alpha_bar

DEFAULT_STEPS = 50
LIPMAN = "Lipman et al. 2023"
ESSER = "Esser et al. 2024 (SD3)"

__all__ = ["FlowOptions", "alpha_bar_of_time", "flow_alpha_bar", "flow_times", "shift_time", "velocity_to_eps_x0"]


# -- the time grid -------------------------------------------------------------------------------------------------


def shift_time(t: float, shift: float) -> float:
    """t' = s t / (1 + (s - 1) t): SD3's shift of the time grid (Esser et al. 2024, Sec. 5.3.2); 0 and 1 stay."""
    return shift * t / (1.0 + (shift - 1.0) * t)


def flow_times(steps: int, shift: float) -> list[float]:
    """t_i = shift(1 - i / N), i = 0..N: from pure noise (1) to the data (0), N steps."""
    return [shift_time(1.0 - i / steps, shift) for i in range(steps)] + [0.0]


def alpha_bar_of_time(t: float) -> float:
    """alpha_bar(t) = (1 - t)^2 / ((1 - t)^2 + t^2): the VP alpha_bar of the same SNR (1 - t)^2 / t^2."""
    return flow_alpha_bar(t)


def schedule_index(t: float, T: int) -> int:  # noqa: N803
    """The nearest index of the flow schedule (times (k + 1) / T): round(t T) - 1, at least 0 where t > 0; -1 at t = 0."""
    return -1 if t == 0 else max(round(t * T) - 1, 0)


def model_time(t: float, T: int) -> float:  # noqa: N803
    """t_model = t T: the time a flow network is called with (diffusers' timestep = sigma * num_train_timesteps)."""
    return t * T


# -- the velocity and what it implies -----------------------------------------------------------------------------


def velocity_to_eps_x0(v: Any, x_t: Any, t: float) -> tuple[Any, Any]:
    """(eps, x0_pred) = (x_t + (1 - t) v, x_t - t v): the noise and the clean sample a velocity implies on x_t = (1 - t) x0 + t eps."""
    return x_t + (1.0 - t) * v, x_t - t * v


def euler_step(x: Any, v: Any, t: float, t_next: float) -> Any:
    """x_{i+1} = x_i + (t_{i+1} - t_i) v_theta(x_i, t_i): one Euler step of dx/dt = v (Liu et al. 2023, Eq. 1; Lipman et al. 2023, Sec. 6)."""
    return x + (t_next - t) * v


# -- the options both share ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowOptions:
    """The time grid of a flow run: ``steps`` N (default 50) on the uniform grid shifted by ``shift``; ``times`` explicit instead."""

    steps: int | None = option(None, f"steps N >= 1 (default {DEFAULT_STEPS})")
    shift: float = option(1.0, "the time shift s > 0 of SD3: t' = s t / (1 + (s - 1) t) (1: the uniform grid; SD3 uses 3)")
    times: tuple[float, ...] | None = dataclasses.field(default=None, metadata={"help": "resolved: the times t_0 = 1 > ... > t_N = 0",
                                                                                "cli": False})

    def __post_init__(self) -> None:
        check_steps(self.steps)
        if isinstance(self.shift, bool) or not isinstance(self.shift, (int, float)) or not (math.isfinite(self.shift) and self.shift > 0):
            raise ConfigError(f"--shift must be a finite number > 0, got {self.shift!r}")
        if self.times is not None:
            times = tuple(float(t) for t in self.times)
            if len(times) < 2 or any(not 0.0 <= t <= 1.0 for t in times) or any(a <= b for a, b in zip(times, times[1:])):
                raise ConfigError(f"flow times must lie in [0, 1] and descend strictly, at least two of them, got {list(times)}")
            object.__setattr__(self, "times", times)


def resolve_times(options: FlowOptions, T: int, alpha_bar: Any = None) -> FlowOptions:  # noqa: N803
    """``options`` with ``steps`` and the grid's ``times`` filled in (the last is the end, 0 for the clean sample)."""
    if options.times is not None:
        if options.steps is not None and options.steps != len(options.times) - 1:
            raise ConfigError("give either steps or times, not both")
        return dataclasses.replace(options, steps=len(options.times) - 1)
    steps = options.steps if options.steps is not None else DEFAULT_STEPS
    return dataclasses.replace(options, steps=steps, times=tuple(flow_times(steps, float(options.shift))))


def plan(resolved: FlowOptions, T: int) -> list[tuple[int, int]]:  # noqa: N803
    """(t, t_prev) of every step: the flow schedule's nearest indices of t_i and t_{i+1} (-1 at t = 0)."""
    assert resolved.times is not None, "plan() takes resolve()'s options"
    indices = [schedule_index(t, T) for t in resolved.times]
    return list(zip(indices[:-1], indices[1:]))


# -- the equations every flow trace shares (tracer/equations/registry.py lists them) -------------------------------


def _flow_space(*names: str) -> Any:
    def applies(facts: Any) -> bool:
        return bool(facts.kind == "sampling" and facts.space == "flow" and facts.has(*names))

    return applies


def _flow_training(*names: str) -> Any:
    def applies(facts: Any) -> bool:
        return bool(facts.kind == "training" and facts.objective == "flow" and all(n in facts.example_names for n in names))

    return applies


def _v_forward(v: Any) -> str:
    k = v.t()
    return rf"x_t = (1 - t)\,x_0 + t\,\epsilon,\quad t = \frac{{{k} + 1}}{{T}}"


def _v_loss(v: Any) -> str:
    return rf"\big\lVert v_\theta(x_t, t) - (\epsilon - x_0) \big\rVert^2 = {v.n('loss', 'L')}"


def _v_time(v: Any) -> str:
    t, a = v.n("t_flow", "t_i"), v.n("alpha_bar_t", r"\bar\alpha_t")
    return rf"t_i = {t},\ \bar\alpha_t = {a},\ t_{{\mathrm{{model}}}} = {v.n('t_model', 't_i T')}"


def _v_x0(v: Any) -> str:
    t = v.n("t_flow", "t_i")
    return rf"\hat x_0 = x_t - {t}\,v_\theta,\quad \epsilon = x_t + (1 - {t})\,v_\theta"


def values_euler(v: Any) -> str:
    t, t_next = v.n("t_flow", "t_i"), v.n("t_flow_next", "t_{i+1}")
    return rf"x_{{i+1}} = x_i + ({t_next} - {t})\,v_\theta(x_i, t_i)"


def values_heun(v: Any) -> str:
    t, t_next = v.n("t_flow", "t_i"), v.n("t_flow_next", "t_{i+1}")
    return rf"x_{{i+1}} = x_i + ({t_next} - {t})\,\tfrac12\big(v_\theta(x_i, t_i) + v_\theta(x^{{\mathrm{{Euler}}}}_{{i+1}}, t_{{i+1}})\big)"


def equations() -> tuple[Any, ...]:
    """The equations of every flow trace: the time's noise level and network time, x0_pred and eps from the velocity; and of a
    flow network's training trace: the path and the loss."""
    from tracer.equations import checks
    from tracer.equations.equation import Equation
    from tracer.trace import schema

    return (
        Equation(
            "flow.time", "A flow time's noise level and network time", f"{ESSER}, Sec. 3 (SNR of the rectified-flow path)",
            r"\bar\alpha_t = \frac{(1-t_i)^2}{(1-t_i)^2 + t_i^2},\quad \bar\alpha_{t_{\mathrm{prev}}} = \frac{(1-t_{i+1})^2}{(1-t_{i+1})^2 + t_{i+1}^2},"
            r"\quad t_{\mathrm{model}} = t_i\,T,\quad t = \operatorname{round}(t_i T) - 1",
            "tracer.samplers.flow.alpha_bar_of_time", ("t_flow", "t_flow_next", "alpha_bar_t", "alpha_bar_prev", "t_model", "t", "t_prev"),
            precision="scalar", check=checks.flow_time, applies_to=_flow_space("t_flow", "t_flow_next"), values=_v_time,
        ),
        Equation(
            "flow.x0", "Clean sample and noise from the velocity", f"{LIPMAN}, Eq. 20-23 (sigma_min = 0); Liu et al. 2023, Eq. 1",
            r"\hat x_0 = x_t - t_i\,v_\theta(x_t, t_i),\quad \epsilon = x_t + (1 - t_i)\,v_\theta(x_t, t_i)",
            "tracer.samplers.flow.velocity_to_eps_x0", ("x_t", "model_output", "x0_pred", "eps", "x_euler", "eps_2", "x0_pred_2"),
            check=checks.flow_x0, applies_to=_flow_space("x_t", "model_output", "x0_pred", "eps", "t_flow"), values=_v_x0,
        ),
        Equation(
            "flow.forward", "The flow path", f"{LIPMAN}, Eq. 20 (sigma_min = 0); Liu et al. 2023, Eq. 1",
            r"x_t = (1 - t)\,x_0 + t\,\epsilon,\quad t = \frac{k + 1}{T},\ \epsilon \sim \mathcal N(0, I)",
            "tracer.forward.flow_sample", ("x0", "eps", "x_t"),
            series=schema.EXAMPLES, check=checks.flow_forward, applies_to=_flow_training("t", "x0", "eps", "x_t"), values=_v_forward,
        ),
        Equation(
            "flow.loss", "The flow-matching loss", f"{LIPMAN}, Eq. 23 (conditional flow matching)",
            r"L = \big\lVert v_\theta(x_t, t) - (\epsilon - x_0) \big\rVert^2",
            "tracer.training.Trainer._flow_loss_per_sample", ("model_output", "target", "x0", "eps", "loss"),
            series=schema.EXAMPLES, check=checks.flow_loss, applies_to=_flow_training("model_output", "target", "loss"), values=_v_loss,
        ),
    )
