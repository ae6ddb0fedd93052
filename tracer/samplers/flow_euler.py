"""Euler sampling of a flow-matching network (Liu et al. 2023, Eq. 1; Lipman et al. 2023, Sec. 6; as diffusers'
FlowMatchEulerDiscreteScheduler) (a sampler plug-in, tracer/samplers/base.py, on the flow path: tracer/samplers/flow.py).

Each step, from the time t_i to t_{i+1} (the last to 0), evaluates the velocity once and takes one Euler step of
dx/dt = v_theta(x, t):

    v_i     = v_theta(x_i, t_i T)                       (guided where asked)
    x_{i+1} = x_i + (t_{i+1} - t_i) v_i

With the flow path x_t = (1 - t) x0 + t eps this is DDIM with eta 0 written in the path's own variable: the step keeps
x0_pred = x_i - t_i v_i and eps = x_i + (1 - t_i) v_i and moves to (1 - t_{i+1}) x0_pred + t_{i+1} eps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracer.samplers import flow
from tracer.samplers.base import Evaluation, SigmaStep, SigmaUpdate

NAME = "flow_euler"
TITLE = "Flow matching, Euler"
REFERENCE = "Liu et al. 2023, Eq. 1; Lipman et al. 2023, Sec. 6 (Euler steps of the flow ODE)"
SPACE = "flow"


@dataclass(frozen=True)
class Options(flow.FlowOptions):
    """Flow Euler's options: the time grid (flow.FlowOptions)."""


PRESETS: dict[str, dict[str, Any]] = {}


def resolve(options: Options, T: int, alpha_bar: Any = None) -> Options:  # noqa: N803
    return flow.resolve_times(options, T, alpha_bar)  # type: ignore[return-value]


plan = flow.plan


def flow_step(resolved: Options, step: SigmaStep, x: Any, evaluate: Callable[[Any, float], Evaluation],
              draw: Callable[[], Any], previous: SigmaUpdate | None) -> SigmaUpdate:
    """One Euler step from t_i = ``step.sigma_t`` to t_{i+1} = ``step.sigma_next`` (the loop's levels are flow times here)."""
    first = evaluate(x, step.sigma_t)
    return SigmaUpdate(flow.euler_step(x, first.output, step.sigma_t, step.sigma_next), first)


# -- its equations (tracer/equations) ------------------------------------------------------------------------

STEP_EQUATION = "flow_euler.step"
STEP_NEEDS: tuple[str, ...] = ("x_t", "model_output", "t_flow", "t_flow_next")


def equations() -> tuple[Any, ...]:
    """Its entries for the equation registry (tracer/equations/registry.py), which calls this once it loads."""
    from tracer.equations import checks
    from tracer.equations.equation import Equation
    from tracer.samplers.base import sampling

    return (
        Equation(
            STEP_EQUATION, "Euler step of the flow ODE", "Liu et al. 2023, Eq. 1; Lipman et al. 2023, Sec. 6",
            r"x_{i+1} = x_i + (t_{i+1} - t_i)\,v_\theta(x_i, t_i)",
            "tracer.samplers.flow.euler_step", ("x_t", "model_output", "t_flow", "t_flow_next"),
            check=checks.flow_euler_step, applies_to=sampling(*STEP_NEEDS, sampler=NAME), values=flow.values_euler,
        ),
    )
