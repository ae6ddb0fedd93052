"""DPM-Solver++(2M): Lu et al. 2022 (arXiv 2211.01095), Alg. 2, the multistep second-order solver of the data-prediction
ODE, in sigma space as k-diffusion's ``sample_dpmpp_2m`` (a sampler plug-in, tracer/samplers/base.py, in sigma space:
tracer/samplers/karras.py).

With lambda = -log sigma (alpha = 1 in sigma space, Eq. 9 of the paper with alpha_t / sigma_t = 1 / sigma),
step i from sigma_i to sigma_{i+1} uses the data prediction x0_pred_i = D(x_i; sigma_i) and the previous
step's x0_pred_{i-1}:

    h_i = lambda_{i+1} - lambda_i = log(sigma_i / sigma_{i+1}),   r_i = h_{i-1} / h_i
    D_i = (1 + 1 / (2 r_i)) x0_pred_i - 1 / (2 r_i) x0_pred_{i-1}                          (Alg. 2, line 5)
    x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h_i} - 1) D_i                              (Alg. 2, line 6)

First order (D_i = x0_pred_i: DDIM's step, Eq. 6 of the paper) at the first step, which has no previous
prediction, and where sigma_{i+1} = 0 (h infinite: x_{i+1} = x0_pred_i), as k-diffusion does. The trace records
x0_pred_prev (zeros at the first step), h and r (0 where the step is first order), so ``check`` verifies every
update from recorded tensors alone. One network call a step. diffusers' DPMSolverMultistepScheduler
(``algorithm_type="dpmsolver++"``, ``solver_order=2``, ``final_sigmas_type="zero"``) agrees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracer.samplers import karras
from tracer.samplers.base import Evaluation, SigmaStep, SigmaUpdate, sampling

NAME = "dpmpp_2m"
TITLE = "DPM-Solver++(2M)"
REFERENCE = "Lu et al. 2022 (DPM-Solver++), Alg. 2"
SPACE = "sigma"


@dataclass(frozen=True)
class Options(karras.SigmaOptions):
    """DPM-Solver++(2M)'s options: the noise levels (karras.SigmaOptions)."""


PRESETS: dict[str, dict[str, Any]] = {}


def resolve(options: Options, T: int, alpha_bar: Any = None) -> Options:  # noqa: N803
    return karras.resolve_sigmas(options, T, alpha_bar)  # type: ignore[return-value]


plan = karras.plan


def step_sizes(sigma: float, sigma_next: float, sigma_prev: float | None) -> tuple[float, float]:
    """(h, r): h = log(sigma_i / sigma_{i+1}) (inf where sigma_{i+1} = 0), r = h_{i-1} / h, 0 where the step is first order."""
    h = math.inf if sigma_next == 0 else math.log(sigma / sigma_next)
    if sigma_prev is None or sigma_next == 0:
        return h, 0.0
    return h, math.log(sigma_prev / sigma) / h


def dpmpp_2m_step(x: Any, x0_pred: Any, x0_pred_prev: Any, sigma: float, sigma_next: float, h: float, r: float) -> Any:
    """x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h} - 1) D,  D = (1 + 1/(2r)) x0_pred - 1/(2r) x0_pred_prev, or x0_pred
    where r = 0 (first order)  (Lu et al. 2022, Alg. 2, lines 5-6)."""
    denoised = x0_pred if r == 0 else (1.0 + 1.0 / (2.0 * r)) * x0_pred - (1.0 / (2.0 * r)) * x0_pred_prev
    return (sigma_next / sigma) * x - math.expm1(-h) * denoised


def sigma_step(resolved: Options, step: SigmaStep, x: Any, evaluate: Callable[[Any, float], Evaluation],
               draw: Callable[[], Any], previous: SigmaUpdate | None) -> SigmaUpdate:
    first = evaluate(x, step.sigma_t)
    h, r = step_sizes(step.sigma_t, step.sigma_next, step.sigma_prev)
    x0_pred_prev = previous.first.x0_pred if previous is not None else first.x0_pred * 0.0
    x_next = dpmpp_2m_step(x, first.x0_pred, x0_pred_prev, step.sigma_t, step.sigma_next, h, r)
    return SigmaUpdate(x_next, first, None, 0.0, {"h": h, "r": r, "x0_pred_prev": x0_pred_prev})


# -- its equations (tracer/equations) ------------------------------------------------------------------------

STEP_EQUATION = "dpmpp_2m.step"
STEP_NEEDS: tuple[str, ...] = ("x_t", "x0_pred", "x0_pred_prev", "sigma_t", "sigma_next", "h", "r")


def equations() -> tuple[Any, ...]:
    """Its entries for the equation registry (tracer/equations/registry.py), which calls this once it loads."""
    from tracer.equations import checks
    from tracer.equations.equation import Equation

    return (
        Equation(
            "dpmpp_2m.h", "DPM-Solver++ step size and ratio", "Lu et al. 2022, Alg. 2, lines 3-4",
            r"h_i = \lambda_{i+1} - \lambda_i = \log\frac{\sigma_i}{\sigma_{i+1}},\quad r_i = \frac{h_{i-1}}{h_i}"
            r"\quad(r_i = 0 \text{ at a first-order step})",
            "tracer.samplers.dpmpp_2m.step_sizes", ("sigma_t", "sigma_next", "h", "r"),
            precision="scalar", check=checks.dpmpp_h, applies_to=sampling("sigma_t", "sigma_next", "h", "r", sampler=NAME),
            values=karras.values_dpmpp_h, symbol=r"h_i,\ r_i",
        ),
        Equation(
            STEP_EQUATION, "DPM-Solver++(2M) step", "Lu et al. 2022, Alg. 2, lines 5-6",
            r"x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i}\,x_i - (e^{-h_i} - 1)\Big(\big(1 + \tfrac{1}{2r_i}\big)\hat x_0^{(i)}"
            r" - \tfrac{1}{2r_i}\,\hat x_0^{(i-1)}\Big)\quad(\hat x_0^{(i)} \text{ alone where first order})",
            "tracer.samplers.dpmpp_2m.dpmpp_2m_step", ("x_t", "x0_pred", "x0_pred_prev"),
            check=checks.dpmpp_2m_step, applies_to=sampling(*STEP_NEEDS, sampler=NAME), values=karras.values_dpmpp,
        ),
    )
