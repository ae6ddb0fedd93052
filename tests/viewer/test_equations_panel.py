"""The equations panel with a stand-in registry (tests/viewer/fake_registry.py): LaTeX with values, source, residuals.

The page-level test against the real registry is in test_app.py.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.viewer import fake_registry
from tests.viewer.conftest import Traces, player_step
from tests.viewer.test_app import no_failures, run_app, step_label
from tracer.trace.reader import open_trace
from viewer.equations_panel import TOLERANCE, residual_scale, source_html, tolerance_for, verdict
from viewer.paths import ROOTS_ENV


def latex_of(at: AppTest) -> list[str]:
    """The LaTeX bodies of st.latex elements (Streamlit wraps them in $$ ... $$)."""
    return [e.value.strip().removeprefix("$$").removesuffix("$$").strip() for e in at.get("latex")]


@pytest.fixture
def fake_app(traces: Traces, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ROOTS_ENV, str(traces.root))
    monkeypatch.setitem(sys.modules, "tracer.equations", fake_registry)
    return run_app


def test_verdict_passes_at_or_below_the_tolerance_only() -> None:
    assert verdict(1e-6, 1e-5).status == "pass"
    assert verdict(1e-5, 1e-5).status == "pass"
    assert verdict(2e-5, 1e-5).status == "fail"
    assert verdict(float("nan"), 1e-5).status == "fail"
    assert verdict(None, 1e-5).status == "n/a"
    assert TOLERANCE["float16"] > TOLERANCE["float32"]


def test_tolerance_is_relative_to_the_tensors_of_the_equation(traces: Traces) -> None:
    with open_trace(traces.images_ddim) as trace:
        scale = residual_scale(trace, 0, ["x_t", "x0_pred", "not_a_tensor"])
        expected = max(1.0, *(float(np.abs(trace.tensor(n, 0)).max()) for n in ("x_t", "x0_pred")))
        assert scale == expected
        named = max(1.0, *(float(np.abs(trace.tensor(n, 0)).max()) for n in fake_registry.X0.names))
        assert tolerance_for(object(), fake_registry.X0, "float16", trace, 0) == TOLERANCE["float16"] * named


def test_source_html_numbers_lines_as_in_the_file_and_highlights_the_computing_line() -> None:
    view = fake_registry.implementation_source(fake_registry.X0)
    html = source_html(view)
    assert f"tracer/samplers/prediction.py:{view.first_line}" in html  # the path as the project names it
    assert "def predict_x0" in html.replace("<span", " <span") or "predict_x0" in html
    assert str(view.first_line) in html and str(view.first_line + len(view.lines) - 1) in html
    assert html.count("background-color: #fff3b0") == len(view.highlight) >= 1


def test_equations_show_latex_with_step_values_source_and_residuals(fake_app, traces: Traces) -> None:
    name = traces.name(traces.images_ddim)
    at = fake_app(view="playback", trace=name, step="3")
    no_failures(at)
    with open_trace(traces.images_ddim) as trace:
        a = float(trace.column("alpha_bar_t")[3])
    latex = latex_of(at)
    assert fake_registry.X0.latex in latex
    assert fake_registry.X0.values_latex({"alpha_bar_t": a}) in latex  # this step's numbers
    badges = [m.value for m in at.markdown if "residual max" in m.value]
    assert len(badges) == 2
    assert badges[0].startswith(":green-badge[holds]")  # the recorded tensors satisfy Eq. 12 in float32
    assert badges[1].startswith(":red-badge[fails]")  # x0_pred = x_t does not hold
    sources = [h.proto.body for h in at.get("html")]
    assert any("tracer/samplers/prediction.py:" in body and "predict_x0" in body for body in sources)
    assert any("tracer/samplers/ddim.py:" in body and "ddim_step" in body for body in sources)
    player_step(at, name, 4)  # the browser player paused on step 5
    assert step_label(at).startswith("**Step 5 of")
    with open_trace(traces.images_ddim) as trace:
        a4 = float(trace.column("alpha_bar_t")[4])
    assert fake_registry.X0.values_latex({"alpha_bar_t": a4}) in latex_of(at)


def test_failing_steps_are_marked_on_the_scrubber(fake_app, traces: Traces) -> None:
    at = fake_app(view="playback", trace=traces.name(traces.images_ddim))
    no_failures(at)
    marks = [c.value for c in at.caption if "equation checks fail" in c.value]
    assert marks and "10 step(s)" in marks[0]


def test_source_html_wraps_long_lines_so_the_highlighted_formula_is_not_cut_off() -> None:
    html = source_html(fake_registry.implementation_source(fake_registry.X0))
    assert "white-space:pre-wrap" in html and "overflow-wrap:anywhere" in html


def test_title_markdown_shows_the_equations_symbol_beside_its_title() -> None:
    from tracer.equations import EQUATIONS
    from viewer.equations_panel import title_markdown, title_symbol

    by_id = {eq.id: eq for eq in EQUATIONS}
    assert title_symbol(by_id["ddim.step"]) == "x_{t-1}"
    assert title_symbol(by_id["prediction.conversion"]) == r"\hat x_0,\ \epsilon"
    step = title_markdown(by_id["ddim.step"])
    assert step.startswith("**DDIM step** · $x_{t-1}$")
    assert title_symbol(fake_registry.X0) == fake_registry.X0.latex.split("=")[0].strip()  # no title_latex: its left-hand side
