"""Heun sampling in sigma space: Karras et al. 2022, Alg. 1 (deterministic) and Alg. 2 (with churn) (a sampler plug-in,
tracer/samplers/base.py, in sigma space: tracer/samplers/karras.py).

Each step takes the Euler step of euler.py as a predictor, evaluates the denoiser again where it lands, and
corrects with the mean of the two slopes (the trapezoidal rule):

    d_i       = (x_hat - D(x_hat; sigma_hat)) / sigma_hat                            (Alg. 2, line 7)
    x_euler   = x_hat + (sigma_{i+1} - sigma_hat) d_i                                (Alg. 2, line 8)
    d'_i      = (x_euler - D(x_euler; sigma_{i+1})) / sigma_{i+1}                     (Alg. 2, line 10)
    x_{i+1}   = x_hat + (sigma_{i+1} - sigma_hat) (d_i + d'_i) / 2                   (Alg. 2, line 11)

Where sigma_{i+1} = 0 the step is the Euler step alone (Alg. 2, line 9: d' is undefined at sigma = 0).
The trace records both evaluations: the first as eps and x0_pred, the corrector's as eps_2 and x0_pred_2
at x_euler (zeros at a plain Euler step, whose x_euler is its output). 2 N - 1 network calls for N steps
ending at 0. k-diffusion's ``sample_heun`` and diffusers' HeunDiscreteScheduler take the same steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracer.samplers import karras
from tracer.samplers.base import Evaluation, SigmaStep, SigmaUpdate, sampling

NAME = "heun"
TITLE = "Heun (sigma space)"
REFERENCE = "Karras et al. 2022, Alg. 1 and 2"
SPACE = "sigma"


@dataclass(frozen=True)
class Options(karras.ChurnOptions):
    """Heun's options: the noise levels (karras.SigmaOptions) and churn (S_churn 0: Alg. 1, deterministic)."""


PRESETS: dict[str, dict[str, Any]] = {}


def resolve(options: Options, T: int, alpha_bar: Any = None) -> Options:  # noqa: N803
    return karras.resolve_sigmas(options, T, alpha_bar)  # type: ignore[return-value]


plan = karras.plan


def heun_step(x: Any, x0_pred: Any, x_euler: Any, x0_pred_2: Any, sigma: float, sigma_next: float) -> Any:
    """x_{i+1} = x + (sigma_{i+1} - sigma) (d + d') / 2,  d = (x - x0_pred) / sigma,  d' = (x_euler - x0_pred_2) / sigma_{i+1}
    (Karras et al. 2022, Alg. 2, lines 10-11)."""
    d = (x - x0_pred) / sigma
    d_2 = (x_euler - x0_pred_2) / sigma_next
    return x + (d + d_2) * (0.5 * (sigma_next - sigma))


def sigma_step(resolved: Options, step: SigmaStep, x: Any, evaluate: Callable[[Any, float], Evaluation],
               draw: Callable[[], Any], previous: SigmaUpdate | None) -> SigmaUpdate:
    sigma_hat, x_hat, z, std = karras.churned(resolved, step, x, draw)  # Alg. 2, lines 4-6
    first = evaluate(x_hat, sigma_hat)
    x_euler = karras.euler_step(x_hat, first.x0_pred, sigma_hat, step.sigma_next)  # Alg. 2, lines 7-8
    fields: dict[str, Any] = {**karras.churn_fields(resolved, sigma_hat, x_hat), "x_euler": x_euler}
    if step.sigma_next == 0:  # Alg. 2, line 9: no correction at sigma = 0
        fields.update(eps_2=first.eps * 0.0, x0_pred_2=first.x0_pred * 0.0)
        return SigmaUpdate(x_euler, first, z, std, fields)
    second = evaluate(x_euler, step.sigma_next)  # Alg. 2, line 10
    fields.update(eps_2=second.eps, x0_pred_2=second.x0_pred)
    x_next = heun_step(x_hat, first.x0_pred, x_euler, second.x0_pred, sigma_hat, step.sigma_next)  # Alg. 2, line 11
    return SigmaUpdate(x_next, first, z, std, fields)


# -- its equations (tracer/equations) ------------------------------------------------------------------------

STEP_EQUATION = "heun.step"
STEP_NEEDS: tuple[str, ...] = ("x_t", "x0_pred", "x_euler", "x0_pred_2", "sigma_t", "sigma_next")


def equations() -> tuple[Any, ...]:
    """Its entries for the equation registry (tracer/equations/registry.py), which calls this once it loads."""
    from tracer.equations import checks
    from tracer.equations.equation import Equation

    return (
        Equation(
            "heun.predictor", "Heun's Euler predictor", "Karras et al. 2022, Alg. 2, lines 7-8",
            r"x_{i+1}^{\mathrm{Euler}} = \hat x_i + (\sigma_{i+1} - \hat\sigma_i)\,\frac{\hat x_i - \hat x_0}{\hat\sigma_i}",
            "tracer.samplers.karras.euler_step", ("x_t", "x_hat", "x0_pred", "x_euler"),
            check=checks.heun_predictor, applies_to=sampling("x_t", "x0_pred", "x_euler", "sigma_t", "sigma_next", sampler=NAME),
            values=karras.values_euler,
        ),
        Equation(
            STEP_EQUATION, "Heun step (trapezoidal correction)", "Karras et al. 2022, Alg. 2, lines 9-11",
            r"x_{i+1} = \hat x_i + (\sigma_{i+1} - \hat\sigma_i)\,\tfrac12\Big(\frac{\hat x_i - \hat x_0}{\hat\sigma_i}"
            r" + \frac{x_{i+1}^{\mathrm{Euler}} - \hat x_0^{(2)}}{\sigma_{i+1}}\Big)\quad(\text{Euler where } \sigma_{i+1} = 0)",
            "tracer.samplers.heun.heun_step", ("x_t", "x_hat", "x0_pred", "x_euler", "x0_pred_2"),
            check=checks.heun_step, applies_to=sampling(*STEP_NEEDS, sampler=NAME), values=karras.values_heun,
        ),
    )
