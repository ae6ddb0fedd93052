"""Euler ancestral sampling in sigma space (k-diffusion's ``sample_euler_ancestral``; diffusers'
EulerAncestralDiscreteScheduler) (a sampler plug-in, tracer/samplers/base.py, in sigma space: tracer/samplers/karras.py).

Each step from sigma_i to sigma_{i+1} splits the move into a deterministic Euler step down to sigma_down and
fresh noise of std sigma_up, with sigma_down^2 + sigma_up^2 = sigma_{i+1}^2 (k-diffusion's ``get_ancestral_step``;
with eta = 1 the step samples the DDPM posterior's noise level, Ho et al. 2020, Eq. 7, in sigma space):

    sigma_up   = min(sigma_{i+1}, eta sqrt(sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2))
    sigma_down = sqrt(sigma_{i+1}^2 - sigma_up^2)
    x_{i+1}    = x_i + (sigma_down - sigma_i) (x_i - D(x_i; sigma_i)) / sigma_i + S_noise sigma_up z

eta = 0 is Euler. No noise is drawn where sigma_up = 0 (the last step, to 0). The trace's ``sigma``, the std of
the noise the step adds, is S_noise sigma_up; ``noise`` is the z drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracer.config import ConfigError
from tracer.samplers import karras
from tracer.samplers.base import Evaluation, SigmaStep, SigmaUpdate, check_unit_interval, option, sampling

NAME = "euler_ancestral"
TITLE = "Euler ancestral (sigma space)"
REFERENCE = "Karras et al. 2022, Alg. 2 (Euler steps) with k-diffusion's ancestral split"
SPACE = "sigma"


@dataclass(frozen=True)
class Options(karras.SigmaOptions):
    """Euler ancestral's options: the noise levels (karras.SigmaOptions), eta and S_noise."""

    eta: float = option(1.0, "eta in [0, 1]: the share of the step taken as fresh noise (0: Euler, 1: the posterior's)")
    s_noise: float = option(1.0, "S_noise: the std of the fresh noise, relative")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unit_interval("eta", self.eta)
        if isinstance(self.s_noise, bool) or not isinstance(self.s_noise, (int, float)) or not (math.isfinite(self.s_noise) and self.s_noise >= 0):
            raise ConfigError(f"--s-noise must be >= 0, got {self.s_noise!r}")


PRESETS: dict[str, dict[str, Any]] = {}


def resolve(options: Options, T: int, alpha_bar: Any = None) -> Options:  # noqa: N803
    return karras.resolve_sigmas(options, T, alpha_bar)  # type: ignore[return-value]


plan = karras.plan


def ancestral_sigmas(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(sigma_down, sigma_up): sigma_up = min(sigma', eta sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2)),
    sigma_down = sqrt(sigma'^2 - sigma_up^2)  (k-diffusion's get_ancestral_step)."""
    if not eta:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def ancestral_step(x: Any, x0_pred: Any, sigma: float, sigma_down: float, noise_std: float, noise: Any) -> Any:
    """x_{i+1} = x + (sigma_down - sigma) (x - x0_pred) / sigma + S_noise sigma_up z  (noise_std = S_noise sigma_up)."""
    d = (x - x0_pred) / sigma
    return x + d * (sigma_down - sigma) + noise_std * noise


def sigma_step(resolved: Options, step: SigmaStep, x: Any, evaluate: Callable[[Any, float], Evaluation],
               draw: Callable[[], Any], previous: SigmaUpdate | None) -> SigmaUpdate:
    first = evaluate(x, step.sigma_t)
    sigma_down, sigma_up = ancestral_sigmas(step.sigma_t, step.sigma_next, resolved.eta)
    std = resolved.s_noise * sigma_up if step.sigma_next > 0 else 0.0
    z = draw() if std > 0 else None
    x_next = ancestral_step(x, first.x0_pred, step.sigma_t, sigma_down, std, z if z is not None else 0.0)
    return SigmaUpdate(x_next, first, z, std, {"sigma_up": sigma_up, "sigma_down": sigma_down})


# -- its equations (tracer/equations) ------------------------------------------------------------------------

STEP_EQUATION = "euler_ancestral.step"
STEP_NEEDS: tuple[str, ...] = ("x_t", "x0_pred", "noise", "sigma", "sigma_t", "sigma_down")


def equations() -> tuple[Any, ...]:
    """Its entries for the equation registry (tracer/equations/registry.py), which calls this once it loads."""
    from tracer.equations import checks
    from tracer.equations.equation import Equation

    return (
        Equation(
            "euler_ancestral.sigmas", "Ancestral split of a step", "k-diffusion get_ancestral_step (Karras et al. 2022, Sec. 4)",
            r"\sigma_{\uparrow} = \min\Big(\sigma_{i+1},\ \eta\sqrt{\sigma_{i+1}^2(\sigma_i^2-\sigma_{i+1}^2)/\sigma_i^2}\Big),\quad"
            r"\sigma_{\downarrow} = \sqrt{\sigma_{i+1}^2 - \sigma_{\uparrow}^2},\quad \sigma = S_{\mathrm{noise}}\,\sigma_{\uparrow}",
            "tracer.samplers.euler_ancestral.ancestral_sigmas", ("sigma_t", "sigma_next", "sigma_up", "sigma_down", "sigma"),
            precision="scalar", check=checks.ancestral_sigmas,
            applies_to=sampling("sigma_t", "sigma_next", "sigma_up", "sigma_down", "sigma", sampler=NAME), values=karras.values_ancestral_sigmas,
            symbol=r"\sigma_{\uparrow},\ \sigma_{\downarrow}",
        ),
        Equation(
            STEP_EQUATION, "Euler ancestral step", "Karras et al. 2022, Alg. 2, lines 7-8, with k-diffusion's ancestral noise",
            r"x_{i+1} = x_i + (\sigma_{\downarrow} - \sigma_i)\,\frac{x_i - \hat x_0}{\sigma_i} + S_{\mathrm{noise}}\,\sigma_{\uparrow}\,z",
            "tracer.samplers.euler_ancestral.ancestral_step", ("x_t", "x0_pred", "noise"),
            check=checks.ancestral_step, applies_to=sampling(*STEP_NEEDS, sampler=NAME), values=karras.values_ancestral,
        ),
    )
