"""Which update a trace follows when it does not say, and what a check could not verify.

A trace recorded by noisescope's samplers names its sampler (``config.sampler``); one
written by hand, by ``record_sampling`` without a sampler, or by another library may
not. Then ``identify`` finds the registered step equation its rows satisfy: DDIM's
update with the recorded sigma (Song et al. 2021, Eq. 12) or DDPM's posterior step
(Ho et al. 2020, Eq. 7 and Alg. 2), judged on the first ``PROBE_ROWS`` steps whose
output is known, and infers the run's constants the same way: DDIM's eta from Eq. 16,
DDPM's variance (beta_tilde or beta), whether x0_pred was clipped to [-1, 1], and
whether the last step ends at alpha_bar_0 instead of the clean end. Only the samplers whose
timesteps run the trace's way are tried (DDIM inversion's ascend, the others' descend), so an
inversion trace is identified as ``ddim-inversion``, never as DDIM. What it infers is then
verified at every step like a declared value, and the report says it was inferred.

``unchecked`` lists what the checks that apply leave unverified (no step equation for
the sampler, a guidance scale that is not declared, tensors that are not recorded, among
them those a recording choice left out, steps a recording choice skipped, no rows), each
with the reason: ``noisescope check`` calls such a trace INCOMPLETE, never
PASS, and the viewer shows those equations as not checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tracer.equations import checks
from tracer.equations.context import SCALAR_TOLERANCE, TENSOR_TOLERANCES, Residual, TraceFacts, TraceView, judge_row
from tracer.equations.structure import ascending
from tracer.trace import schema
from tracer.trace.choice import ordinal

PROBE_ROWS = 8  # steps whose output is known, judged to identify the update


def _step_equations() -> tuple[dict[str, str], dict[str, Callable[[TraceView, int], Residual | None]], dict[str, tuple[str, ...]]]:
    """Each sampler's step equation id, its check, and what it reads from the steps series (from the sampler modules)."""
    from tracer.samplers import SAMPLERS

    ids = {name: module.STEP_EQUATION for name, module in SAMPLERS.items()}
    step_checks = {name: next(eq.check for eq in module.equations() if eq.id == module.STEP_EQUATION) for name, module in SAMPLERS.items()}
    return ids, step_checks, {name: module.STEP_NEEDS for name, module in SAMPLERS.items()}


def _directions() -> dict[str, str]:
    """Which way each sampler's timesteps run: ``descending`` (from noise to data) unless its module declares ``DIRECTION``."""
    from tracer.samplers import SAMPLERS

    return {name: str(getattr(module, "DIRECTION", "descending")) for name, module in SAMPLERS.items()}


STEP_EQUATIONS, _STEP_CHECKS, STEP_NEEDS = _step_equations()
DIRECTIONS = _directions()


@dataclass(frozen=True)
class Identification:
    """What ``identify`` found: the facts to check with, and a sentence for people."""

    facts: TraceFacts
    summary: str  # e.g. "identified as ddim: Eq. 12 holds at 8 of 8 probed steps; eta inferred 0"
    failed: str = ""  # why no update was identified (empty when one was)


def _tolerance(facts: TraceFacts) -> float:
    return TENSOR_TOLERANCES.get(facts.tensor_dtype, TENSOR_TOLERANCES["float32"])


def _probe(view: TraceView, check: Callable[[TraceView, int], Residual | None], tol: float) -> tuple[int, int, float]:
    """(passing, judged, worst residual) of ``check`` over the first probe rows where it can be judged."""
    passing = judged = 0
    worst = 0.0
    for i in range(view.rows):
        if judged >= PROBE_ROWS:
            break
        result = judge_row(check, view, i)
        if result is None:
            continue
        judged += 1
        passing += result.passes(tol)
        worst = max(worst, result.value) if math.isfinite(result.value) else math.inf
    return passing, judged, worst


def _infer_clip(view: TraceView, facts: TraceFacts, tol: float) -> TraceFacts:
    """x0_pred clipped to [-1, 1] when the unclipped Eq. 15 fails on the probe rows but the clipped one holds."""
    if facts.clip or not facts.has("x_t", "eps", "x0_pred"):
        return facts
    plain = _probe(view, checks.x0_from_eps, tol)
    if plain[1] == 0 or plain[0] == plain[1]:
        return facts
    clipped = replace(facts, clip=True, clip_range=1.0)
    test = _probe(TraceView(view.trace, schema.STEPS, clipped), checks.x0_from_eps, tol)
    return clipped if test[0] == test[1] else facts


def _infer_eta(view: TraceView) -> float | None:
    """DDIM's eta from Eq. 16 at the step where its factor is largest (0 where every factor is 0)."""
    best, eta = 0.0, 0.0
    for i in range(view.rows):
        a, b = view.scalar("alpha_bar_t", i), view.scalar("alpha_bar_prev", i)
        try:
            factor = math.sqrt(max((1.0 - b) / (1.0 - a), 0.0)) * math.sqrt(max(1.0 - a / b, 0.0))
        except (ZeroDivisionError, ValueError, OverflowError):
            continue
        if factor > best:
            best, eta = factor, view.scalar("sigma", i) / factor
    return eta if math.isfinite(eta) else None


def _infer_variance(view: TraceView) -> str:
    """DDPM's variance, beta_tilde or beta, as sigma says at the first step with t > 0; 'unknown' if neither."""
    for i in range(view.rows):
        if int(view.scalars["t"][i]) == 0:
            continue
        for variance in ("beta_tilde", "beta"):
            trial = replace(view.facts, variance=variance)
            result = judge_row(checks.ddpm_posterior_sigma, TraceView(view.trace, schema.STEPS, trial), i)
            if result is not None and result.passes(SCALAR_TOLERANCE):
                return variance
        return "unknown"
    return "beta_tilde"


def _ends_at_alpha_bar_0(view: TraceView) -> bool:
    """The last step moves to t = 0 (alpha_bar_0) without visiting it: the report's DDIM convention."""
    if view.rows == 0 or "t_prev" not in view.scalars or not view.complete():
        return False
    last = view.rows - 1  # a live trace's scalars may hold rows committed after the view's count
    return int(view.scalars["t_prev"][last]) == 0 and int(view.scalars["t"][last]) != 0


def identify(trace: Any, facts: TraceFacts) -> Identification:
    """The registered update a sampling trace without a declared sampler follows, with its constants inferred."""
    with np.errstate(all="ignore"):  # damaged or degenerate values make inf residuals, which fail: no warnings
        return _identify(trace, facts)


def _identify(trace: Any, facts: TraceFacts) -> Identification:
    base = TraceView(trace, schema.STEPS, facts)
    tol = _tolerance(facts)
    found = _infer_clip(base, facts, tol)
    results: dict[str, tuple[int, int, float] | None] = {}
    direction = "ascending" if ascending(base) else "descending"  # the same update runs both ways: the timesteps tell which
    for name, check in _STEP_CHECKS.items():
        if DIRECTIONS[name] != direction:
            continue
        if not facts.has(*STEP_NEEDS[name]):
            results[name] = None
            continue
        results[name] = _probe(TraceView(trace, schema.STEPS, replace(found, sampler=name)), check, tol)
    holding = {name: r for name, r in results.items() if r is not None and r[1] and 2 * r[0] > r[1]}
    if not holding:
        tried = [f"{STEP_EQUATIONS[n]} holds at {r[0]} of {r[1]} probed steps (max residual {r[2]:.3g})"
                 for n, r in results.items() if r is not None and r[1]]
        missing = [f"{STEP_EQUATIONS[n]} needs {', '.join(STEP_NEEDS[n])}" for n, r in results.items() if r is None]
        reason = "; ".join(tried + missing) or "no step's output is known yet"
        return Identification(found, "", f"the trace names no sampler and no registered step equation fits its steps ({reason})")
    name = max(holding, key=lambda n: (holding[n][0], n == "ddim"))  # DDIM with eta 1 is DDPM's update: prefer Eq. 12
    passing, judged, _ = holding[name]
    found = replace(found, sampler=name, sampler_source="identified")
    notes = [f"identified as {name}: {STEP_EQUATIONS[name]} holds at {passing} of {judged} probed steps"]
    view = TraceView(trace, schema.STEPS, found)
    if name == "ddim" and found.eta is None and not found.has(schema.ETA):
        eta = _infer_eta(view)
        if eta is not None:
            found = replace(found, eta=eta)
            notes.append(f"eta inferred from sigma: {eta:.6g}")
    if name == "ddpm":
        variance = _infer_variance(view)
        found = replace(found, variance=variance)
        notes.append(f"variance inferred from sigma: {variance}" if variance != "unknown" else "sigma matches neither beta_tilde nor beta")
    if found.clip and not facts.clip:
        notes.append("x0_pred is clipped to [-1, 1]")
    if _ends_at_alpha_bar_0(view):
        found = replace(found, final_alpha_bar="alpha_bar_0")
        notes.append("the last step ends at t = 0 (alpha_bar_0), not at the clean end")
    return Identification(replace(found, identification="; ".join(notes)), "; ".join(notes))


# -- what the applicable checks leave unverified ---------------------------------------------------


def unchecked(facts: TraceFacts, applied: Sequence[str], rows: int, only: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(what, why) for each part of the trace's math that no applied check verifies.

    ``applied`` are the ids of the checks that apply; ``only`` limits the question to those ids.
    """
    out: list[tuple[str, str]] = []
    ran = set(applied)
    if only is not None:
        return [(name, "it does not apply to this trace (see docs/equations.md for what each check needs)") for name in only if name not in ran]
    if facts.kind == "training":
        if rows == 0:
            out.append(("loss.eps, forward.q_sample", "the trace has no worked examples of the loss (they are written when training ends)"))
        return out
    if rows == 0:
        return [("every step", "the trace has no committed steps")]
    if not ran & set(STEP_EQUATIONS.values()):
        out.append(("the step update", _why_no_step(facts)))
    if facts.gaps:
        kept = f"only every {ordinal(facts.every)} step and the last (--every {facts.every})" if facts.every > 1 else "only some steps"
        out.append(("the steps not recorded", f"the trace keeps {kept}: the updates of the steps between, and that each kept step "
                    "starts where the step before it ended, are not checked"))
        if not facts.has(schema.X_PREV):
            out.append(("the step update before a skipped step", "its output, x_t of the next step, was not recorded, nor is x_prev"))
    if facts.has("eps_cond", "eps_uncond") and "guidance.combine" not in ran:
        why = "the trace declares no guidance scale (config sampler.guidance)" if facts.guidance is None else "eps is not recorded"
        out.append(("guidance.combine", why))
    if facts.has("x0_pred") and not ran & {"x0_from_eps", "prediction.conversion", "sigma.denoised", "flow.x0"}:
        if facts.prediction not in ("eps", "x0", "v"):
            out.append(("x0_pred", f"the network's prediction type {facts.prediction!r} is not one noisescope knows (eps, x0, v)"))
        elif facts.prediction != "eps":
            out.append(("prediction.conversion", "model_output (the network's own output) is not recorded"))
        else:
            why = "x0_pred is thresholded dynamically and x0_pred_raw is not recorded" if facts.thresholding else "eps or x_t is not recorded"
            out.append(("x0_from_eps", why))
    if facts.guidance_rescale > 0 and "guidance.rescale" not in ran:
        out.append(("guidance.rescale", "the guided output before the rescale (model_output_cfg) or a branch is not recorded"))
    if "ddim.step" in ran and "ddim.sigma" not in ran:
        out.append(("ddim.sigma", "the trace declares no eta and records none per step"))
    if "ddpm.step" in ran and "ddpm.posterior_variance" not in ran:
        out.append(("ddpm.posterior_variance", f"sigma follows neither beta_tilde nor beta (variance {facts.variance!r})"))
    if facts.gaps and "dpmpp_2m.step" in ran:
        out.append(("dpmpp_2m.step after a skipped step", "that x0_pred_prev is the previous step's x0_pred: that step was not "
                    "recorded (the update itself is checked with the recorded x0_pred_prev)"))
    left_out = dict(_left_out(facts, ran))
    skip = {"the step update"} if "the step update" in {what for what, _ in out} else set()
    out = [(what, left_out.pop(what, why)) for what, why in out]
    return out + [(what, why) for what, why in left_out.items() if not (skip and what in STEP_EQUATIONS.values())]


def _left_out(facts: TraceFacts, ran: set[str]) -> list[tuple[str, str]]:
    """(check id, why) for each check that would apply had the run recorded the tensors its choice left out
    (tracer/trace/choice.py, noisescope sample --record), and does not apply without them."""
    if not facts.left_out:
        return []
    from tracer.equations.evaluate import ALL_CHECKS  # evaluate imports this module

    full = replace(facts, step_names=facts.step_names | facts.left_out)
    out = []
    for check in ALL_CHECKS:
        if check.id in ran or not check.applies(full) or check.applies(facts):
            continue
        needed = [name for name in sorted(facts.left_out) if not check.applies(replace(full, step_names=full.step_names - {name}))]
        what = ", ".join(f"steps/{name}" for name in needed) or "tensors"
        out.append((check.id, f"needs {what}, not recorded (left out by --record)"))
    return out


def _why_no_step(facts: TraceFacts) -> str:
    if facts.sampler_source == "unknown":
        return facts.identification_failure or "the trace names no sampler"
    name = facts.sampler or "unknown"
    if name not in STEP_NEEDS:
        return f"no step equation is registered for the {name!r} sampler"
    missing = [n for n in STEP_NEEDS[name] if not facts.has(n)]
    if not missing:
        return f"{STEP_EQUATIONS[name]} could not be judged at any step: no committed step's output is known yet"
    chosen = " (left out by --record)" if set(missing) <= facts.left_out else ""
    return f"{STEP_EQUATIONS[name]} needs steps/{', steps/'.join(missing)}, which the trace does not record{chosen}"
