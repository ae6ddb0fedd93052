"""Heun sampling of a flow-matching network: the trapezoidal rule on the flow ODE dx/dt = v_theta(x, t) (Karras et al.
2022, Alg. 1, on the flow path; Esser et al. 2024 compare it) (a sampler plug-in, tracer/samplers/base.py, on the flow
path: tracer/samplers/flow.py).

Each step takes flow_euler's step as a predictor, evaluates the velocity again where it lands, and corrects with the
mean of the two velocities:

    v_i       = v_theta(x_i, t_i)
    x_euler   = x_i + (t_{i+1} - t_i) v_i
    v'_i      = v_theta(x_euler, t_{i+1})
    x_{i+1}   = x_i + (t_{i+1} - t_i) (v_i + v'_i) / 2

The velocity is defined at t = 0 too (x0_pred = x - 0 v), so the last step is corrected as well: 2 N network calls for
N steps. (diffusers' FlowMatchHeunDiscreteScheduler, like Karras et al.'s sigma-space Heun where d' divides by sigma = 0,
takes the last step as a plain Euler step: 2 N - 1 calls.) The trace records the corrector's evaluation as x_euler, and
eps_2 and x0_pred_2, the noise and clean sample its velocity implies (v'_i = eps_2 - x0_pred_2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracer.samplers import flow
from tracer.samplers.base import Evaluation, SigmaStep, SigmaUpdate, sampling

NAME = "flow_heun"
TITLE = "Flow matching, Heun"
REFERENCE = "Karras et al. 2022, Alg. 1 (Heun's second-order steps) on the flow ODE of Liu et al. 2023, Eq. 1"
SPACE = "flow"


@dataclass(frozen=True)
class Options(flow.FlowOptions):
    """Flow Heun's options: the time grid (flow.FlowOptions)."""


PRESETS: dict[str, dict[str, Any]] = {}


def resolve(options: Options, T: int, alpha_bar: Any = None) -> Options:  # noqa: N803
    return flow.resolve_times(options, T, alpha_bar)  # type: ignore[return-value]


plan = flow.plan


def heun_step(x: Any, v: Any, v_2: Any, t: float, t_next: float) -> Any:
    """x_{i+1} = x_i + (t_{i+1} - t_i) (v_i + v'_i) / 2: the trapezoidal rule (Karras et al. 2022, Alg. 1, line 8)."""
    return x + (v + v_2) * (0.5 * (t_next - t))


def flow_step(resolved: Options, step: SigmaStep, x: Any, evaluate: Callable[[Any, float], Evaluation],
              draw: Callable[[], Any], previous: SigmaUpdate | None) -> SigmaUpdate:
    """One Heun step from t_i = ``step.sigma_t`` to t_{i+1} = ``step.sigma_next`` (the loop's levels are flow times here)."""
    first = evaluate(x, step.sigma_t)
    x_euler = flow.euler_step(x, first.output, step.sigma_t, step.sigma_next)
    second = evaluate(x_euler, step.sigma_next)
    x_next = heun_step(x, first.output, second.output, step.sigma_t, step.sigma_next)
    return SigmaUpdate(x_next, first, fields={"x_euler": x_euler, "eps_2": second.eps, "x0_pred_2": second.x0_pred})


# -- its equations (tracer/equations) ------------------------------------------------------------------------

STEP_EQUATION = "flow_heun.step"
STEP_NEEDS: tuple[str, ...] = ("x_t", "model_output", "x_euler", "eps_2", "x0_pred_2", "t_flow", "t_flow_next")


def equations() -> tuple[Any, ...]:
    """Its entries for the equation registry (tracer/equations/registry.py), which calls this once it loads."""
    from tracer.equations import checks
    from tracer.equations.equation import Equation

    return (
        Equation(
            "flow_heun.predictor", "Heun's Euler predictor on the flow ODE", "Karras et al. 2022, Alg. 1, lines 4-5",
            r"x_{i+1}^{\mathrm{Euler}} = x_i + (t_{i+1} - t_i)\,v_\theta(x_i, t_i)",
            "tracer.samplers.flow.euler_step", ("x_t", "model_output", "x_euler"),
            check=checks.flow_heun_predictor, applies_to=sampling("x_t", "model_output", "x_euler", "t_flow", "t_flow_next", sampler=NAME),
            values=flow.values_euler,
        ),
        Equation(
            STEP_EQUATION, "Heun step on the flow ODE (trapezoidal correction)", "Karras et al. 2022, Alg. 1, lines 6-8",
            r"x_{i+1} = x_i + (t_{i+1} - t_i)\,\tfrac12\big(v_\theta(x_i, t_i) + v_\theta(x_{i+1}^{\mathrm{Euler}}, t_{i+1})\big),"
            r"\quad v_\theta(x_{i+1}^{\mathrm{Euler}}, t_{i+1}) = \epsilon^{(2)} - \hat x_0^{(2)}",
            "tracer.samplers.flow_heun.heun_step", ("x_t", "model_output", "eps_2", "x0_pred_2"),
            check=checks.flow_heun_step, applies_to=sampling(*STEP_NEEDS, sampler=NAME), values=flow.values_heun,
        ),
    )
