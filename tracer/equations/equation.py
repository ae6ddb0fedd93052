"""One equation of the registry: what the viewer shows and how ``noisescope check`` verifies it.

``Equation`` holds an equation's LaTeX, its paper, the dotted path of the function that
implements it, the trace names it relates, its independent float64 check and when it
applies. ``Values`` substitutes a step's recorded scalars into the LaTeX. The shared
equations live in ``tracer.equations.registry``; each sampler module (tracer/samplers)
declares its own entries with this class. Torch-free: the viewer imports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracer.equations.context import Residual, TraceFacts, TraceView, judge_row
from tracer.trace import schema


def num(x: float) -> str:
    """A number for LaTeX: 4 significant digits, powers of ten written out.

    Where 4 digits would round the value onto a shorter number it is not (0.99997 onto 1,
    0.5000301 onto 0.5), digits are added, up to 12, until it reads differently from that
    rounding; a difference below float32 resolution (1e-7 relative) is not worth showing.
    """
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return r"\infty" if x > 0 else (r"-\infty" if x < 0 else r"\mathrm{nan}")
    for digits in range(4, 13):
        text = _digits(x, digits)
        shown = float(text.replace(r"\times 10^{", "e").rstrip("}")) if r"\times" in text else float(text)
        if _significant(text) >= digits or abs(shown - x) <= 1e-7 * abs(x):
            return text
    return text


def _digits(x: float, digits: int) -> str:
    if 1e-3 <= abs(x) < 1e5 and "e" not in (text := f"{x:.{digits}g}"):
        return text
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return rf"{mantissa.rstrip('0').rstrip('.')}\times 10^{{{int(exponent)}}}"


def _significant(text: str) -> int:
    """How many significant digits a number written by _digits shows."""
    mantissa = text.split(r"\times")[0].lstrip("-").replace(".", "").lstrip("0")
    return len(mantissa)


CLEAN_END = -1.0  # t_prev of a last step that lands on the clean sample


class Values:
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

    def ratio(self, f: Callable[[float, float], float], symbol: str) -> str:
        """f(alpha_bar_t, alpha_bar_prev) as a number, or ``symbol`` where the step lacks them or f is undefined."""
        return ratio(self, f, symbol)

    @staticmethod
    def num(x: float) -> str:
        return num(x)

    def t(self, name: str = "t", symbol: str = "t") -> str:
        value = self.get(name)
        return symbol if value is None else str(int(value))

    def clean_end(self) -> bool:
        """Whether this step moves to t_prev = -1: past the schedule's first index, where alpha_bar = 1."""
        return self.get("t_prev") == CLEAN_END

    def x_prev(self, symbol: str = "t-1") -> str:
        """x of the timestep the step moves to: x_{t_prev}, or x_0 (the clean sample) at the clean end."""
        return "x_0" if self.clean_end() else f"x_{{{self.t('t_prev', symbol)}}}"

    def clean_note(self) -> str:
        """Said once, after the equation of a step that reaches the clean end: why its x reads x_0."""
        if not self.clean_end():
            return ""
        return r"\quad\small(x_0\text{: the clean sample, one step past schedule index 0; recorded as } t_{\mathrm{prev}} = -1,\ \bar\alpha = 1)"


def lhs(latex: str) -> str:
    """The left-hand side of an equation's LaTeX: what comes before its first '=' (all of it when it has none)."""
    return latex.split("=", 1)[0].strip().rstrip("\\").strip()


def sqrt0(x: float) -> float:
    return math.sqrt(max(x, 0.0))


def ratio(v: Values, f: Callable[[float, float], float], symbol: str) -> str:
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
    values: Callable[[Values], str] = field(default=lambda v: "", repr=False, compare=False)
    symbol: str = field(default="", compare=False)  # LaTeX of what it defines; default: the left-hand side of latex

    @property
    def title_latex(self) -> str:
        """The equation's title in symbols: ``symbol``, or the left-hand side of its LaTeX."""
        return self.symbol or lhs(self.latex)

    def values_latex(self, step_scalars: Mapping[str, float]) -> str:
        """The same equation with this step's scalar values substituted."""
        return self.values(Values(step_scalars))

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

