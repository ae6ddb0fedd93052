"""The viewer on the sampler families (DDIM 50, Heun 25 in sigma space, flow Euler 50, all from one x_T), under AppTest:
Compare lines them up by noise level in the measure picked; playback of a sigma-space trace shows x_t / sqrt(1 + sigma^2)
on the data range and its own noise level in the scalar plots, and its equations hold. Expected values are read from
the traces themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.viewer.conftest import Traces, no_failures
from tests.viewer.test_app import run_app
from tracer.trace.reader import open_trace
from viewer import loaders
from viewer.equations_panel import load_registry
from viewer.noise import MEASURES, delta, fmt, nearest, noise_level
from viewer.paths import ROOTS_ENV, TraceEntry
from viewer.playback_view import Display, default_tensors, offered_tensors, step_view, strip_series



@pytest.fixture
def app(traces: Traces, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ROOTS_ENV, str(traces.root))
    return run_app



def player_spec(at: AppTest) -> dict:
    (element,) = [e for e in at.get("component_instance") if "player" in e.proto.component_name]
    return json.loads(element.proto.json_args)["spec"]


def alignment(at: AppTest) -> str:
    (text,) = [m.value for m in at.markdown if m.value.startswith("**A**")]
    return text


def strip_titles(at: AppTest) -> list[str]:
    """The y axis titles of the scalar plots (the first chart of a playback page in the player)."""
    layout = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]
    return [layout[key]["title"]["text"] for key in sorted((k for k in layout if k.startswith("yaxis")), key=lambda k: int(k[5:] or 1))]


def levels(path: Path, measure: str) -> np.ndarray:
    with open_trace(path) as trace:
        return noise_level(trace.column("alpha_bar_t"), measure)


def t_of(path: Path) -> np.ndarray:
    with open_trace(path) as trace:
        return trace.column("t")


# -- Compare ------------------------------------------------------------------------------------------------------


def test_compare_lines_ddim_heun_and_flow_euler_up_by_noise_level(app, traces: Traces) -> None:
    """Three tracks on one timeline of log SNR; after a pause, each trace's step in the alignment text is its nearest
    in log SNR to A's (not by t: a flow trace's t is its grid index), with the gap to A's level."""
    paths = [traces.family_ddim, traces.family_heun, traces.family_flow]
    names = [traces.name(p) for p in paths]
    at = app(view="compare", compare=",".join(names))
    no_failures(at)
    assert at.sidebar.radio(key="compare.measure").value == "log_snr"  # the default
    spec = player_spec(at)
    assert len(spec["tracks"]) == 3 and all(tr["kind"] == "images" for tr in spec["tracks"])
    assert spec["labels"][0].startswith("log SNR = -inf · A step 1 (t = 49) · B step 1 (t = 49) · C step 1 (t = 49)")
    assert spec["labels"][-1].startswith("Final samples")
    snr = [levels(p, "log_snr") for p in paths]
    i = 20
    position = spec["tracks"][0]["steps"].index(i)  # the first position at which A shows step i
    at.session_state[f"step:compare:{names[0]}.player"] = {"step": position, "seq": 1}
    at.run()
    no_failures(at)
    text = alignment(at)
    t = [t_of(p) for p in paths]
    assert text.startswith("**A** ") and f"step {i + 1}, $t = {t[0][i]}$, log SNR = {fmt(snr[0][i])}  \n" in text
    for letter, k in (("B", 1), ("C", 2)):
        j = int(nearest(snr[0][i : i + 1], snr[k])[0])
        line = next(line for line in text.split("  \n") if line.startswith(f"**{letter}**"))
        assert f"step {j + 1}, $t = {t[k][j]}$, log SNR = {fmt(snr[k][j])} (Δ log SNR = {delta(snr[k][j], snr[0][i])})" in line
        assert abs(snr[k][j] - snr[0][i]) < 0.5  # equal noise level, near enough
    j_flow_by_t = int(np.argmin(np.abs(t[2] - t[0][i])))
    assert abs(snr[2][j_flow_by_t] - snr[0][i]) > 1.0  # lining the flow trace up by t would be far off
    assert [tab.label for tab in at.tabs][-1] == "Distances over noise level"
    assert any("nearest in log SNR" in c.value for c in at.caption)


@pytest.mark.parametrize("measure", ["sigma", "flow_t"])
def test_the_line_up_choice_changes_the_labels_and_the_alignment(app, traces: Traces, measure: str) -> None:
    paths = [traces.family_ddim, traces.family_heun, traces.family_flow]
    names = [traces.name(p) for p in paths]
    at = app(view="compare", compare=",".join(names))
    at.sidebar.radio(key="compare.measure").set_value(measure).run()
    no_failures(at)
    spec = MEASURES[measure]
    labels = player_spec(at)["labels"]
    assert all(label.startswith(f"{spec.text} = ") for label in labels[:-1]) and labels[-1].startswith("Final samples")
    assert labels[0].startswith(f"{spec.text} = {fmt(levels(traces.family_flow, measure)[0])} ")  # the flow trace's pure noise first
    text = alignment(at)
    level = [levels(p, measure) for p in paths]
    assert f"{spec.text} = {fmt(level[0][0])}" in text.split("  \n")[0]
    gap = "Δσ" if measure == "sigma" else f"Δ {spec.text}"
    j = int(nearest(level[0][:1], level[1])[0])
    assert f"{spec.text} = {fmt(level[1][j])} ({gap} = {delta(level[1][j], level[0][0])})" in text.split("  \n")[1]
    assert "log SNR" not in text


def test_a_trace_without_alpha_bar_lines_up_by_t(traces: Traces) -> None:
    """A foreign trace without alpha_bar_t (the reader requires it, so a stand-in here) has no noise level: every trace is
    lined up by t, and the alignment says Δt."""
    from viewer.panels.compare import Opened, alignment, alignment_lines, line_up_measure

    class Foreign(Opened):
        def levels(self, measure: str) -> np.ndarray | None:  # noqa: ARG002
            return None

    def opened(path: Path, kind: type[Opened] = Opened) -> Opened:
        handle = loaders.open_handle(path)
        return kind(TraceEntry(path, path.name), handle, loaders.info(handle), t_of(path))

    a, b = opened(traces.family_ddim), opened(traces.family_flow, Foreign)
    assert line_up_measure([a, b], "sigma") is None and line_up_measure([a, opened(traces.family_flow)], "sigma") == "sigma"
    matched = alignment(a, [b], 3, None)
    assert matched == [3]  # both visit t = 46 at their step 4
    assert alignment_lines(a, [b], 3, matched, None)[1].endswith("step 4, $t = 46$ (Δt = +0)")


# -- playback of a sigma-space trace and a flow trace ------------------------------------------------------------------


def test_a_heun_trace_shows_x_t_scaled_by_default_and_draws_it_on_the_data_range(app, traces: Traces) -> None:
    name = traces.name(traces.family_heun)
    at = app(view="playback", trace=name)
    no_failures(at)
    picker = at.sidebar.multiselect(key=f"step:{name}.tensors")
    assert "x_t_scaled" in picker.value and "x_t" not in picker.value and "x_t" in picker.options
    panels = {p["name"]: p for p in player_spec(at)["tracks"][0]["panels"]}
    assert (panels["x_t_scaled"]["low"], panels["x_t_scaled"]["high"], panels["x_t_scaled"]["scale"]) == (-1.0, 1.0, "grey")
    picker.set_value([*picker.value, "x_t"]).run()  # x_t itself, still offered
    no_failures(at)
    assert "x_t" in [p["name"] for p in player_spec(at)["tracks"][0]["panels"]]
    assert strip_titles(at) == ["ᾱ<sub>t</sub>", "σ<sub>i</sub> <span style='color:#888'>(sigma_t)</span>", "std(x<sub>t</sub>)",
                                "‖ε<sub>θ</sub>‖/√d"]  # sigma_t, the trace's noise level, where sigma (all 0 here) would be


def test_x_t_scaled_is_x_t_over_sqrt_1_plus_sigma_squared_and_on_the_data_scale(traces: Traces) -> None:
    handle = loaders.open_handle(traces.family_heun)
    info = loaders.info(handle)
    assert default_tensors(info)[0] == "x_t_scaled" and "x_t" in offered_tensors(info)
    with open_trace(traces.family_heun) as trace:
        sigma = trace.column("sigma_t")
        for i in (0, 12, info.rows - 1):
            got = loaders.step_tensors(handle, i, ["x_t_scaled"], [0, 5], info.rows)["x_t_scaled"]
            expected = trace.tensor("x_t", i)[[0, 5]].astype(np.float64) / np.sqrt(1.0 + sigma[i] ** 2)
            np.testing.assert_allclose(got, expected, rtol=1e-6)
            assert got.dtype == np.float32
        assert np.abs(trace.tensor("x_t", 0)).max() > 100  # x_t itself: all saturated on [-1, 1]
    assert np.abs(loaders.step_tensors(handle, 0, ["x_t_scaled"], list(range(info.batch)), info.rows)["x_t_scaled"]).max() < 5
    view = step_view(handle, info, 3, Display(tensors=("x_t_scaled", "x0_pred"), samples=(0, 1), colour="data"))
    assert view.panel_names == ["x_t_scaled", "x0_pred"] and view.images is not None and (view.panels[0].low, view.panels[0].high) == (-1.0, 1.0)
    view = step_view(handle, info, 3, Display(tensors=("x_t_scaled",), samples=(0, 1), colour="trace"))  # the fixed range, derived too
    assert view.panels[0].high > 0 and view.panels[0].low == -view.panels[0].high
    for path in (traces.family_ddim, traces.family_flow, traces.images_guided):  # no sigma_t: not offered
        other = loaders.info(loaders.open_handle(path))
        assert "x_t_scaled" not in offered_tensors(other) and "x_t" in default_tensors(other)
        assert loaders.step_tensors(loaders.open_handle(path), 0, ["x_t_scaled"], [0], other.rows) == {}


def test_the_scalar_plots_show_each_familys_own_noise_level(traces: Traces) -> None:
    def strips(path: Path) -> list[str]:
        info = loaders.info(loaders.open_handle(path))
        return list(strip_series(loaders.scalars(info.path, info.inode, info.rows), {"std_x_t": np.zeros(1), "rms_eps": np.zeros(1)}))

    assert strips(traces.family_heun) == ["alpha_bar_t", "sigma_t", "std_x_t", "rms_eps"]  # sigma is 0 at every step
    assert strips(traces.family_flow) == ["alpha_bar_t", "t_flow", "std_x_t", "rms_eps"]
    assert strips(traces.family_ddim) == ["alpha_bar_t", "sigma", "std_x_t", "rms_eps"]
    assert strips(traces.images_ddpm) == ["alpha_bar_t", "sigma", "std_x_t", "rms_eps"]
    ancestral = {"alpha_bar_t": np.ones(2), "sigma_t": np.ones(2), "sigma": np.array([0.5, 0.0])}  # noise added: both shown
    assert list(strip_series(ancestral, {})) == ["alpha_bar_t", "sigma_t", "sigma"]


def test_a_flow_trace_plays_x_t_as_recorded_with_its_time_in_the_strips(app, traces: Traces) -> None:
    name = traces.name(traces.family_flow)
    at = app(view="playback", trace=name, step="10")
    no_failures(at)
    assert "x_t" in at.sidebar.multiselect(key=f"step:{name}.tensors").value
    assert "t<sub>i</sub> <span style='color:#888'>(t_flow)</span>" in strip_titles(at)  # the flow time, named: not the x axis' t


def test_a_heun_traces_equations_hold_on_the_playback_page(app, traces: Traces) -> None:
    registry = load_registry()
    assert registry is not None
    name = traces.name(traces.family_heun)
    at = app(view="playback", trace=name, step="5")
    no_failures(at)
    at.toggle(key=f"step:{name}.eq_shown").set_value(False).run()  # every equation of the trace
    no_failures(at)
    markdown = [m.value for m in at.markdown]
    for title in ("Heun's Euler predictor", "Heun step (trapezoidal correction)", "The denoiser in sigma space", "alpha_bar of a noise level"):
        k = next(k for k, text in enumerate(markdown) if text.startswith(f"**{title}**"))
        assert markdown[k + 1].startswith(":green-badge[holds]"), markdown[k + 1]
    assert not [text for text in markdown if "fails]" in text]
