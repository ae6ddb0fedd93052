"""DDIM sampling: Song et al. 2021, Eq. 12 with the noise level of Eq. 16 (a sampler plug-in, tracer/samplers/base.py).

The reverse process visits a descending sub-sequence of timesteps (tracer.samplers.timesteps);
step i goes from t to t_prev, the t of step i + 1 (-1, where alpha_bar = 1, after the last).

    x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)                       (Eq. 12, "predicted x0")
    sigma   = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)   (Eq. 16)
    x_prev  = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z        (Eq. 12)

eta = 0 is the deterministic DDIM; eta = 1 over all T steps is DDPM with beta_tilde.
When clipping, x0_pred is clamped to [-1, 1] but the direction term keeps the eps the model
(with guidance) predicted, as diffusers and the report do. The ``seed-report`` preset is the
report's convention (arXiv 2512.07201): timesteps 1, 1 + c, 1 + 2c, ... (c = T // steps), the
last step moving to t = 0 (alpha_bar_prev = alpha_bar[0], not 1), eta 0, x0 clipped.

This module is torch-free: ``ddim_step`` works on torch tensors and NumPy arrays alike, and
``sample`` hands the run to the shared loop (tracer/samplers/loop.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tracer.config import ConfigError
from tracer.samplers.base import Step, sampling, check_literals, check_steps, check_unit_interval, option
from tracer.samplers.timesteps import check_timesteps, ddim_timesteps, plan as plan_pairs, seed_report_timesteps

NAME = "ddim"
TITLE = "DDIM"
REFERENCE = "Song et al. 2021, Eq. 12 and 16"

Spacing = Literal["leading", "trailing", "linspace", "seed-report"]
FinalAlphaBar = Literal["one", "alpha_bar_0"]
FINAL_ALPHA_BARS: tuple[str, ...] = ("one", "alpha_bar_0")
DEFAULT_STEPS = 50


@dataclass(frozen=True)
class Options:
    """DDIM's options; ``steps`` None is min(50, T), ``timesteps`` an explicit descending list instead of ``steps``."""

    steps: int | None = option(None, "reverse steps, 1..T (default 50, or T if smaller)")
    eta: float = option(0.0, "noise level in [0, 1]: 0 deterministic, 1 the DDPM posterior's variance (Eq. 16)")
    spacing: str = option("leading", "which timesteps: leading, trailing, linspace (diffusers' spacings) or seed-report "
                          "(1, 1 + c, 1 + 2c, ... with c = T // steps)", choices=Spacing)
    final_alpha_bar: str = option("one", "alpha_bar_prev of the last step: one (the clean end) or alpha_bar_0", choices=FinalAlphaBar)
    clip: bool = option(False, "clip x0_pred to [-1, 1] (the direction term keeps the raw eps)")
    timesteps: tuple[int, ...] | None = dataclasses.field(default=None, metadata={"help": "explicit timesteps, descending", "cli": False})

    def __post_init__(self) -> None:
        check_literals(self)
        check_unit_interval("eta", self.eta)
        check_steps(self.steps)
        if not isinstance(self.clip, bool):
            raise ConfigError(f"clip must be true or false, got {self.clip!r}")
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", tuple(int(t) for t in self.timesteps))


PRESETS = {"seed-report": {"eta": 0.0, "spacing": "seed-report", "final_alpha_bar": "alpha_bar_0", "clip": True}}


def resolve(options: Options, T: int, alpha_bar: Any = None) -> Options:  # noqa: N803
    """Every default filled in for a T-step schedule: ``steps`` and the visited ``timesteps``."""
    if options.timesteps is not None:
        if options.steps is not None and options.steps != len(options.timesteps):
            raise ConfigError("give DDIM either steps or timesteps, not both")
        check_timesteps(options.timesteps, T)
        return dataclasses.replace(options, steps=len(options.timesteps))
    steps = options.steps if options.steps is not None else min(DEFAULT_STEPS, T)
    if not 1 <= steps <= T:
        raise ConfigError(f"--steps must lie in [1, {T}] for this model's T={T}, got {steps}")
    if options.spacing == "seed-report":
        timesteps = seed_report_timesteps(T, steps)
    else:
        timesteps = ddim_timesteps(T, steps, options.spacing)
    return dataclasses.replace(options, steps=steps, timesteps=tuple(timesteps))


def plan(resolved: Options, T: int) -> list[tuple[int, int]]:  # noqa: N803
    """(t, t_prev) of every step; the last moves to -1 (alpha_bar 1) or, for ``alpha_bar_0``, to t = 0."""
    assert resolved.timesteps is not None, "plan() takes resolve()'s options"
    return plan_pairs(resolved.timesteps, T, -1 if resolved.final_alpha_bar == "one" else 0)


def ddim_sigma(alpha_bar_t: float, alpha_bar_prev: float, eta: float) -> float:
    """sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)  (Eq. 16)."""
    return eta * math.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)) * math.sqrt(1.0 - alpha_bar_t / alpha_bar_prev)


def ddim_step(x0_pred: Any, eps: Any, alpha_bar_prev: float, sigma: float, noise: Any) -> Any:
    """x_prev = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z  (Eq. 12)."""
    direction = math.sqrt(max(1.0 - alpha_bar_prev - sigma**2, 0.0))  # >= 0 in exact arithmetic; guard rounding
    return math.sqrt(alpha_bar_prev) * x0_pred + direction * eps + sigma * noise


def sigma(resolved: Options, step: Step) -> float:
    return ddim_sigma(step.alpha_bar_t, step.alpha_bar_prev, resolved.eta) if resolved.eta else 0.0


def update(resolved: Options, step: Step, x_t: Any, eps: Any, x0_pred: Any, noise: Any, sigma: float) -> Any:
    return ddim_step(x0_pred, eps, step.alpha_bar_prev, sigma, noise)


def sample(model: Any, schedule: Any, x_T: Any, *, labels: Any = None, guidance: float | None = None,  # noqa: N803
           generator: Any = None, **options: Any) -> Iterator[Any]:
    """Run DDIM from x_T with these options (``Options``' fields) and yield one StepRecord per step.

    The options are checked here, before the first step; the steps run as the records are consumed.
    """
    from tracer.samplers.loop import SamplerConfig, run

    return run(model, schedule, SamplerConfig(NAME, guidance=guidance, **options), x_T, labels=labels, generator=generator)


# -- its equations (tracer/equations) ------------------------------------------------------------------------


def _sqrt0(x: float) -> float:
    return math.sqrt(max(x, 0.0))


def _sigma_applies(facts: Any) -> bool:
    return sampling("sigma", "alpha_bar_t", "alpha_bar_prev", sampler=NAME)(facts) and (facts.eta is not None or facts.has("eta"))


def _v_sigma(v: Any) -> str:
    factor = v.ratio(lambda a, b: _sqrt0((1.0 - b) / (1.0 - a)) * _sqrt0(1.0 - a / b), r"\sqrt{\cdots}")
    s, eta = v.n("sigma", r"\sigma_t"), v.n("eta", r"\eta")
    return rf"\sigma_{{{v.t()}}} = {eta} \cdot {factor} = {s}"


def _v_step(v: Any) -> str:
    a = v.n("alpha_bar_prev", r"\sqrt{\bar\alpha_{t-1}}", math.sqrt)
    s = v.get("sigma")
    b_value = v.get("alpha_bar_prev")
    b = v.num(_sqrt0(1.0 - b_value - (s or 0.0) ** 2)) if b_value is not None and s is not None else r"\sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}"
    c = v.n("sigma", r"\sigma_t")
    return rf"{v.x_prev()} = {a}\,\hat x_0 + {b}\,\epsilon_\theta(x_{{{v.t()}}}, {v.t()}) + {c}\,z" + v.clean_note()


STEP_EQUATION = "ddim.step"
STEP_NEEDS: tuple[str, ...] = ("x_t", "x0_pred", "eps", "noise", "sigma", "alpha_bar_prev")


def equations() -> tuple[Any, ...]:
    """Its entries for the equation registry (tracer/equations/registry.py), which calls this once it loads."""
    from tracer.equations import checks
    from tracer.equations.equation import Equation

    return (
        Equation(
            "ddim.sigma", "DDIM noise level", "Song et al. 2021, Eq. 16",
            r"\sigma_t(\eta) = \eta\,\sqrt{\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}}\,\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_{t-1}}}",
            "tracer.samplers.ddim.ddim_sigma", ("sigma",),
            precision="scalar", check=checks.ddim_sigma, applies_to=_sigma_applies, values=_v_sigma,
        ),
        Equation(
            "ddim.step", "DDIM step", "Song et al. 2021, Eq. 12",
            r"x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\,\epsilon_\theta(x_t, t) + \sigma_t\,z",
            "tracer.samplers.ddim.ddim_step", ("x_t", "x0_pred", "eps", "noise"),
            check=checks.ddim_step, applies_to=sampling("x0_pred", "eps", "noise", "sigma", sampler=NAME), values=_v_step,
        ),
    )

