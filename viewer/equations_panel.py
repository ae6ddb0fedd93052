"""Equations beside the code: for the current step, every equation behind what is shown.

For each equation of the registry (tracer/equations) that applies to the trace: its
LaTeX, the same equation with this step's scalars substituted, the source of the
function that implements it with the computing lines highlighted (read from the file
by the registry, never a copy, so it cannot drift), and the residual max |lhs - rhs|
of the recorded tensors, passed or failed against a tolerance that follows the trace's
tensor dtype. The registry is passed in, so tests can hand a small fake one.
"""

from __future__ import annotations

import html
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import streamlit as st
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from pygments.styles import get_style_by_name

from viewer.describe import code_panel_note
from viewer.panels.errors import one_line
from viewer.text import plain

# Relative tolerance of a recorded equation, by the dtype the tensors were stored in.
TOLERANCE: Final[dict[str, float]] = {"float32": 1e-5, "float16": 1e-2, "float64": 1e-10}
HIGHLIGHT: Final = "#fff3b0"  # background of the computing lines
# Long lines wrap (pre-wrap, broken anywhere as a last resort) so a highlighted formula is never cut off at the edge.
PRE_STYLE: Final = ("font-size:12.5px; line-height:1.45; margin:0; padding:8px; white-space:pre-wrap; "
                    "overflow-wrap:anywhere; word-break:break-word; overflow-x:auto")


class SourceViewLike(Protocol):
    path: str
    first_line: int
    lines: list[str]
    highlight: set[int]


class EquationLike(Protocol):
    id: str
    title: str
    reference: str
    latex: str
    implementation: str
    names: tuple[str, ...]

    def values_latex(self, step_scalars: Mapping[str, float]) -> str: ...

    def residual(self, trace: Any, i: int) -> float | None: ...


class RegistryLike(Protocol):
    def equations_for(self, trace: Any) -> list[Any]: ...

    def implementation_source(self, eq: Any) -> Any: ...


@dataclass(frozen=True)
class Verdict:
    """A residual judged against the tolerance: 'pass', 'fail' or 'n/a' (the check does not apply)."""

    status: str
    residual: float | None
    tolerance: float

    @property
    def text(self) -> str:
        if self.residual is None:
            return "not checked at this step"
        relation = "≤" if self.status == "pass" else ">"
        return f"residual max |lhs − rhs| = {self.residual:.3e} {relation} tolerance {self.tolerance:.2e}"

    @property
    def markdown(self) -> str:
        """A badge (holds / fails / not checked) and the numbers, in Streamlit markdown."""
        badge = {"pass": ":green-badge[holds]", "fail": ":red-badge[fails]"}.get(self.status, ":gray-badge[not checked]")
        return f"{badge} {self.text}"


def load_registry() -> Any | None:
    """The equation registry module, or None while it is not installed (or not complete: no equations_for)."""
    try:
        module = importlib.import_module("tracer.equations")
    except ModuleNotFoundError as error:
        if error.name in ("tracer.equations", "tracer"):
            return None
        raise
    needed = ("equations_for", "implementation_source")
    return module if all(callable(getattr(module, name, None)) for name in needed) else None


def residual_scale(trace: Any, i: int, names: Sequence[str]) -> float:
    """max(1, max |value|) over the tensors an equation relates at step i: what a relative tolerance is relative to."""
    present = set(trace.tensor_names()) if hasattr(trace, "tensor_names") else set()
    scale = 1.0
    for name in names:
        if name in present:
            scale = max(scale, float(np.max(np.abs(trace.tensor(name, i)))))
    return scale


def tolerance_for(registry: Any, eq: Any, dtype: str, trace: Any = None, i: int = 0) -> float:
    """The absolute tolerance of a bare float residual: TOLERANCE[dtype] (relative) times the size of the
    tensors the equation relates at this step (for registries without their own scale)."""
    relative = TOLERANCE.get(dtype, TOLERANCE["float32"])
    return relative * (residual_scale(trace, i, getattr(eq, "names", ())) if trace is not None else 1.0)


def verdict(residual: float | None, tolerance: float) -> Verdict:
    """Pass when the residual is finite and at most the tolerance."""
    if residual is None:
        return Verdict("n/a", None, tolerance)
    ok = bool(np.isfinite(residual)) and residual <= tolerance
    return Verdict("pass" if ok else "fail", float(residual), tolerance)


def registry_key(registry: Any) -> str:
    return str(getattr(registry, "__name__", id(registry)))


def trace_view(registry: Any, eq: Any, trace: Any, memo: dict[Any, Any], rows: dict[str, int]) -> Any:
    """The registry's TraceView of the series ``eq`` reads, kept in ``memo`` while the trace's row count stays the same.

    A TraceView reads every scalar of its series once and keeps the last few rows of tensors,
    so reusing it across equations and steps is what makes the checks cheap enough per scrub.
    """
    name = registry_key(registry)
    facts = memo.get(("facts", name))
    if facts is None:
        facts = memo[("facts", name)] = registry.TraceFacts.of(trace)
    series = eq.series_for(facts)
    if series not in rows:
        rows[series] = int(trace.rows(series))
    key = ("trace_view", name, series)
    view = memo.get(key)
    if view is None or view.rows != rows[series]:
        view = memo[key] = registry.TraceView(trace, series, facts)
    return view


def judge(registry: Any, eq: Any, trace: Any, i: int, dtype: str, memo: dict[Any, Any] | None = None, rows: dict[str, int] | None = None) -> Verdict:
    """The equation's residual at step i against its tolerance.

    With tracer.equations, the registry's own check decides: ``eq.evaluate`` gives the residual
    and the scale of the values compared, and it passes when residual <= tol * max(floor, scale),
    tol being ``tolerance_for(trace)`` (by tensor dtype) or SCALAR_TOLERANCE for scalar equations:
    the same verdict as ``noisescope check``. A registry whose ``residual`` is only a float is
    judged against TOLERANCE[dtype] relative to the size of the tensors the equation relates.
    """
    if callable(getattr(eq, "evaluate", None)) and hasattr(registry, "TraceView") and hasattr(registry, "TraceFacts"):
        view = trace_view(registry, eq, trace, {} if memo is None else memo, {} if rows is None else rows)
        result = eq.evaluate(view, i)
        scalar = getattr(eq, "precision", "tensor") == "scalar"
        tol = float(registry.SCALAR_TOLERANCE) if scalar else float(registry.tolerance_for(trace))
        if result is None:
            return verdict(None, tol)
        return verdict(float(result.value), float(result.threshold(tol)))
    value = eq.residual(trace, i)
    return verdict(None if value is None else float(value), tolerance_for(registry, eq, dtype, trace, i))


def step_scalars(scalars: Mapping[str, np.ndarray], i: int) -> dict[str, float]:
    """The scalars of step i as plain floats (what values_latex substitutes)."""
    return {name: float(values[i]) for name, values in scalars.items() if 0 <= i < len(values)}


PROJECT = Path(__file__).resolve().parents[1]


def display_path(path: str) -> str:
    """A source path as the project names it (tracer/samplers/ddim.py), absolute when it lies elsewhere."""
    try:
        return Path(path).resolve().relative_to(PROJECT).as_posix()
    except ValueError:
        return path


class SourceStyle(get_style_by_name("friendly")):  # type: ignore[misc]
    """Pygments' friendly style with a warmer highlight for the computing lines."""

    highlight_color = HIGHLIGHT


def source_html(view: Any) -> str:
    """The implementing function's source, line-numbered as in its file, computing lines highlighted (inline styles)."""
    code = "\n".join(line.rstrip("\n") for line in view.lines)
    hl_lines = sorted(int(k) + 1 for k in view.highlight)  # pygments counts lines from 1
    formatter = HtmlFormatter(
        style=SourceStyle, noclasses=True, hl_lines=hl_lines, linenos="inline", linenostart=int(view.first_line),
        prestyles=PRE_STYLE,
    )
    body = highlight(code, PythonLexer(), formatter)
    location = html.escape(f"{display_path(view.path)}:{view.first_line}")
    return f"<div style='font-size:11px;color:#888;margin-bottom:2px'><code>{location}</code></div>{body}"


def run_constants(config: Mapping[str, Any]) -> dict[str, float]:
    """Numbers of the run that equations use besides the step scalars: the guidance scale, its rescale and eta, when set."""
    sampler = config.get("sampler")
    out: dict[str, float] = {}
    if isinstance(sampler, Mapping):
        for name in ("guidance", "guidance_rescale", "eta"):
            value = sampler.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = float(value)
    return out


@dataclass(frozen=True)
class EquationStep:
    """One equation at one step, ready to draw: its values substituted, its verdict, its source (or why not)."""

    eq: Any
    values: str | None
    verdict: Verdict | None
    source: str | None  # highlighted HTML
    problems: tuple[str, ...] = ()


def equations_at(
    registry: Any, trace: Any, i: int, scalars: Mapping[str, np.ndarray], dtype: str,
    names: Sequence[str] | None = None, memo: dict[Any, Any] | None = None,
) -> list[EquationStep]:
    """Every equation that applies to ``trace`` (limited to those relating ``names`` when given), evaluated at step i.

    ``memo`` (per open trace) keeps what does not change from step to step: the equations
    that apply, the registry's TraceView, the highlighted sources.
    """
    memo = {} if memo is None else memo
    key = ("equations", registry_key(registry))
    equations = memo.get(key)
    if equations is None:
        equations = memo[key] = list(registry.equations_for(trace))
    if names is not None:
        shown = set(names)
        equations = [eq for eq in equations if not getattr(eq, "names", ()) or shown & set(eq.names)]
    values = {**run_constants(getattr(trace, "config", {}) or {}), **step_scalars(scalars, i)}
    rows: dict[str, int] = {}
    out = []
    for eq in equations:
        problems: list[str] = []
        latex: str | None = None
        result: Verdict | None = None
        try:
            latex = eq.values_latex(values)
        except Exception as error:  # noqa: BLE001
            problems.append(f"values not available: {plain(one_line(error))}")
        try:
            result = judge(registry, eq, trace, i, dtype, memo, rows)
        except Exception as error:  # noqa: BLE001
            problems.append(f"residual not computed: {plain(one_line(error))}")
        source_key = ("source", registry_key(registry), eq.id)
        source = memo.get(source_key)
        if source is None:
            try:
                source = memo[source_key] = source_html(registry.implementation_source(eq))
            except Exception as error:  # noqa: BLE001
                problems.append(f"`{eq.implementation}`: source not available ({plain(one_line(error))})")
        out.append(EquationStep(eq, latex, result, source, tuple(problems)))
    return out


def title_symbol(eq: Any) -> str:
    """The LaTeX of what an equation defines (its ``title_latex``, else the left-hand side of its LaTeX)."""
    symbol = getattr(eq, "title_latex", None)
    if isinstance(symbol, str) and symbol:
        return symbol
    return str(getattr(eq, "latex", "")).split("=", 1)[0].strip().rstrip("\\").strip()


def title_markdown(eq: Any) -> str:
    """The title line of an equation's box: its name, then its symbol as inline math (``$...$``), then the reference."""
    symbol = title_symbol(eq)
    math = f" · ${symbol}$" if symbol and "$" not in symbol else ""
    return (f"**{eq.title}**{math}  \n"
            f"<span style='color:#888;font-size:0.85em'>{html.escape(eq.reference)}</span>")


def equation_ui(step: EquationStep) -> None:
    """One equation in a box: title and reference, LaTeX symbolic and with values, the verdict; the source beside it."""
    eq = step.eq
    with st.container(border=True, key=f"eq-{eq.id}"):
        math_col, code_col = st.columns([1, 1.15])
        with math_col:
            st.markdown(title_markdown(eq), unsafe_allow_html=True)
            st.latex(eq.latex)
            if step.values is not None:
                st.latex(step.values)
            if step.verdict is not None:
                st.markdown(step.verdict.markdown)
            for problem in step.problems:
                st.caption(problem)
        with code_col:
            if step.source is not None:
                st.html(step.source)  # raw HTML: markdown would fold the <pre> lines


def equations_ui(
    registry: Any | None, trace: Any, i: int, scalars: Mapping[str, np.ndarray], dtype: str,
    names: Sequence[str] | None = None, memo: dict[Any, Any] | None = None,
) -> list[Verdict | None]:
    """Draw every equation that applies at step i (see ``equations_at``); returns their verdicts."""
    if registry is None:
        st.info("The equation registry (tracer.equations) is not installed: equations are not shown.")
        return []
    memo = {} if memo is None else memo
    note = code_panel_note(getattr(trace, "config", {}) or {}, str(getattr(trace, "kind", "sampling")))
    if note:
        st.caption(note)
    steps = equations_at(registry, trace, i, scalars, dtype, names, memo)
    identified = getattr(memo.get(("facts", registry_key(registry))), "identification", "")  # set by judge()
    if identified:
        st.caption(f"The trace does not name its sampler: {plain(identified)}.")
    if not steps:
        st.caption("No registered equation applies to this trace.")
    for step in steps:
        equation_ui(step)
    for what, why in unchecked_items(registry, trace, memo):
        with st.container(border=True, key=f"unchecked-{what}"):
            st.markdown(f":gray-badge[not checked] **{plain(what)}**: {plain(why)}")
    return [step.verdict for step in steps]


def unchecked_items(registry: Any, trace: Any, memo: dict[Any, Any]) -> list[tuple[str, str]]:
    """What no applicable equation verifies (the registry's ``unchecked_for``), kept per committed row count."""
    unchecked_for = getattr(registry, "unchecked_for", None)
    if not callable(unchecked_for):
        return []
    key = ("unchecked", registry_key(registry), int(trace.rows()) if hasattr(trace, "rows") else 0)
    if key not in memo:
        memo[key] = list(unchecked_for(trace))
    return list(memo[key])
