"""Every check that applies to a trace, evaluated at every step: the equations and the structural checks.

Used by ``noisescope check`` (tracer/check.py) and by the viewer (``failing_steps``, to mark
failing steps on the scrubber). Tolerances: tensor checks use the trace's dtype tolerance
(``tolerance_for``), scalar checks SCALAR_TOLERANCE, exact checks none; an explicit ``tol``
replaces the first two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tracer.equations.context import SCALAR_TOLERANCE, Residual, TraceFacts, TraceView
from tracer.equations.identify import unchecked
from tracer.equations.registry import EQUATIONS, tolerance_for
from tracer.equations.structure import STRUCTURAL_CHECKS


class Check(Protocol):
    """An equation or a structural check."""

    @property
    def id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def precision(self) -> str: ...

    def applies(self, facts: TraceFacts) -> bool: ...

    def evaluate(self, view: TraceView, i: int) -> Residual | None: ...


def _series(check: Any, facts: TraceFacts) -> str:
    series_for = getattr(check, "series_for", None)
    return str(series_for(facts)) if callable(series_for) else str(check.series)


ALL_CHECKS: tuple[Check, ...] = (*EQUATIONS, *STRUCTURAL_CHECKS)
CHECK_IDS: tuple[str, ...] = tuple(c.id for c in ALL_CHECKS)


def checks_for(trace: Any, only: Iterable[str] | None = None) -> list[Check]:
    """The checks that apply to ``trace`` (equations first, in reading order), limited to ``only`` ids if given."""
    facts = TraceFacts.of(trace)
    wanted = None if only is None else set(only)
    unknown = sorted((wanted or set()) - set(CHECK_IDS))
    if unknown:
        raise ValueError(f"unknown check id {unknown[0]!r}; known: {', '.join(CHECK_IDS)}")
    return [c for c in ALL_CHECKS if (wanted is None or c.id in wanted) and c.applies(facts)]


def tolerance(check: Check, trace: Any, tol: float | None = None) -> float:
    """The relative tolerance of ``check`` on ``trace``; ``tol`` replaces the default (not for exact checks)."""
    if check.precision == "exact":
        return 0.0
    if tol is not None:
        return tol
    return tolerance_for(trace) if check.precision == "tensor" else SCALAR_TOLERANCE


@dataclass(frozen=True)
class Evaluation:
    """One check over every row of its series: a Residual per row (None where it does not apply)."""

    check: Check
    series: str
    tolerance: float
    residuals: tuple[Residual | None, ...]

    @property
    def failing(self) -> list[int]:
        return [i for i, r in enumerate(self.residuals) if r is not None and not r.passes(self.tolerance)]


def evaluate(trace: Any, checks: Sequence[Check] | None = None, tol: float | None = None, *, read_all: bool = False) -> list[Evaluation]:
    """Evaluate ``checks`` (default: all that apply) at every row, reading each row once per series.

    ``read_all``: also read every committed row no check read (and the final datasets), so that a
    verdict never covers a row that cannot be read; ``noisescope check`` asks for it.
    """
    if tol is not None and not tol >= 0:
        raise ValueError(f"the tolerance must be >= 0, got {tol}")
    facts = TraceFacts.of(trace)
    selected = list(checks) if checks is not None else checks_for(trace)
    views: dict[str, TraceView] = {}
    for check in selected:
        series = _series(check, facts)
        if series not in views:
            views[series] = TraceView(trace, series, facts)
    results: dict[str, list[Residual | None]] = {c.id: [] for c in selected}
    with np.errstate(all="ignore"):  # degenerate values (alpha_bar 0, damaged rows) give inf residuals, which fail
        _evaluate_rows(views, selected, facts, results)
    if read_all:
        for series in trace.series_names():  # the series no check reads too (a training trace's snapshots)
            (views.get(series) or TraceView(trace, series, facts)).read_the_rest()
        for name in trace.root_specs():
            trace.final(name)
    return [Evaluation(c, _series(c, facts), tolerance(c, trace, tol), tuple(results[c.id])) for c in selected]


def _evaluate_rows(views: dict[str, TraceView], selected: list[Check], facts: TraceFacts, results: dict[str, list[Residual | None]]) -> None:
    for series, view in views.items():
        mine = [c for c in selected if _series(c, facts) == series]
        for i in range(view.rows):  # step-major: the tensors of rows i and i + 1 stay cached
            for check in mine:
                results[check.id].append(check.evaluate(view, i))


def failing_steps(trace: Any, tol: float | None = None) -> dict[str, list[int]]:
    """Check id -> the steps (rows) where it fails, for every equation and structural check that applies.

    Only checks that fail somewhere are listed; an empty dict means the trace passes everything.
    """
    return {e.check.id: e.failing for e in evaluate(trace, tol=tol) if e.failing}


def unchecked_for(trace: Any) -> list[tuple[str, str]]:
    """(what, why) for the parts of the trace's math that no applicable check verifies (the viewer's "not checked").

    ``noisescope check`` asks the same question of the checks that judged at least one row.
    """
    facts = TraceFacts.of(trace)
    series = "examples" if facts.kind == "training" else "steps"
    return unchecked(facts, [c.id for c in checks_for(trace)], int(trace.rows(series)))
