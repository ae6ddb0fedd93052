"""The equation registry: every equation the engine implements, with its LaTeX, its paper,
the function that implements it, the trace names it relates, and its independent check.

The equations every sampling trace shares are here; each sampler module (tracer/samplers)
declares its own in ``EQUATIONS``, and the registry lists them after the shared ones.
The implementing function is named by dotted path (``tracer.samplers.ddim.ddim_step``) and
its source is read by ``tracer.equations.source`` without importing it: this module imports
no torch (the sampler modules are torch-free), so the viewer can show equations without it.

Papers: Ho et al. 2020 (DDPM, arXiv 2006.11239), Song et al. 2021 (DDIM, arXiv 2010.02502),
Ho and Salimans 2022 (classifier-free guidance, arXiv 2207.12598), Karras et al. 2022 (sigma space,
arXiv 2206.00364: the equations every sigma-space trace shares come from tracer.samplers.karras),
Lu et al. 2022 (DPM-Solver++, arXiv 2211.01095), Lipman et al. 2023 and Liu et al. 2023 (flow matching,
arXiv 2210.02747 and 2209.03003: the equations every flow trace shares come from tracer.samplers.flow).
docs/equations.md lists them.
Timesteps are 0-based schedule indices; in DDIM "t-1" is the timestep the step moves to (t_prev).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tracer.equations import checks
from tracer.equations.context import TENSOR_TOLERANCES, TraceFacts
from tracer.equations.equation import Equation, Values, sqrt0
from tracer.samplers import SAMPLERS, flow, karras
from tracer.samplers.base import sampling
from tracer.trace import schema


# -- applicability ----------------------------------------------------------------------------------------


def _schedule(facts: TraceFacts) -> bool:
    if facts.kind == "training":
        return "t" in facts.example_names
    return facts.has("t")


def _training(*names: str) -> Callable[[TraceFacts], bool]:
    """A diffusion network's training trace that records these example names (a flow network's: tracer/samplers/flow.py)."""
    return lambda facts: facts.kind == "training" and facts.objective != "flow" and all(n in facts.example_names for n in names)


def _x0_applies(facts: TraceFacts) -> bool:
    return (facts.prediction == "eps" and facts.space == "vp" and sampling("x_t", "eps", "x0_pred")(facts)
            and not (facts.thresholding and not facts.has("x0_pred_raw")))


def _guidance_applies(facts: TraceFacts) -> bool:
    return facts.guidance is not None and sampling(*checks.guidance_names(facts.prediction, facts.guidance_rescale > 0))(facts)


def _rescale_applies(facts: TraceFacts) -> bool:
    cond, _, cfg = checks.guidance_names(facts.prediction, True)
    return facts.guidance_rescale > 0 and sampling(cond, cfg, "eps" if facts.prediction == "eps" else "model_output")(facts)


def _prediction_applies(facts: TraceFacts) -> bool:
    return facts.prediction in ("x0", "v") and facts.space != "flow" and sampling("model_output", "x_t", "eps", "x0_pred")(facts)


def _zero_snr_applies(facts: TraceFacts) -> bool:
    return facts.zero_terminal_snr and _schedule(facts)


def _eps_loss_applies(facts: TraceFacts) -> bool:
    return _training("eps", "eps_pred", "loss")(facts) and "target" not in facts.example_names


# -- values --------------------------------------------------------------------------------------------


def _v_alpha(v: Values) -> str:
    t = v.t()
    return rf"\alpha_{{{t}}} = 1 - \beta_{{{t}}}"


def _v_alpha_bar(v: Values) -> str:
    t = v.t()
    alpha_bar = v.n("alpha_bar_t", r"\bar\alpha_t")
    return rf"\bar\alpha_{{{t}}} = \prod_{{s=0}}^{{{t}}} \alpha_s = {alpha_bar}"


def _v_forward(v: Values) -> str:
    t = v.t()
    return rf"x_{{{t}}} = \sqrt{{\bar\alpha_{{{t}}}}}\,x_0 + \sqrt{{1-\bar\alpha_{{{t}}}}}\,\epsilon"


def _v_loss(v: Values) -> str:
    return rf"\big\lVert \epsilon - \epsilon_\theta(x_{{{v.t()}}}, {v.t()}) \big\rVert^2 = {v.n('loss', 'L')}"


def _v_guidance(v: Values) -> str:
    s = v.n("guidance", "s")
    return rf"\epsilon = \epsilon_\theta(x_{{{v.t()}}}, \varnothing) + {s}\,\big(\epsilon_\theta(x_{{{v.t()}}}, y) - \epsilon_\theta(x_{{{v.t()}}}, \varnothing)\big)"


def _v_rescale(v: Values) -> str:
    phi = v.n("guidance_rescale", r"\phi")
    return rf"f = {phi}\,f_{{\mathrm{{cfg}}}}\,\frac{{\sigma(f_\theta(x_{{{v.t()}}}, y))}}{{\sigma(f_{{\mathrm{{cfg}}}})}} + (1 - {phi})\,f_{{\mathrm{{cfg}}}}"


def _v_prediction(v: Values) -> str:
    t = v.t()
    root = v.n("alpha_bar_t", r"\sqrt{\bar\alpha_t}", math.sqrt)
    root_1m = v.n("alpha_bar_t", r"\sqrt{1-\bar\alpha_t}", lambda a: sqrt0(1.0 - a))
    return rf"\hat x_0 = {root}\,x_{{{t}}} - {root_1m}\,v_\theta,\quad \epsilon = {root_1m}\,x_{{{t}}} + {root}\,v_\theta"


def _v_zero_snr(v: Values) -> str:
    root = v.n("alpha_bar_t", r"\sqrt{\bar\alpha_t}", math.sqrt)
    return rf"\sqrt{{\bar\alpha'_{{{v.t()}}}}} = {root}"


def _v_target_loss(v: Values) -> str:
    loss = v.n("loss", "L")
    return rf"\big\lVert f_\theta(x_{{{v.t()}}}, {v.t()}) - y \big\rVert^2 = {loss}"


def _v_x0(v: Values) -> str:
    t = v.t()
    root_1m = v.n("alpha_bar_t", r"\sqrt{1-\bar\alpha_t}", lambda a: sqrt0(1.0 - a))
    root = v.n("alpha_bar_t", r"\sqrt{\bar\alpha_t}", math.sqrt)
    return rf"\hat x_0 = \frac{{x_{{{t}}} - {root_1m}\,\epsilon_\theta}}{{{root}}}"


def _v_clip(v: Values) -> str:
    return r"\hat x_0 = \operatorname{clip}(\hat x_0^{\mathrm{raw}}, -1, 1)"


# -- the registry, in reading order ------------------------------------------------------------------------

HO = "Ho et al. 2020"
SONG = "Song et al. 2021"

SHARED_EQUATIONS: tuple[Equation, ...] = (
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
        "schedule.zero_terminal_snr", "Zero terminal SNR", "Lin et al. 2023, Alg. 1",
        r"\sqrt{\bar\alpha'_t} = \big(\sqrt{\bar\alpha_t} - \sqrt{\bar\alpha_{T-1}}\big)\,"
        r"\frac{\sqrt{\bar\alpha_0}}{\sqrt{\bar\alpha_0} - \sqrt{\bar\alpha_{T-1}}},\quad \bar\alpha'_{T-1} = 0",
        "tracer.schedules.rescale_zero_terminal_snr", ("schedule/alpha_bar",),
        precision="scalar", series="auto", check=checks.zero_terminal_snr, applies_to=_zero_snr_applies, values=_v_zero_snr,
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
        series=schema.EXAMPLES, check=checks.eps_loss, applies_to=_eps_loss_applies, values=_v_loss,
    ),
    Equation(
        "loss.target", "The loss of an x0 or v network", "Salimans and Ho 2022, Sec. 4",
        r"L = \big\lVert f_\theta(x_t, t) - y \big\rVert^2,\quad y = x_0 \text{ or } y = v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0",
        "tracer.training.Trainer.loss_per_sample", ("model_output", "target", "x0", "eps", "loss"),
        series=schema.EXAMPLES, check=checks.target_loss, applies_to=_training("model_output", "target", "loss"), values=_v_target_loss,
    ),
    Equation(
        "guidance.combine", "Classifier-free guidance", "Ho and Salimans 2022, Eq. 6 (s = 1 + w)",
        r"\epsilon = \epsilon_\theta(x_t, \varnothing) + s\,\big(\epsilon_\theta(x_t, y) - \epsilon_\theta(x_t, \varnothing)\big)"
        r"\quad(\text{on the network's output } f_\theta \text{ when it predicts } x_0 \text{ or } v)",
        "tracer.samplers.guidance.combine", ("eps", "eps_cond", "eps_uncond", "model_output_cond", "model_output_uncond", "model_output_cfg"),
        check=checks.guidance_combine, applies_to=_guidance_applies, values=_v_guidance,
    ),
    Equation(
        "guidance.rescale", "Guidance rescale", "Lin et al. 2023, Sec. 3.4",
        r"f = \phi\,f_{\mathrm{cfg}}\,\frac{\sigma(f_\theta(x_t, y))}{\sigma(f_{\mathrm{cfg}})} + (1 - \phi)\,f_{\mathrm{cfg}}"
        r"\quad(\sigma: \text{std over each sample})",
        "tracer.samplers.guidance.rescale", ("model_output_cfg", "eps_cond", "model_output_cond", "eps", "model_output"),
        check=checks.guidance_rescale, applies_to=_rescale_applies, values=_v_rescale,
    ),
    Equation(
        "prediction.conversion", "eps and x0 from an x0 or v prediction", "Salimans and Ho 2022, Sec. 4 and App. D",
        r"v:\ \hat x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,v_\theta,\ "
        r"\epsilon = \sqrt{1-\bar\alpha_t}\,x_t + \sqrt{\bar\alpha_t}\,v_\theta;\quad "
        r"x_0:\ \epsilon = \frac{x_t - \sqrt{\bar\alpha_t}\,\hat x_0}{\sqrt{1-\bar\alpha_t}}",
        "tracer.samplers.prediction.eps_and_x0", ("model_output", "x_t", "eps", "x0_pred", "x0_pred_raw"),
        check=checks.prediction_conversion, applies_to=_prediction_applies, values=_v_prediction, symbol=r"\hat x_0,\ \epsilon",
    ),
    Equation(
        "x0_from_eps", "Predicted clean sample", f"{HO}, Eq. 15; {SONG}, Eq. 12",
        r"\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}}",
        "tracer.samplers.prediction.predict_x0", ("x_t", "eps", "x0_pred", "x0_pred_raw"),
        check=checks.x0_from_eps, applies_to=_x0_applies, values=_v_x0,
    ),
    Equation(
        "x0.clip", "Clipping the predicted clean sample", f"{HO}, Sec. 3.3 (data scaled to [-1, 1])",
        r"\hat x_0 = \operatorname{clip}(\hat x_0^{\mathrm{raw}}, -1, 1)",
        "tracer.samplers.prediction.clip_x0", ("x0_pred_raw", "x0_pred"),
        check=checks.x0_clip, applies_to=sampling("x0_pred", "x0_pred_raw"), values=_v_clip,
    ),

)

EQUATIONS: tuple[Equation, ...] = (SHARED_EQUATIONS + karras.equations() + flow.equations()
                                   + tuple(eq for module in SAMPLERS.values() for eq in module.equations()))
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
