"""DDPM ancestral sampling: Ho et al. 2020, Algorithm 2, with the posterior of Eq. 6-7 (a sampler plug-in,
tracer/samplers/base.py).

Every step t = T-1, ..., 0 (0-based schedule indices) predicts the noise, turns it
into a clean-sample estimate (Eq. 15),

    x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t),

optionally clipped to [-1, 1], and samples x_{t-1} from the posterior q(x_{t-1} | x_t, x0_pred):

    mu    = sqrt(alpha_bar_prev) beta_t / (1 - alpha_bar_t) x0_pred
          + sqrt(alpha_t) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t          (Eq. 7)
    sigma^2 = beta_t, or beta_tilde_t = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta_t  (Sec. 3.2)
    x_{t-1} = mu + sigma z,   z ~ N(0, I), and z = 0 at the last step.

Scalars are Python floats computed in float64 from the schedule. This module is torch-free:
its functions work on torch tensors and NumPy arrays alike, and ``sample`` hands the run to
the shared loop (tracer/samplers/loop.py), which also holds ``predict_x0`` and ``clip_x0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tracer.config import ConfigError
from tracer.samplers.base import Step, sampling, check_literals, option

NAME = "ddpm"
TITLE = "DDPM"
REFERENCE = "Ho et al. 2020, Alg. 2 and Eq. 7"

Variance = Literal["beta_tilde", "beta"]
VARIANCES: tuple[str, ...] = ("beta_tilde", "beta")


@dataclass(frozen=True)
class Options:
    """DDPM's options. It runs all T steps of the schedule."""

    variance: str = option("beta_tilde", "sigma^2 of each step: beta_tilde (the posterior's, Eq. 7) or beta", choices=Variance)
    clip: bool = option(True, "clip x0_pred to [-1, 1] before the posterior mean (Sec. 3.3)")

    def __post_init__(self) -> None:
        check_literals(self)
        if not isinstance(self.clip, bool):
            raise ConfigError(f"clip must be true or false, got {self.clip!r}")


PRESETS = {"seed-report": {"variance": "beta_tilde", "clip": True}}


def resolve(options: Options, T: int, alpha_bar: Any = None) -> Options:  # noqa: N803
    return options  # every option has its value already


def plan(resolved: Options, T: int) -> list[tuple[int, int]]:  # noqa: N803
    """t = T-1, ..., 0, each moving to t - 1 (-1: the clean end)."""
    return [(t, t - 1) for t in range(T - 1, -1, -1)]


def posterior_mean(x0_pred: Any, x_t: Any, alpha_bar_t: float, alpha_bar_prev: float, alpha_t: float, beta_t: float) -> Any:
    """mu = sqrt(alpha_bar_prev) beta_t / (1 - alpha_bar_t) x0 + sqrt(alpha_t) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t  (Eq. 7)."""
    coef_x0 = math.sqrt(alpha_bar_prev) * beta_t / (1.0 - alpha_bar_t)
    coef_xt = math.sqrt(alpha_t) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)
    return coef_x0 * x0_pred + coef_xt * x_t


def posterior_sigma(alpha_bar_t: float, alpha_bar_prev: float, beta_t: float, variance: str) -> float:
    """sigma = sqrt(beta_t) or sqrt(beta_tilde_t), beta_tilde_t = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta_t  (Eq. 7)."""
    if variance == "beta":
        return math.sqrt(beta_t)
    if variance == "beta_tilde":
        return math.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t) * beta_t)
    raise ConfigError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")


def ddpm_step(mu: Any, sigma: float, noise: Any) -> Any:
    """x_{t-1} = mu + sigma z  (Alg. 2, line 4, with mu the posterior mean of Eq. 7)."""
    return mu + sigma * noise


def sigma(resolved: Options, step: Step) -> float:
    if step.t == 0:
        return 0.0  # no noise at the last step (Alg. 2, line 3)
    return posterior_sigma(step.alpha_bar_t, step.alpha_bar_prev, step.beta_t, resolved.variance)


def update(resolved: Options, step: Step, x_t: Any, eps: Any, x0_pred: Any, noise: Any, sigma: float) -> Any:
    mu = posterior_mean(x0_pred, x_t, step.alpha_bar_t, step.alpha_bar_prev, step.alpha_t, step.beta_t)
    return ddpm_step(mu, sigma, noise)  # Alg. 2, line 4


def sample(model: Any, schedule: Any, x_T: Any, *, labels: Any = None, guidance: float | None = None,  # noqa: N803
           generator: Any = None, **options: Any) -> Iterator[Any]:
    """Run Algorithm 2 from x_T over t = T-1, ..., 0 with these options and yield one StepRecord per step.

    The options are checked here, before the first step; the steps run as the records are consumed.
    """
    from tracer.samplers.loop import SamplerConfig, run

    return run(model, schedule, SamplerConfig(NAME, guidance=guidance, **options), x_T, labels=labels, generator=generator)


# -- its equations (tracer/equations) ------------------------------------------------------------------------


def _variance_applies(facts: Any) -> bool:
    return sampling("sigma", "t", "alpha_bar_t", "alpha_bar_prev", sampler=NAME)(facts) and facts.variance in VARIANCES


def __sqrt0(x: float) -> float:
    return math.sqrt(max(x, 0.0))


def _v_mean(v: Any) -> str:
    t = v.t()
    coef_x0 = v.ratio(lambda a, b: math.sqrt(b) * (1.0 - a / b) / (1.0 - a), r"\frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}")
    coef_xt = v.ratio(lambda a, b: __sqrt0(a / b) * (1.0 - b) / (1.0 - a), r"\frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}")
    return rf"\tilde\mu_{{{t}}} = {coef_x0}\,\hat x_0 + {coef_xt}\,x_{{{t}}}"


def _v_variance(v: Any) -> str:
    beta_tilde = v.ratio(lambda a, b: (1.0 - b) / (1.0 - a) * (1.0 - a / b), r"\tilde\beta_t")
    variance = v.n("sigma", r"\sigma_t^2", lambda s: s * s)
    return rf"\sigma_{{{v.t()}}}^2 = {variance} \quad (\tilde\beta_{{{v.t()}}} = {beta_tilde})"


def _v_step(v: Any) -> str:
    s = v.n("sigma", r"\sigma_t")
    return rf"{v.x_prev()} = \tilde\mu_{{{v.t()}}} + {s}\,z" + v.clean_note()


STEP_EQUATION = "ddpm.step"
STEP_NEEDS: tuple[str, ...] = ("x_t", "x0_pred", "noise", "sigma", "alpha_bar_t", "alpha_bar_prev")
_STEP_APPLIES = sampling("x_t", "x0_pred", "noise", "sigma", sampler=NAME)


def equations() -> tuple[Any, ...]:
    """Its entries for the equation registry (tracer/equations/registry.py), which calls this once it loads."""
    from tracer.equations import checks
    from tracer.equations.equation import Equation

    return (
        Equation(
            "ddpm.posterior_mean", "DDPM posterior mean", "Ho et al. 2020, Eq. 7",
            r"\tilde\mu_t(x_t, \hat x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,\hat x_0"
            r" + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t",
            "tracer.samplers.ddpm.posterior_mean", ("x_t", "x0_pred"),
            check=checks.ddpm_posterior_mean, applies_to=_STEP_APPLIES, values=_v_mean,
        ),
        Equation(
            "ddpm.posterior_variance", "DDPM posterior variance", "Ho et al. 2020, Eq. 7 and Sec. 3.2",
            r"\sigma_t^2 = \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t"
            r"\ \ (\text{or } \sigma_t^2 = \beta_t;\ \sigma_0 = 0)",
            "tracer.samplers.ddpm.posterior_sigma", ("sigma",),
            precision="scalar", check=checks.ddpm_posterior_sigma, applies_to=_variance_applies, values=_v_variance,
        ),
        Equation(
            "ddpm.step", "DDPM step", "Ho et al. 2020, Alg. 2, line 4",
            r"x_{t-1} = \tilde\mu_t(x_t, \hat x_0) + \sigma_t\,z,\quad z \sim \mathcal N(0, I)",
            "tracer.samplers.ddpm.ddpm_step", ("x_t", "x0_pred", "noise"),
            check=checks.ddpm_step, applies_to=_STEP_APPLIES, values=_v_step,
        ),
    )
