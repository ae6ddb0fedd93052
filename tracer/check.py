"""Equation conformance over a trace: every equation and structural check that applies, at every step.

``check_trace(trace)`` evaluates the equations of the registry (tracer/equations) and the
structural checks (the steps chain up and use the schedule's values) at every recorded step,
and returns a ``Report``: per check and step the largest absolute residual max |lhs - rhs|,
the threshold it is held to, and pass or fail. ``format_report`` prints it for people (a
summary line per check, then the first failing steps of each failed check with their
numbers) and ``report_dict`` as JSON. ``noisescope check`` (tracer/cli/check.py) wires them.
After the table come the findings (tracer/equations/findings.py): diagnoses with the step and the numbers
(noise left at the end, a non-zero terminal SNR, ...), which change no verdict.

A trace that lacks the datasets its kind always has is refused by the reader (``TraceError``: bad input); a check
that cannot be judged is listed in ``Report.unchecked`` and makes the verdict INCOMPLETE (exit 3), never PASS: so
are the checks whose tensors a recording choice left out and the steps it skipped (tracer/trace/choice.py), and the
end of a sampling run that did not finish (status running or failed). In a trace that skips steps the report names
each row by the run's step (``steps/index``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tracer.equations import EQUATION_IDS, SCALAR_TOLERANCE, STRUCTURAL_CHECKS, Residual, checks_for, evaluate, tolerance_for
from tracer.equations.context import TraceFacts
from tracer.equations.findings import Finding, trace_findings
from tracer.equations.identify import STEP_EQUATIONS, unchecked
from tracer.trace import schema

EXIT_PASS, EXIT_FAIL, EXIT_INCOMPLETE, EXIT_NOISE_LEFT = 0, 1, 3, 4  # and 2 for bad input, as every command


@dataclass(frozen=True)
class StepResult:
    """One check at one step (a row of its series); residual None where the check does not apply there."""

    step: int
    t: int | None
    residual: float | None
    scale: float | None
    threshold: float | None
    passed: bool | None
    detail: str = ""


@dataclass(frozen=True)
class CheckResult:
    id: str
    kind: str  # equation | structure
    title: str
    reference: str
    implementation: str
    precision: str  # tensor | scalar | exact
    series: str
    tolerance: float
    steps: tuple[StepResult, ...]

    @property
    def failing(self) -> list[int]:
        return [s.step for s in self.steps if s.passed is False]

    @property
    def checked(self) -> int:
        return sum(s.passed is not None for s in self.steps)

    @property
    def passed(self) -> bool:
        return not self.failing

    @property
    def worst(self) -> StepResult | None:
        """The step with the largest residual relative to its threshold."""
        judged = [s for s in self.steps if s.residual is not None and s.threshold is not None]
        if not judged:
            return None
        return max(judged, key=lambda s: (s.passed is False, (s.residual or 0.0) / s.threshold if s.threshold else (s.residual or 0.0)))


@dataclass(frozen=True)
class Report:
    path: str
    kind: str
    status: str
    sampler: str | None
    tensor_dtype: str
    tensor_tolerance: float
    scalar_tolerance: float
    rows: int
    checks: tuple[CheckResult, ...]
    notes: tuple[str, ...]

    unchecked: tuple[tuple[str, str], ...] = ()  # (what, why) the checks that ran do not verify
    identification: str = ""  # how the sampler was identified, when the trace does not name it
    noise_left: float | None = None  # a run that ends short of the clean sample: the noise level sigma its samples keep
    final_alpha_bar: float | None = None  # the alpha_bar of that end (1 / (1 + noise_left^2))
    space: str = "vp"  # vp | sigma | flow: how the run writes its samples (x = sqrt(alpha_bar) x0 + ..., or x0 + sigma eps)
    findings: tuple[Finding, ...] = ()  # diagnoses (tracer/equations/findings.py): they change no verdict
    step_indices: tuple[int, ...] = ()  # the run's step of each row, where the trace skips steps (--every K); () otherwise
    recorded: str = ""  # what a run that recorded less kept (tracer/trace/choice.py), for people; "" for everything

    def step_of(self, row: int) -> int:
        """The run's step of a row: the row itself unless the trace skips steps."""
        return self.step_indices[row] if 0 <= row < len(self.step_indices) else row

    @property
    def passed(self) -> bool:
        """Every check that ran passes (the trace may still be INCOMPLETE: see ``verdict``)."""
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def verdict(self) -> str:
        """FAIL when a check fails; INCOMPLETE when nothing fails but part of the math was not verified; NOISE LEFT when
        everything was verified but the run stops short of the clean sample (a sigma-space run ending at sigma > 0, a
        run whose last step ends at alpha_bar_0 < 1); else PASS."""
        if self.failed:
            return "FAIL"
        if self.unchecked or not any(c.checked for c in self.checks):
            return "INCOMPLETE"
        if self.noise_left:
            return "NOISE LEFT"
        return "PASS"

    @property
    def exit_code(self) -> int:
        """0 PASS, 1 FAIL, 3 INCOMPLETE, 4 NOISE LEFT (2 is bad input, raised before a report exists)."""
        return {"PASS": EXIT_PASS, "FAIL": EXIT_FAIL, "INCOMPLETE": EXIT_INCOMPLETE, "NOISE LEFT": EXIT_NOISE_LEFT}[self.verdict]


def parse_only(text: str | None) -> list[str] | None:
    """``--only ID,ID``: the ids, checked against every known equation and structural check."""
    if text is None:
        return None
    ids = [part.strip() for part in text.split(",") if part.strip()]
    known = (*EQUATION_IDS, *(c.id for c in STRUCTURAL_CHECKS))
    for name in ids:
        if name not in known:
            raise ValueError(f"unknown equation id {name!r} in --only; known: {', '.join(known)}")
    if not ids:
        raise ValueError("--only is empty; give equation ids separated by commas")
    return ids


def _step_result(i: int, t: int | None, residual: Residual | None, tol: float) -> StepResult:
    if residual is None:
        return StepResult(i, t, None, None, None, None)
    return StepResult(i, t, residual.value, residual.scale, residual.threshold(tol), residual.passes(tol), residual.detail)


def check_trace(trace: Any, *, tol: float | None = None, only: Iterable[str] | None = None) -> Report:
    """Run every applicable check (or those in ``only``) over ``trace``; ``tol`` replaces the default tolerances."""
    if tol is not None and not tol >= 0:
        raise ValueError(f"--tol must be >= 0, got {tol}")
    only_ids = None if only is None else list(only)
    selected = checks_for(trace, only_ids)
    facts = TraceFacts.of(trace)
    results = []
    for evaluation in evaluate(trace, selected, tol=tol, read_all=True):
        check = evaluation.check
        ts = trace.scalars(evaluation.series).get("t")
        steps = tuple(
            _step_result(i, None if ts is None or i >= len(ts) else int(ts[i]), r, evaluation.tolerance)
            for i, r in enumerate(evaluation.residuals)
        )
        is_equation = check.id in EQUATION_IDS
        results.append(
            CheckResult(
                id=check.id,
                kind="equation" if is_equation else "structure",
                title=check.title,
                reference=str(getattr(check, "reference", "")),
                implementation=str(getattr(check, "implementation", "")),
                precision=check.precision,
                series=evaluation.series,
                tolerance=evaluation.tolerance,
                steps=steps,
            )
        )
    notes = []
    if facts.kind == "sampling" and schema.X_PREV not in facts.step_names and (only_ids is None or "chain.x_t" in only_ids):
        step_eq = next((r.id for r in results if r.id in STEP_EQUATIONS.values()), None)
        notes.append(
            f"chain.x_t (x_t of step i + 1 is the output of step i, samples that of the last) is checked by {step_eq}, "
            "whose left-hand side is x_t of step i + 1"
            if step_eq
            else "chain.x_t is not checked: the trace records no x_prev and no step equation applies"
        )
    rows = trace.rows(schema.EXAMPLES if facts.kind == "training" else schema.STEPS)
    missing = []
    if facts.kind == "sampling" and trace.status != "complete" and rows:
        missing.append(_unfinished(trace, rows))
    if (facts.kind == "sampling" and trace.status == "complete" and rows and only_ids is None
            and schema.X_PREV not in facts.step_names and not trace.has_final()):
        missing.append(("the last step's update", "the trace records neither x_prev nor samples: the last step's output is unknown"))
    noise_left = _noise_left(trace, facts, rows) if only_ids is None else None
    return Report(
        path=str(trace.path),
        kind=facts.kind,
        status=str(trace.status),
        sampler=facts.sampler,
        tensor_dtype=facts.tensor_dtype,
        tensor_tolerance=tol if tol is not None else tolerance_for(trace),
        scalar_tolerance=tol if tol is not None else SCALAR_TOLERANCE,
        rows=rows,
        checks=tuple(results),
        notes=tuple(notes),
        unchecked=tuple(_unchecked(facts, results, rows, only_ids) + missing),
        identification=facts.identification,
        noise_left=noise_left,
        final_alpha_bar=None if noise_left is None else 1.0 / (1.0 + noise_left * noise_left),
        space=facts.space,
        findings=tuple(trace_findings(trace, facts)),
        step_indices=tuple(int(k) for k in trace.step_indices()[:rows]) if facts.gaps else (),
        recorded=_recorded(trace),
    )


def _unfinished(trace: Any, rows: int) -> tuple[str, str]:
    """What a sampling run that did not finish (status running or failed) leaves unverified: its last committed step's
    update (the step's output is not known), the steps it never recorded and its final samples."""
    planned = int(trace.planned())
    if trace.status != "running":
        state = f"did not finish (status {trace.status})"
    else:
        state = {"gone": "was killed before it could close the trace (status running, but its writer is gone)",
                 "alive": "is still being written (status running, its writer still runs)"}.get(
            trace.writer_state(),
            "did not finish when this was read (status running: still being written, or killed before it could close the trace)")
    recorded = f"{rows} of {planned} planned steps recorded" if planned > rows else f"{rows} steps recorded"
    return ("the end of the run", f"the run {state}: {recorded}; the last one's update is not judged (its output is not "
                                  "known), and what came after it, the final samples included, is not in the trace")


def _recorded(trace: Any) -> str:
    """What a run that recorded less than everything kept, one line ("" for a trace that records everything)."""
    recorded = getattr(trace, "recorded", None)
    return "" if recorded is None else recorded.choice.describe(recorded.batch)


def _noise_left(trace: Any, facts: TraceFacts, rows: int) -> float | None:
    """The noise level sigma a run's samples keep where it ends short of the clean sample, else None.

    In sigma space, the plan's last level (x = x0 + sigma eps). In VP form, a run from noise to data whose last step
    moves to t = 0 (DDIM's ``final_alpha_bar = alpha_bar_0``, the report's convention: the seed-report preset) ends at
    x = sqrt(alpha_bar_0) x0 + sqrt(1 - alpha_bar_0) eps, the level sigma = sqrt((1 - alpha_bar_0) / alpha_bar_0)
    (Karras et al. 2022, Table 1: x / sqrt(alpha_bar) = x0 + sigma eps). Not the re-sampling half of an inversion,
    which ends at alpha_bar_0 because the data it inverts was taken to be x at t = 0 (tracer/inversion.py).
    """
    if facts.space == "sigma":
        return facts.final_sigma or None
    if facts.space != "vp" or facts.final_alpha_bar != "alpha_bar_0" or not rows or trace.status != "complete":
        return None
    config = trace.config if isinstance(trace.config, dict) else {}
    linked = config.get("linked")
    if isinstance(linked, dict) and linked.get("role") == "resample":
        return None
    scalars = trace.scalars(schema.STEPS)
    t, t_prev = scalars.get("t"), scalars.get("t_prev")
    alpha_bar = trace.schedule_arrays().get("alpha_bar")
    if t is None or t_prev is None or alpha_bar is None or len(alpha_bar) == 0 or int(t_prev[rows - 1]) != 0 or int(t[rows - 1]) == 0:
        return None
    if rows >= 2 and int(t[1]) > int(t[0]):  # ascending: a run from data towards noise
        return None
    end = float(alpha_bar[0])
    return math.sqrt((1.0 - end) / end) if 0.0 < end < 1.0 else None


def _unchecked(facts: TraceFacts, results: list[CheckResult], rows: int, only: list[str] | None) -> list[tuple[str, str]]:
    """What the checks that judged at least one row leave unverified, and the checks that judged none."""
    items = unchecked(facts, [r.id for r in results if r.checked], rows, only)
    named = {what for what, _ in items}
    if rows:
        items += [(r.id, "it applies but could not be judged at any row (an input it reads is missing or not yet written)")
                  for r in results if not r.checked and r.id not in named and not (r.id in STEP_EQUATIONS.values() and "the step update" in named)]
    return items


# -- output ---------------------------------------------------------------------------------------------


def _g(x: float | None, width: int = 10) -> str:
    if x is None:
        return f"{'-':>{width}}"
    if not math.isfinite(x):
        return f"{x!s:>{width}}"
    if x == int(x) and abs(x) < 1e6:
        return f"{int(x):>{width}d}"
    return f"{x:>{width}.3e}"


def format_report(report: Report, first: int = 5) -> str:
    """The report for people: one line per check, then the first ``first`` failing steps of each failed check."""
    unit = "worked examples" if report.kind == "training" else "steps"
    made_by = "" if report.kind == "training" else f"{report.sampler or 'unknown sampler'}, "
    header = f"{report.path}: {report.kind} trace, {made_by}{report.rows} {unit}, {report.tensor_dtype} tensors, status {report.status}"
    lines = [
        header,
        *([f"sampler not named by the trace: {report.identification}"] if report.identification else []),
        *([f"recorded: {report.recorded}"] if report.recorded else []),
        f"tolerances: {report.tensor_tolerance:g} (tensors), {report.scalar_tolerance:g} (scalars), relative: "
        "a check passes where max|lhs - rhs| <= tol * max(1, scale)",
        "",
        f"  {'check':<26} {'checked':>7} {'failing':>7} {'max residual':>13} {'threshold':>10} {'at step':>7}  result",
    ]
    for c in report.checks:
        worst = c.worst
        result = "pass" if c.passed else "FAIL"
        if c.checked == 0:
            result = "n/a"
        lines.append(
            f"  {c.id:<26} {c.checked:>7} {len(c.failing):>7} {_g(worst.residual if worst else None, 13)} "
            f"{_g(worst.threshold if worst else None)} {_g(report.step_of(worst.step) if worst else None, 7)}  {result}"
        )
    for note in report.notes:
        lines.append(f"  note: {note}")
    if report.findings:
        lines += ["", "findings:"]
        lines += [f"  {f.title}: {f.sentence}" for f in report.findings]
    for c in report.failed:
        failing = [s for s in c.steps if s.passed is False]
        lines += [
            "",
            f"{c.id} fails at {len(failing)} of {c.checked} {unit}: {c.title}" + (f" [{c.reference}]" if c.reference else ""),
            f"  {'step':>5} {'t':>5} {'residual':>12} {'threshold':>12}  numbers",
        ]
        for s in failing[:first]:
            lines.append(f"  {report.step_of(s.step):>5} {_g(s.t, 5)} {_g(s.residual, 12)} {_g(s.threshold, 12)}  {s.detail}")
        if len(failing) > first:
            lines.append(f"  ... {len(failing) - first} more: {', '.join(map(str, [report.step_of(s.step) for s in failing[first:]][:30]))}"
                         + (" ..." if len(failing) - first > 30 else "") + " (--json for every step)")
    if report.unchecked:
        lines += ["", "not checked:"]
        lines += [f"  {what}: {why}" for what, why in report.unchecked]
    lines.append("")
    judged = [c for c in report.checks if c.checked]
    if report.verdict == "FAIL":
        names = ", ".join(c.id for c in report.failed)
        lines.append(f"FAIL: {len(report.failed)} of {len(report.checks)} checks fail ({names})")
    elif report.verdict == "NOISE LEFT" and report.space == "vp":
        end = report.final_alpha_bar or 1.0
        lines.append(f"NOISE LEFT: {len(judged)} checks pass at every {unit[:-1]}, but the last step ends at t = 0 (alpha_bar_0 = "
                     f"{end:.6g}), not at the clean end (alpha_bar 1): its samples are sqrt({end:.6g}) x0 + "
                     f"{math.sqrt(1.0 - end):.3g} eps, noise of std {math.sqrt(1.0 - end):.3g} left. "
                     "A last step to t_prev = -1 (DDIM's final_alpha_bar one) ends at the clean sample")
    elif report.verdict == "NOISE LEFT":
        sigma = report.noise_left or 0.0
        lines.append(f"NOISE LEFT: {len(judged)} checks pass at every {unit[:-1]}, but the run ends at sigma = {sigma:.6g}, not at the "
                     f"clean sample: its samples keep noise of std {sigma:.6g} (x = x0 + sigma eps; alpha_bar "
                     f"{1.0 / (1.0 + sigma * sigma):.6g}). Sample with --final-sigma zero (diffusers: final_sigmas_type=\"zero\") for clean samples")
    elif report.verdict == "INCOMPLETE":
        what = "; ".join(w for w, _ in report.unchecked) or "no check could be judged"
        lines.append(f"INCOMPLETE: {len(judged)} checks pass, but not everything could be checked ({what})")
    else:
        lines.append(f"PASS: {len(judged)} checks pass at every {unit[:-1]}")
    return "\n".join(lines)


def format_steps(report: Report) -> str:
    """Every step's residual for every check: a row per step, a column per check ('*' marks a failure)."""
    ids = [c.id for c in report.checks]
    by_id = {c.id: c for c in report.checks}
    width = max([12, *(len(i) for i in ids)])
    lines = [f"{'step':>5} {'t':>5} " + " ".join(f"{i:>{width}}" for i in ids)]
    for k in range(report.rows):
        cells = []
        t = None
        for i in ids:
            s = by_id[i].steps[k] if k < len(by_id[i].steps) else None
            if s is not None and s.t is not None:
                t = s.t
            text = "-" if s is None or s.residual is None else f"{s.residual:.2e}" + ("*" if s.passed is False else "")
            cells.append(f"{text:>{width}}")
        lines.append(f"{report.step_of(k):>5} {_g(t, 5)} " + " ".join(cells))
    return "\n".join(lines)


def _json_float(x: float | None) -> float | str | None:
    """JSON has no inf or nan: those become strings."""
    return x if x is None or math.isfinite(x) else str(x)


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON values: every check with every step."""
    return {
        "path": report.path,
        "kind": report.kind,
        "status": report.status,
        "sampler": report.sampler,
        "tensor_dtype": report.tensor_dtype,
        "tolerances": {"tensor": report.tensor_tolerance, "scalar": report.scalar_tolerance},
        "rows": report.rows,
        "verdict": report.verdict,
        "passed": report.verdict == "PASS",
        "noise_left": report.noise_left,
        "final_alpha_bar": report.final_alpha_bar,
        "identification": report.identification or None,
        **({"recorded": report.recorded} if report.recorded else {}),
        "unchecked": [{"what": what, "why": why} for what, why in report.unchecked],
        "notes": list(report.notes),
        "findings": [
            {"kind": f.kind, "title": f.title, "step": f.step, "t": f.t, "tensor": f.tensor, "sentence": f.sentence,
             "numbers": {k: _json_float(v) if isinstance(v, float) else v for k, v in f.numbers.items()}}
            for f in report.findings
        ],
        "checks": [
            {
                "id": c.id,
                "kind": c.kind,
                "title": c.title,
                "reference": c.reference,
                "implementation": c.implementation,
                "precision": c.precision,
                "series": c.series,
                "tolerance": c.tolerance,
                "passed": c.passed,
                "checked": c.checked,
                "failing": c.failing,
                "steps": [
                    {"step": s.step, **({"index": report.step_of(s.step)} if report.step_indices else {}),
                     "t": s.t, "residual": _json_float(s.residual), "scale": _json_float(s.scale),
                     "threshold": _json_float(s.threshold),
                     "passed": s.passed, "detail": s.detail}
                    for s in c.steps
                ],
            }
            for c in report.checks
        ],
    }
