"""Structural checks of a sampling trace: the steps chain up, and use the schedule's values.

Not equations of a paper but the bookkeeping every reverse process must get right
(docs/trace-format.md):

- ``chain.t_prev``: the timestep step i moves to is the timestep of step i + 1; the last step
  moves to -1 (the clean end, alpha_bar = 1), or to 0 where the trace says its last step uses
  alpha_bar_0 (``final_alpha_bar = "alpha_bar_0"``, the seed-report preset). Exact. A trace whose
  timesteps ascend (DDIM inversion, from data towards noise: ``ascending``) ends instead at the
  last timestep its config lists (``sampler.timesteps``), or, where it lists none, at a timestep
  above the last step's t inside the schedule.
- ``schedule.alpha_bar_t`` / ``schedule.alpha_bar_prev``: the alpha_bar values the update used are
  the schedule's at t and at t_prev (1 at -1). Relative, to 1e-6 by default.
  A sigma-space trace (it records ``sigma_t``) takes its alpha_bar from the noise level instead
  (the equation ``sigma.alpha_bar``), and its t from t(sigma) (``sigma.timestep``).
- ``chain.sigma``: in sigma space, sigma_t of step i + 1 is sigma_next of step i, and both are the
  levels the config plans (``sampler.sigmas``), so the last step lands on the plan's end.
- ``chain.flow``: on the flow path, t_flow of step i + 1 is t_flow_next of step i, and both are the times the
  config plans (``sampler.times``); a flow trace's alpha_bar and t come from its time (``flow.time``).
- ``step.alpha_t``: the step's recorded alpha_t and beta_t are alpha_bar_t / alpha_bar_prev and 1 - alpha_t.
- ``chain.x_t``: x_t of step i + 1 is the output of step i, and ``samples`` the output of the last
  step. Checked directly where the trace records each step's output (``x_prev``, as traces of other
  libraries' samplers do); otherwise the output of a step is only known through its step equation
  (ddpm.step, ddim.step), whose left-hand side is x_t of step i + 1: that equation is this check.

In a trace that keeps every K-th step (``steps/index``, tracer/trace/choice.py) row i + 1 is not always
the step after row i's (``TraceView.follows``): the chains are judged only where it is, the planned levels
are looked up at the run's step index, and ``noisescope check`` lists the skipped steps as not checked.

A scheduler whose "previous" timestep is not the one it visits next (diffusers' DDIMScheduler with
``linspace`` spacing) fails ``chain.t_prev`` at exactly those steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tracer.equations.context import Residual, TraceFacts, TraceView, judge_row


@dataclass(frozen=True)
class StructuralCheck:
    """One structural check: evaluated per step like an equation, but with no LaTeX or implementation."""

    id: str
    title: str
    precision: str  # tensor | scalar | exact: which tolerance applies
    check: Callable[[TraceView, int], Residual | None] = field(repr=False, compare=False)
    applies_to: Callable[[TraceFacts], bool] = field(repr=False, compare=False)
    series: str = "steps"
    note: str = ""

    def applies(self, facts: TraceFacts) -> bool:
        return self.applies_to(facts)

    def evaluate(self, view: TraceView, i: int) -> Residual | None:
        return judge_row(self.check, view, i)


def ascending(view: TraceView) -> bool:
    """Whether the trace's timesteps grow from step to step (a run from data towards noise, as DDIM inversion's):
    t of the second step above the first's, or, with one step, t_prev above t."""
    t, t_prev = view.scalars.get("t"), view.scalars.get("t_prev")
    if t is None or view.rows < 1 or len(t) < 1:
        return False
    if view.rows >= 2 and len(t) >= 2:
        return bool(int(t[1]) > int(t[0]))
    return t_prev is not None and len(t_prev) >= 1 and bool(int(t_prev[0]) > int(t[0]))


def _declared_last(view: TraceView) -> int | None:
    """The last of the timesteps the trace's config lists (``sampler.timesteps``), where it lists integers."""
    config = view.trace.config if isinstance(getattr(view.trace, "config", None), dict) else {}
    sampler = config.get("sampler")
    listed = sampler.get("timesteps") if isinstance(sampler, dict) else None
    if isinstance(listed, list) and listed and all(isinstance(t, int) and not isinstance(t, bool) for t in listed):
        return int(listed[-1])
    return None


def _ascending_end(view: TraceView, i: int, t_prev: int, used: str) -> Residual:
    """The last step of an ascending trace: it lands at the last listed timestep, else above its t inside the schedule."""
    t = int(view.scalars["t"][i])
    declared = _declared_last(view)
    if declared is not None:
        return Residual(float(abs(t_prev - declared)), 0.0, 0.0, f"t_prev {t_prev}{used}, the last timestep the config lists {declared}")
    last = len(view.schedule.get("alpha_bar", ())) - 1
    inside = t < t_prev and (last < 0 or t_prev <= last)
    bound = f"{t + 1}..{last}" if last >= 0 else f"above {t}"
    return Residual(0.0 if inside else float(abs(t_prev - t) + 1), 0.0, 0.0, f"t_prev {t_prev}{used}, a later timestep {bound}")


def t_prev_chain(view: TraceView, i: int) -> Residual | None:
    t_prev = int(view.scalars["t_prev"][i])
    used = f" (alpha_bar_prev {view.scalar('alpha_bar_prev', i):.6g})" if "alpha_bar_prev" in view.scalars else ""
    if i + 1 < view.rows and not view.follows(i):
        return None  # the steps after this one were not recorded (--every K): where it should move is unknown
    if i + 1 < view.rows:
        expected, what = int(view.scalars["t"][i + 1]), "the next step's t"
        if "alpha_bar_t" in view.scalars:
            what_value = f" (alpha_bar_t {view.scalar('alpha_bar_t', i + 1):.6g})"
        else:
            what_value = ""
    elif view.complete() and ascending(view):
        return _ascending_end(view, i, t_prev, used)
    elif view.complete() and view.facts.space == "sigma" and view.facts.final_sigma:
        from tracer.equations.checks import schedule_timestep  # the nearest index of the noise level the plan ends at

        expected = round(schedule_timestep(view, view.facts.final_sigma))
        what, what_value = "the index of the plan's last noise level", f" (sigma {view.facts.final_sigma:.6g})"
    elif view.complete():
        expected = 0 if view.facts.final_alpha_bar == "alpha_bar_0" else -1
        what, what_value = "the clean end", " (alpha_bar_0)" if expected == 0 else " (alpha_bar 1)"
    else:
        return None  # the run did not finish: where its last step should move is unknown
    detail = f"t_prev {t_prev}{used}, {what} {expected}{what_value}"
    return Residual(float(abs(t_prev - expected)), 0.0, 0.0, detail)


def _alpha_bar(view: TraceView, i: int, recorded: str, index: str) -> Residual | None:
    if "alpha_bar" not in view.schedule:
        return None
    t = int(view.scalars[index][i])
    last = len(view.schedule["alpha_bar"]) - 1
    if not (-1 if index == "t_prev" else 0) <= t <= last:
        return Residual(float("inf"), 0.0, 0.0, f"{index} {t} is outside the schedule's indices 0..{last}" + (" (or -1)" if index == "t_prev" else ""))
    value, expected = view.scalar(recorded, i), view.alpha_bar_at(t)
    detail = f"{recorded} {value:.9g}, schedule alpha_bar[{t}] {expected:.9g}" if t >= 0 else f"{recorded} {value:.9g}, clean end 1"
    return Residual(abs(value - expected), abs(expected), 0.0, detail)


def alpha_bar_t(view: TraceView, i: int) -> Residual | None:
    return _alpha_bar(view, i, "alpha_bar_t", "t")


def alpha_bar_prev(view: TraceView, i: int) -> Residual | None:
    return _alpha_bar(view, i, "alpha_bar_prev", "t_prev")


def step_alpha(view: TraceView, i: int) -> Residual | None:
    alpha_t = view.scalar("alpha_bar_t", i) / view.scalar("alpha_bar_prev", i)
    value = max(abs(view.scalar("alpha_t", i) - alpha_t), abs(view.scalar("beta_t", i) - (1.0 - alpha_t)))
    return Residual(value, 1.0, 1.0, f"alpha_t {view.scalar('alpha_t', i):.9g}, alpha_bar_t / alpha_bar_prev {alpha_t:.9g}")


def x_t_chain(view: TraceView, i: int) -> Residual | None:
    if i + 1 < view.rows and not view.follows(i):
        return None  # the next step was not recorded (--every K): nothing to compare the output with
    out = view.tensor("x_prev", i)
    if i + 1 < view.rows:
        following, what = view.tensor("x_t", i + 1), "x_t of step i + 1"
    else:
        samples = view.samples()
        if samples is None:
            return None
        following, what = samples, "samples"
    if following.shape != out.shape:
        return Residual(float("inf"), 0.0, 0.0, f"{what} has shape {following.shape}, the output {out.shape}")
    return Residual(float(np.max(np.abs(following - out))), float(np.max(np.abs(out))), 1.0, f"output of step {i} vs {what}")


def sigma_chain(view: TraceView, i: int) -> Residual | None:
    """sigma_t of step i + 1 is sigma_next of step i, and both are the config's planned levels (``sampler.sigmas``) where it
    lists them: the last step lands on the plan's end."""
    return _level_chain(view, i, "sigma_t", "sigma_next", "sigmas")


def flow_chain(view: TraceView, i: int) -> Residual | None:
    """t_flow of step i + 1 is t_flow_next of step i, and both are the config's planned times (``sampler.times``)."""
    return _level_chain(view, i, "t_flow", "t_flow_next", "times")


def _level_chain(view: TraceView, i: int, level: str, level_next: str, option: str) -> Residual | None:
    sigma_t, sigma_next = view.scalar(level, i), view.scalar(level_next, i)
    planned = view.facts.option(option)
    found: list[Residual] = []
    k = view.step_index(i)  # the run's step (row i where every step is recorded)
    if isinstance(planned, tuple) and len(planned) >= 2 and all(isinstance(s, (int, float)) for s in planned):
        if not 0 <= k < len(planned) - 1:
            return Residual(math.inf, 0.0, 0.0, f"step {k} is past the {len(planned) - 1} steps the config plans")
        for name, value, expected in ((level, sigma_t, float(planned[k])), (level_next, sigma_next, float(planned[k + 1]))):
            found.append(Residual(abs(value - expected), abs(expected), 0.0, f"{name} {value:.9g}, planned {expected:.9g}"))
    if i + 1 < view.rows and view.follows(i):
        following = view.scalar(level, i + 1)
        found.append(Residual(abs(following - sigma_next), abs(sigma_next), 0.0,
                              f"{level_next} {sigma_next:.9g}, next {level} {following:.9g}"))
    if not found:
        return None
    return max(found, key=lambda r: r.value / max(r.scale, 1e-300))


def _sampling(*names: str) -> Callable[[TraceFacts], bool]:
    return lambda facts: facts.kind == "sampling" and facts.has(*names)


def _vp(*names: str) -> Callable[[TraceFacts], bool]:
    """A VP trace's: in sigma space alpha_bar comes from the noise level (sigma.alpha_bar), on the flow path from the time
    (flow.time), not from the schedule at t."""
    return lambda facts: facts.kind == "sampling" and facts.space == "vp" and facts.has(*names)


STRUCTURAL_CHECKS: tuple[StructuralCheck, ...] = (
    StructuralCheck("chain.t_prev", "t_prev of step i is t of step i + 1", "exact", t_prev_chain, _sampling("t", "t_prev")),
    StructuralCheck("schedule.alpha_bar_t", "alpha_bar_t is the schedule's at t", "scalar", alpha_bar_t, _vp("t", "alpha_bar_t")),
    StructuralCheck(
        "schedule.alpha_bar_prev", "alpha_bar_prev is the schedule's at t_prev (1 at -1)", "scalar", alpha_bar_prev,
        _vp("t_prev", "alpha_bar_prev"),
    ),
    StructuralCheck(
        "chain.sigma", "sigma_t of step i + 1 is sigma_next of step i, both the planned levels", "scalar", sigma_chain,
        _sampling("sigma_t", "sigma_next"),
    ),
    StructuralCheck(
        "chain.flow", "t_flow of step i + 1 is t_flow_next of step i, both the planned times", "scalar", flow_chain,
        _sampling("t_flow", "t_flow_next"),
    ),
    StructuralCheck(
        "step.alpha_t", "alpha_t = alpha_bar_t / alpha_bar_prev, beta_t = 1 - alpha_t", "scalar", step_alpha,
        _sampling("alpha_t", "beta_t", "alpha_bar_t", "alpha_bar_prev"),
    ),
    StructuralCheck(
        "chain.x_t", "x_t of step i + 1 (samples after the last) is the output of step i", "tensor", x_t_chain,
        _sampling("x_t", "x_prev"),
        note="checked through the step equation (ddpm.step / ddim.step) where the trace does not record x_prev",
    ),
)
