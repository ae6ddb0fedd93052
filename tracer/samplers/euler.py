"""Euler sampling in sigma space: Karras et al. 2022, Alg. 2 without its second-order correction (a sampler plug-in,
tracer/samplers/base.py, in sigma space: tracer/samplers/karras.py).

Each step, from the noise level sigma_i to sigma_{i+1} (the last to 0), optionally churns (Alg. 2, lines 4-6),
evaluates the denoiser and takes one Euler step of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma
(Eq. 3 with sigma(t) = t):

    sigma_hat = sigma_i (1 + gamma_i),  x_hat = x_i + sqrt(sigma_hat^2 - sigma_i^2) S_noise z     (Alg. 2, lines 4-6)
    d_i       = (x_hat - D(x_hat; sigma_hat)) / sigma_hat                                          (Alg. 2, line 7)
    x_{i+1}   = x_hat + (sigma_{i+1} - sigma_hat) d_i                                              (Alg. 2, line 8)

With an eps network d_i = eps_theta: this is DDIM with eta 0 (Song et al. 2021, Eq. 14) in sigma space.
k-diffusion's ``sample_euler`` and diffusers' EulerDiscreteScheduler take the same steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracer.samplers import karras
from tracer.samplers.base import Evaluation, SigmaStep, SigmaUpdate

NAME = "euler"
TITLE = "Euler (sigma space)"
REFERENCE = "Karras et al. 2022, Alg. 2 (Euler steps, lines 4-8) and Eq. 5"
SPACE = "sigma"


@dataclass(frozen=True)
class Options(karras.ChurnOptions):
    """Euler's options: the noise levels (karras.SigmaOptions) and churn (S_churn 0: deterministic)."""


PRESETS: dict[str, dict[str, Any]] = {}


def resolve(options: Options, T: int, alpha_bar: Any = None) -> Options:  # noqa: N803
    return karras.resolve_sigmas(options, T, alpha_bar)  # type: ignore[return-value]


plan = karras.plan


def sigma_step(resolved: Options, step: SigmaStep, x: Any, evaluate: Callable[[Any, float], Evaluation],
               draw: Callable[[], Any], previous: SigmaUpdate | None) -> SigmaUpdate:
    sigma_hat, x_hat, z, std = karras.churned(resolved, step, x, draw)  # Alg. 2, lines 4-6
    first = evaluate(x_hat, sigma_hat)
    x_next = karras.euler_step(x_hat, first.x0_pred, sigma_hat, step.sigma_next)  # Alg. 2, lines 7-8
    return SigmaUpdate(x_next, first, z, std, karras.churn_fields(resolved, sigma_hat, x_hat))


# -- its equations (tracer/equations) ------------------------------------------------------------------------

STEP_EQUATION = "euler.step"
STEP_NEEDS: tuple[str, ...] = ("x_t", "x0_pred", "sigma_t", "sigma_next")


def equations() -> tuple[Any, ...]:
    """Its entries for the equation registry (tracer/equations/registry.py), which calls this once it loads."""
    from tracer.equations import checks
    from tracer.equations.equation import Equation
    from tracer.samplers.base import sampling

    return (
        Equation(
            STEP_EQUATION, "Euler step in sigma space", "Karras et al. 2022, Alg. 2, lines 7-8",
            r"x_{i+1} = \hat x_i + (\sigma_{i+1} - \hat\sigma_i)\,\frac{\hat x_i - \hat x_0}{\hat\sigma_i}",
            "tracer.samplers.karras.euler_step", ("x_t", "x_hat", "x0_pred", "sigma_t", "sigma_hat", "sigma_next"),
            check=checks.euler_step, applies_to=sampling(*STEP_NEEDS, sampler=NAME), values=karras.values_euler,
        ),
    )
