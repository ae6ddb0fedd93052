"""The equation registry: every equation the engine implements, with its LaTeX, its paper,
the function that implements it, the trace names it relates, and its independent check.

The implementing function is named by dotted path (``tracer.samplers.ddim.ddim_step``) and
its source is read by ``tracer.equations.source`` without importing it: this module imports
neither torch nor the samplers, so the viewer can show equations without either.

Papers: Ho et al. 2020 (DDPM, arXiv 2006.11239), Song et al. 2021 (DDIM, arXiv 2010.02502),
Ho and Salimans 2022 (classifier-free guidance, arXiv 2207.12598). docs/equations.md lists them.
Timesteps are 0-based schedule indices; in DDIM "t-1" is the timestep the step moves to (t_prev).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracer.equations import checks
from tracer.equations.context import TENSOR_TOLERANCES, Residual, TraceFacts, TraceView, judge_row
from tracer.trace import schema


def num(x: float) -> str:
    """A number for LaTeX: 4 significant digits, powers of ten written out."""
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return r"\infty" if x > 0 else (r"-\infty" if x < 0 else r"\mathrm{nan}")
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    mantissa, exponent = f"{x:.3e}".split("e")
    return rf"{mantissa.rstrip('0').rstrip('.')}\times 10^{{{int(exponent)}}}"


class _Values:
    """Step scalars for values_latex: numbers where the step has them, the symbol where it does not."""

    def __init__(self, scalars: Mapping[str, float]) -> None:
        self.s = scalars

    def get(self, name: str) -> float | None:
        value = self.s.get(name)
        return None if value is None else float(value)

    def n(self, name: str, symbol: str, fn: Callable[[float], float] = lambda x: x) -> str:
        value = self.get(name)
        if value is None:
            return symbol
        try:
            return num(fn(value))
        except (ValueError, ZeroDivisionError):
            return symbol

    def t(self, name: str = "t", symbol: str = "t") -> str:
        value = self.get(name)
        return symbol if value is None else str(int(value))


def _sqrt(x: float) -> float:
    return math.sqrt(max(x, 0.0))


def _ratio(v: _Values, f: Callable[[float, float], float], symbol: str) -> str:
    a, b = v.get("alpha_bar_t"), v.get("alpha_bar_prev")
    if a is None or b is None:
        return symbol
    try:
        return num(f(a, b))
    except (ValueError, ZeroDivisionError):
        return symbol


@dataclass(frozen=True)
class Equation:
    """One equation: what the viewer shows, and how ``noisescope check`` verifies it on a trace."""

    id: str
    title: str
    reference: str  # paper + equation/algorithm number
    latex: str  # symbolic LaTeX
    implementation: str  # dotted path of the implementing function
    names: tuple[str, ...]  # trace names it relates
    precision: str = field(default="tensor", compare=False)  # tensor | scalar: which tolerance applies
    series: str = field(default="steps", compare=False)  # steps, examples, or auto (the schedule: either)
    check: Callable[[TraceView, int], Residual | None] = field(default=lambda view, i: None, repr=False, compare=False)
    applies_to: Callable[[TraceFacts], bool] = field(default=lambda facts: False, repr=False, compare=False)
    values: Callable[[_Values], str] = field(default=lambda v: "", repr=False, compare=False)

    def values_latex(self, step_scalars: Mapping[str, float]) -> str:
        """The same equation with this step's scalar values substituted."""
        return self.values(_Values(step_scalars))

    def applies(self, facts: TraceFacts) -> bool:
        return self.applies_to(facts)

    def series_for(self, facts: TraceFacts) -> str:
        if self.series == "auto":
            return schema.EXAMPLES if facts.kind == "training" else schema.STEPS
        return self.series

    def evaluate(self, view: TraceView, i: int) -> Residual | None:
        """The check at row i of ``view``: a Residual, or None where it does not apply."""
        if not view.indices_ok(i):  # t or t_prev outside the schedule: schedule.alpha_bar_t/_prev fail there
            return None
        return judge_row(self.check, view, i)

    def residual(self, trace: Any, i: int) -> float | None:
        """max |lhs - rhs| at step i (float64 NumPy over the recorded tensors), None if not applicable."""
        facts = TraceFacts.of(trace)
        if not self.applies(facts):
            return None
        result = self.evaluate(TraceView(trace, self.series_for(facts), facts), i)
        return None if result is None else result.value


# -- applicability ----------------------------------------------------------------------------------------


def _sampling(*names: str, sampler: str | None = None) -> Callable[[TraceFacts], bool]:
    def applies(facts: TraceFacts) -> bool:
        return facts.kind == "sampling" and facts.has(*names) and (sampler is None or facts.sampler == sampler)

    return applies


def _schedule(facts: TraceFacts) -> bool:
    if facts.kind == "training":
        return "t" in facts.example_names
    return facts.has("t")


def _training(*names: str) -> Callable[[TraceFacts], bool]:
    return lambda facts: facts.kind == "training" and all(n in facts.example_names for n in names)


def _x0_applies(facts: TraceFacts) -> bool:
    return _sampling("x_t", "eps", "x0_pred")(facts) and not (facts.thresholding and not facts.has("x0_pred_raw"))


def _guidance_applies(facts: TraceFacts) -> bool:
    return facts.guidance is not None and _sampling("eps", "eps_cond", "eps_uncond")(facts)


def _ddim_sigma_applies(facts: TraceFacts) -> bool:
    return _sampling("sigma", "alpha_bar_t", "alpha_bar_prev", sampler="ddim")(facts) and (facts.eta is not None or facts.has("eta"))


def _ddpm_sigma_applies(facts: TraceFacts) -> bool:
    return _sampling("sigma", "t", "alpha_bar_t", "alpha_bar_prev", sampler="ddpm")(facts) and facts.variance in ("beta_tilde", "beta")


# -- values --------------------------------------------------------------------------------------------


def _v_alpha(v: _Values) -> str:
    t = v.t()
    return rf"\alpha_{{{t}}} = 1 - \beta_{{{t}}}"


def _v_alpha_bar(v: _Values) -> str:
    t = v.t()
    alpha_bar = v.n("alpha_bar_t", r"\bar\alpha_t")
    return rf"\bar\alpha_{{{t}}} = \prod_{{s=0}}^{{{t}}} \alpha_s = {alpha_bar}"


def _v_forward(v: _Values) -> str:
    t = v.t()
    return rf"x_{{{t}}} = \sqrt{{\bar\alpha_{{{t}}}}}\,x_0 + \sqrt{{1-\bar\alpha_{{{t}}}}}\,\epsilon"


def _v_loss(v: _Values) -> str:
    return rf"\big\lVert \epsilon - \epsilon_\theta(x_{{{v.t()}}}, {v.t()}) \big\rVert^2 = {v.n('loss', 'L')}"


def _v_guidance(v: _Values) -> str:
    s = v.n("guidance", "s")
    return rf"\epsilon = \epsilon_\theta(x_{{{v.t()}}}, \varnothing) + {s}\,\big(\epsilon_\theta(x_{{{v.t()}}}, y) - \epsilon_\theta(x_{{{v.t()}}}, \varnothing)\big)"


def _v_x0(v: _Values) -> str:
    t = v.t()
    root_1m = v.n("alpha_bar_t", r"\sqrt{1-\bar\alpha_t}", lambda a: _sqrt(1.0 - a))
    root = v.n("alpha_bar_t", r"\sqrt{\bar\alpha_t}", math.sqrt)
    return rf"\hat x_0 = \frac{{x_{{{t}}} - {root_1m}\,\epsilon_\theta}}{{{root}}}"


def _v_clip(v: _Values) -> str:
    return r"\hat x_0 = \operatorname{clip}(\hat x_0^{\mathrm{raw}}, -1, 1)"


def _v_posterior_mean(v: _Values) -> str:
    t = v.t()
    coef_x0 = _ratio(v, lambda a, b: math.sqrt(b) * (1.0 - a / b) / (1.0 - a), r"\frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}")
    coef_xt = _ratio(v, lambda a, b: _sqrt(a / b) * (1.0 - b) / (1.0 - a), r"\frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}")
    return rf"\tilde\mu_{{{t}}} = {coef_x0}\,\hat x_0 + {coef_xt}\,x_{{{t}}}"


def _v_posterior_variance(v: _Values) -> str:
    beta_tilde = _ratio(v, lambda a, b: (1.0 - b) / (1.0 - a) * (1.0 - a / b), r"\tilde\beta_t")
    variance = v.n("sigma", r"\sigma_t^2", lambda s: s * s)
    return rf"\sigma_{{{v.t()}}}^2 = {variance} \quad (\tilde\beta_{{{v.t()}}} = {beta_tilde})"


def _v_ddpm_step(v: _Values) -> str:
    sigma = v.n("sigma", r"\sigma_t")
    return rf"x_{{{v.t('t_prev', 't-1')}}} = \tilde\mu_{{{v.t()}}} + {sigma}\,z"


def _v_ddim_sigma(v: _Values) -> str:
    ratio = _ratio(v, lambda a, b: _sqrt((1.0 - b) / (1.0 - a)) * _sqrt(1.0 - a / b), r"\sqrt{\cdots}")
    sigma, eta = v.n("sigma", r"\sigma_t"), v.n("eta", r"\eta")
    return rf"\sigma_{{{v.t()}}} = {eta} \cdot {ratio} = {sigma}"


def _v_ddim_step(v: _Values) -> str:
    a = v.n("alpha_bar_prev", r"\sqrt{\bar\alpha_{t-1}}", math.sqrt)
    sigma = v.get("sigma")
    b_value = v.get("alpha_bar_prev")
    b = num(_sqrt(1.0 - b_value - (sigma or 0.0) ** 2)) if b_value is not None and sigma is not None else r"\sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}"
    c = v.n("sigma", r"\sigma_t")
    return rf"x_{{{v.t('t_prev', 't-1')}}} = {a}\,\hat x_0 + {b}\,\epsilon_\theta(x_{{{v.t()}}}, {v.t()}) + {c}\,z"


# -- the registry, in reading order ------------------------------------------------------------------------

HO = "Ho et al. 2020"
SONG = "Song et al. 2021"

EQUATIONS: tuple[Equation, ...] = (
    Equation(
        "schedule.alpha", "alpha from beta", f"{HO}, Sec. 2 (notation of Eq. 4)", r"\alpha_t = 1 - \beta_t",
        "tracer.schedules.from_betas", ("schedule/beta", "schedule/alpha"),
        precision="scalar", series="auto", check=checks.schedule_alpha, applies_to=_schedule, values=_v_alpha,
    ),
    Equation(
        "schedule.alpha_bar", "alpha_bar as a running product", f"{HO}, Sec. 2 (notation of Eq. 4)",
        r"\bar\alpha_t = \prod_{s \le t} \alpha_s", "tracer.schedules.from_betas", ("schedule/alpha", "schedule/alpha_bar", "alpha_bar_t"),
        precision="scalar", series="auto", check=checks.schedule_alpha_bar, applies_to=_schedule, values=_v_alpha_bar,
    ),
    Equation(
        "forward.q_sample", "The forward process in closed form", f"{HO}, Eq. 4",
        r"x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\quad \epsilon \sim \mathcal N(0, I)",
        "tracer.forward.q_sample", ("x0", "eps", "x_t"),
        series=schema.EXAMPLES, check=checks.forward_closed_form, applies_to=_training("t", "x0", "eps", "x_t"), values=_v_forward,
    ),
    Equation(
        "loss.eps", "The epsilon loss", f"{HO}, Eq. 14 (L_simple)",
        r"L_{\mathrm{simple}} = \big\lVert \epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t) \big\rVert^2",
        "tracer.training.Trainer.loss_per_sample", ("eps", "eps_pred", "loss"),
        series=schema.EXAMPLES, check=checks.eps_loss, applies_to=_training("eps", "eps_pred", "loss"), values=_v_loss,
    ),
    Equation(
        "guidance.combine", "Classifier-free guidance", "Ho and Salimans 2022, Eq. 6 (s = 1 + w)",
        r"\epsilon = \epsilon_\theta(x_t, \varnothing) + s\,\big(\epsilon_\theta(x_t, y) - \epsilon_\theta(x_t, \varnothing)\big)",
        "tracer.samplers.guidance.combine", ("eps", "eps_cond", "eps_uncond"),
        check=checks.guidance_combine, applies_to=_guidance_applies, values=_v_guidance,
    ),
    Equation(
        "x0_from_eps", "Predicted clean sample", f"{HO}, Eq. 15; {SONG}, Eq. 12",
        r"\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}}",
        "tracer.samplers.ddpm.predict_x0", ("x_t", "eps", "x0_pred", "x0_pred_raw"),
        check=checks.x0_from_eps, applies_to=_x0_applies, values=_v_x0,
    ),
    Equation(
        "x0.clip", "Clipping the predicted clean sample", f"{HO}, Sec. 3.3 (data scaled to [-1, 1])",
        r"\hat x_0 = \operatorname{clip}(\hat x_0^{\mathrm{raw}}, -1, 1)",
        "tracer.samplers.ddpm.clip_x0", ("x0_pred_raw", "x0_pred"),
        check=checks.x0_clip, applies_to=_sampling("x0_pred", "x0_pred_raw"), values=_v_clip,
    ),
    Equation(
        "ddpm.posterior_mean", "DDPM posterior mean", f"{HO}, Eq. 7",
        r"\tilde\mu_t(x_t, \hat x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,\hat x_0"
        r" + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t",
        "tracer.samplers.ddpm.posterior_mean", ("x_t", "x0_pred"),
        check=checks.ddpm_posterior_mean, applies_to=_sampling("x_t", "x0_pred", "noise", "sigma", sampler="ddpm"), values=_v_posterior_mean,
    ),
    Equation(
        "ddpm.posterior_variance", "DDPM posterior variance", f"{HO}, Eq. 7 and Sec. 3.2",
        r"\sigma_t^2 = \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t"
        r"\ \ (\text{or } \sigma_t^2 = \beta_t;\ \sigma_0 = 0)",
        "tracer.samplers.ddpm.posterior_sigma", ("sigma",),
        precision="scalar", check=checks.ddpm_posterior_sigma, applies_to=_ddpm_sigma_applies, values=_v_posterior_variance,
    ),
    Equation(
        "ddpm.step", "DDPM step", f"{HO}, Alg. 2, line 4",
        r"x_{t-1} = \tilde\mu_t(x_t, \hat x_0) + \sigma_t\,z,\quad z \sim \mathcal N(0, I)",
        "tracer.samplers.ddpm.ddpm_step", ("x_t", "x0_pred", "noise"),
        check=checks.ddpm_step, applies_to=_sampling("x_t", "x0_pred", "noise", "sigma", sampler="ddpm"), values=_v_ddpm_step,
    ),
    Equation(
        "ddim.sigma", "DDIM noise level", f"{SONG}, Eq. 16",
        r"\sigma_t(\eta) = \eta\,\sqrt{\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}}\,\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_{t-1}}}",
        "tracer.samplers.ddim.ddim_sigma", ("sigma",),
        precision="scalar", check=checks.ddim_sigma, applies_to=_ddim_sigma_applies, values=_v_ddim_sigma,
    ),
    Equation(
        "ddim.step", "DDIM step", f"{SONG}, Eq. 12",
        r"x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\,\epsilon_\theta(x_t, t) + \sigma_t\,z",
        "tracer.samplers.ddim.ddim_step", ("x_t", "x0_pred", "eps", "noise"),
        check=checks.ddim_step, applies_to=_sampling("x0_pred", "eps", "noise", "sigma", sampler="ddim"), values=_v_ddim_step,
    ),
)

EQUATION_IDS: tuple[str, ...] = tuple(eq.id for eq in EQUATIONS)


def equations_for(trace: Any) -> list[Equation]:
    """The equations that apply to ``trace`` (its kind, sampler, guidance, clipping, recorded names), in reading order."""
    facts = TraceFacts.of(trace)
    return [eq for eq in EQUATIONS if eq.applies(facts)]


def tolerance_for(trace: Any) -> float:
    """The relative tolerance of tensor equations for this trace's tensor dtype: 1e-5 for float32, 1e-2 for float16.

    A check passes when max |lhs - rhs| <= tol * max(1, scale), scale being the largest sum of
    |terms| of the equation (docs/equations.md). Scalar equations use 1e-6 (SCALAR_TOLERANCE).
    """
    return TENSOR_TOLERANCES.get(str(trace.tensor_dtype), TENSOR_TOLERANCES["float32"])
