"""The whole app under Streamlit's AppTest: every page, the scrubber, the URL, bad files, live traces.

The allowed root is passed through $NOISESCOPE_VIEW_ROOTS (AppTest runs the script in
this process). Expected values are read from the traces themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.viewer.conftest import Traces, no_failures, player_step
from tracer.equations.equation import num
from tracer.trace.reader import open_trace
from viewer import symbols
from viewer.equations_panel import load_registry
from viewer.noise import noise_level
from viewer.panels.playback import DRAWN_WHOLE
from viewer.paths import ROOTS_ENV

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "viewer" / "app.py"


def run_app(**query: str) -> AppTest:
    """The app run once under AppTest with these URL query parameters."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state[DRAWN_WHOLE] = True  # the playback page whole from the first run (its two-phase first draw: tested below)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


@pytest.fixture
def app(traces: Traces, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ROOTS_ENV, str(traces.root))
    return run_app


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def step_label(at: AppTest) -> str:
    labels = [text for text in texts(at) if text.startswith("**Step ")]
    assert len(labels) == 1, texts(at)
    return labels[0]



def t_column(path: Path) -> np.ndarray:
    return column(path, "t")


def column(path: Path, name: str) -> np.ndarray:
    with open_trace(path) as trace:
        return trace.column(name)


# -- playback -----------------------------------------------------------------------------------------


def test_the_browser_player_sends_the_step_back_and_the_page_and_url_follow_it(app, traces: Traces) -> None:
    """An image trace is played in the browser: the step comes back as the component's value {step, seq}
    (on pause or scrub), and the step label, the equations and the URL follow it; a value already seen is ignored."""
    name = traces.name(traces.images_ddim)
    t = t_column(traces.images_ddim)
    at = app(view="playback", trace=name)
    no_failures(at)
    assert step_label(at).startswith(f"**Step 1 of {len(t)}** · t = {t[0]} → t_prev = {t[1]}")
    assert at.query_params["trace"] == [name] or at.query_params["trace"] == name
    assert not at.get("plotly_chart") or len(at.get("plotly_chart")) == 1  # the scalar strips only: the images are the player's
    at.session_state[f"step:{name}.player"] = {"step": 6, "seq": 1}
    at.run()
    assert step_label(at).startswith(f"**Step 7 of {len(t)}** · t = {t[6]}")
    assert str(at.query_params["step"]).strip("[]'") == "6"
    at.session_state[f"step:{name}.index"] = 2  # the same value again (seq 1) is not a new send: the step stays
    at.run()
    assert step_label(at).startswith(f"**Step 3 of {len(t)}**")
    at.session_state[f"step:{name}.player"] = {"step": len(t), "seq": 2}  # the final-sample frame: the last step's equations
    at.run()
    assert "t_prev = −1" in step_label(at)
    no_failures(at)


def test_the_tensors_picker_offers_guidance_delta_unpicked_and_no_z_where_sigma_is_0(app, traces: Traces) -> None:
    """Guided: ε_cond − ε_uncond is offered but not shown until picked; picked, it is a panel of the player on a fixed
    symmetric range, drawn diverging. DDIM with η = 0 (σ = 0 at every step): no z in the picker."""
    name = traces.name(traces.images_guided)
    at = app(view="playback", trace=name)
    no_failures(at)
    picker = at.sidebar.multiselect(key=f"step:{name}.tensors")
    assert "guidance_delta (ε_cond − ε_uncond)" in picker.options and "guidance_delta" not in picker.value
    assert {"eps_cond", "eps_uncond"} <= set(picker.value) and "what guidance scales" in (picker.help or "")
    assert "noise" not in picker.value  # DDIM with η = 0 here too
    assert "guidance_delta" not in [p["name"] for p in component_spec(at)["tracks"][0]["panels"]]
    picker.select("guidance_delta").run()
    no_failures(at)
    (delta,) = [p for p in component_spec(at)["tracks"][0]["panels"] if p["name"] == "guidance_delta"]
    assert delta["title"] == symbols.html("guidance_delta", with_name=False)
    assert delta["low"] == -delta["high"] < 0 and delta["scale"] == "diverging"  # fixed, symmetric, diverging
    ddim = traces.name(traces.images_ddim)
    unguided = app(view="playback", trace=ddim)
    no_failures(unguided)
    options = unguided.sidebar.multiselect(key=f"step:{ddim}.tensors").options
    assert "noise" not in options and not [o for o in options if "guidance_delta" in o] and "eps" in options
    ddpm = traces.name(traces.images_ddpm)
    assert "noise" in app(view="playback", trace=ddpm).sidebar.multiselect(key=f"step:{ddpm}.tensors").options  # σ > 0 but at the end


def test_a_sessions_first_playback_draw_is_the_player_alone_and_a_second_run_draws_the_rest(traces: Traces, monkeypatch: pytest.MonkeyPatch) -> None:
    """The player shares the browser's main thread with the page: on a session's first draw the plotly charts and
    KaTeX equations wait for a second run (the body fragment's timer or the player's first value start it), which
    draws the page whole; later runs draw it whole at once."""
    monkeypatch.setenv(ROOTS_ENV, str(traces.root))
    name = traces.name(traces.images_ddim)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["view"], at.query_params["trace"] = "playback", name
    at.run()
    no_failures(at)
    assert step_label(at).startswith("**Step 1 of ")
    assert not at.get("plotly_chart") and "#### The equations of this step" not in texts(at)
    assert any("follow in a moment" in c.value for c in at.caption)
    assert not at.sidebar.multiselect  # nor the display widgets: React draws less before the player's frame
    first_player = at.get("component_instance")[0].proto.json_args
    assert at.session_state[DRAWN_WHOLE]
    at.run()  # what the fragment's rerun starts: a full run
    no_failures(at)
    assert len(at.get("plotly_chart")) == 1 and "#### The equations of this step" in texts(at)
    assert [m.key for m in at.sidebar.multiselect] == [f"step:{name}.tensors", f"step:{name}.samples"]
    assert at.get("component_instance")[0].proto.json_args == first_player  # the widgets' defaults were drawn first: same player
    assert not any("follow in a moment" in c.value for c in at.caption)
    at.session_state[f"step:{name}.player"] = {"step": 4, "seq": 1}
    at.run()
    assert step_label(at).startswith("**Step 5 of ") and len(at.get("plotly_chart")) == 1


def test_the_trace_picked_on_another_view_stays_through_the_first_playback_draw(traces: Traces, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first playback draw of a session does not draw the sidebar's pickers; a trace picked on another view before
    it is still the one shown once they are drawn again (Streamlit forgets the value of a widget a run does not draw)."""
    monkeypatch.setenv(ROOTS_ENV, str(traces.root))
    name = traces.name(traces.images_guided)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["view"] = "schedule"
    at.run()
    assert at.sidebar.selectbox(key="trace").value != name  # another trace than the first listed: a reset would show
    at.sidebar.selectbox(key="trace").set_value(name).run()
    at.sidebar.radio(key="view").set_value("playback").run()  # the player's first draw: no pickers
    no_failures(at)
    assert not at.sidebar.radio and at.get("component_instance")
    at.run()  # the second run, pickers drawn again
    no_failures(at)
    assert at.sidebar.radio(key="view").value == "playback" and at.sidebar.selectbox(key="trace").value == name
    assert at.session_state[DRAWN_WHOLE] and len(at.get("plotly_chart")) == 1


def test_tensors_picked_before_a_first_player_draw_are_played_and_kept(traces: Traces, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first player draw after the display pickers were drawn (a live trace that has just finished: the server-side
    view drew them) plays the tensors picked, and the pickers keep them when they are drawn again."""
    monkeypatch.setenv(ROOTS_ENV, str(traces.root))
    name = traces.name(traces.images_ddim)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["view"], at.query_params["trace"] = "playback", name
    at.session_state[DRAWN_WHOLE] = True
    at.run()
    at.sidebar.multiselect(key=f"step:{name}.tensors").set_value(["x_t"]).run()
    del at.session_state[DRAWN_WHOLE]  # the player's first draw from here (as when a followed live trace finishes)
    at.run()
    no_failures(at)
    assert not at.sidebar.multiselect
    panels = json.loads(at.get("component_instance")[0].proto.json_args)["spec"]["tracks"][0]["panels"]
    assert [p["name"] for p in panels] == ["x_t"]
    at.run()
    no_failures(at)
    assert at.sidebar.multiselect(key=f"step:{name}.tensors").value == ["x_t"]


def test_a_copied_url_reopens_the_same_trace_and_step(app, traces: Traces) -> None:
    name = traces.name(traces.images_guided)
    t = t_column(traces.images_guided)
    at = app(view="playback", trace=name, step="7")
    no_failures(at)
    assert step_label(at).startswith(f"**Step 8 of {len(t)}** · t = {t[7]}")
    assert at.sidebar.selectbox(key="trace").value == name
    assert len(at.get("plotly_chart")) >= 1  # the scalar strips
    player = at.get("component_instance")
    assert len(player) == 1  # the image grids: the browser player, told to start at this step
    assert '"step": 7' in player[0].proto.json_args


@pytest.mark.parametrize("bad", ["../outside.h5", "/etc/passwd", "missing.h5", "sweep/../images_ddim.h5"])
def test_a_url_naming_anything_but_a_listed_trace_is_ignored(app, traces: Traces, bad: str) -> None:
    at = app(view="playback", trace=bad, step="3")
    no_failures(at)
    assert at.sidebar.selectbox(key="trace").value != bad
    assert step_label(at).startswith("**Step 1 of")  # the step of an ignored trace is ignored too


def component_spec(at: AppTest) -> dict:
    """The arguments the player component was last drawn with (its 'spec')."""
    (element,) = [e for e in at.get("component_instance") if "player" in e.proto.component_name]
    return json.loads(element.proto.json_args)["spec"]


def test_a_2d_trace_plays_in_the_browser_and_the_page_follows_the_step_sent_back(app, traces: Traces) -> None:
    """2-D point traces play in the browser too: the points track carries the display's settings (a change redraws,
    the same frames), and the step sent back moves the step label."""
    name = traces.name(traces.points_ddpm)
    t = t_column(traces.points_ddpm)
    at = app(view="playback", trace=name, step="10")
    no_failures(at)
    assert step_label(at).startswith(f"**Step 11 of {len(t)}** · t = {t[10]}")
    spec = component_spec(at)
    (track,) = spec["tracks"]
    assert track["kind"] == "points" and track["series"] == ["x_t", "x0_pred"] and track["x0_mode"] == "arrows" and track["trails"]
    assert spec["step"] == 10 and spec["positions"] == len(t) + 1  # every step, then the final samples
    at.sidebar.radio(key=f"step:{name}.x0mode").set_value("ghost").run()
    ghost = component_spec(at)["tracks"][0]
    assert ghost["x0_mode"] == "ghost" and ghost["frames"] == track["frames"]  # a display setting: the same frames
    player_step(at, name, 11)
    assert step_label(at).startswith(f"**Step 12 of {len(t)}** · t = {t[11]}")
    no_failures(at)


def test_export_buttons_are_offered(app, traces: Traces) -> None:
    at = app(view="playback", trace=traces.name(traces.images_ddim))
    labels = [b.proto.label for b in at.get("download_button")]
    assert any(label.startswith("GIF") for label in labels) and any(label.startswith("MP4") for label in labels)
    assert "PNG of this view" in labels


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attr, words", [("corrupt", "corrupt"), ("foreign", "not a noisescope trace"), ("truncated", "truncated or corrupt")])
def test_a_bad_file_shows_one_error_and_the_rest_keeps_working(app, traces: Traces, attr: str, words: str) -> None:
    bad = traces.name(getattr(traces, attr))
    at = app(view="playback", trace=bad)
    assert not at.exception
    assert len(at.error) == 1 and words in at.error[0].value and "\n" not in at.error[0].value
    assert "Traceback" not in at.error[0].value
    good = traces.name(traces.images_ddim)
    at.sidebar.selectbox(key="trace").set_value(good).run()
    no_failures(at)
    assert step_label(at).startswith("**Step 1 of")
    at.sidebar.radio(key="view").set_value("schedule").run()
    no_failures(at)


def test_a_file_removed_after_listing_shows_an_error(app, traces: Traces, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir()
    doomed = root / "doomed.h5"
    doomed.write_bytes(traces.images_ddim.read_bytes())
    monkeypatch.setenv(ROOTS_ENV, str(root))
    at = run_app()
    no_failures(at)
    doomed.unlink()
    at.run()
    assert not at.exception
    assert any("doomed.h5" in e.value for e in at.error) or any("No traces" in i.value for i in at.info)


# -- equations ----------------------------------------------------------------------------------------


def test_the_equations_of_the_step_are_shown_with_their_values(app, traces: Traces) -> None:
    registry = load_registry()
    if registry is None:
        pytest.skip("the equation registry (tracer.equations) has not landed")
    name = traces.name(traces.images_ddim)
    at = app(view="playback", trace=name, step="2")
    no_failures(at)
    latex = [e.value.strip().removeprefix("$$").removesuffix("$$").strip() for e in at.get("latex")]
    with open_trace(traces.images_ddim) as trace:
        scalars = {k: float(v[2]) for k, v in trace.scalars().items()}
        equations = {eq.id: eq for eq in registry.equations_for(trace)}
    x0 = equations["x0_from_eps"]
    assert x0.latex in latex and x0.values_latex(scalars) in latex
    assert f"{np.sqrt(scalars['alpha_bar_t']):.4g}" in x0.values_latex(scalars)  # sqrt(alpha_bar_t) of this step, as a number
    assert equations["ddim.step"].values_latex(scalars) in latex
    verdicts = [m.value for m in at.markdown if "residual max" in m.value]
    assert verdicts and all(v.startswith(":green-badge[holds]") for v in verdicts)  # a real DDIM run satisfies its equations
    sources = [h.proto.body for h in at.get("html")]
    assert any("tracer/samplers/ddim.py:" in body and "ddim_step" in body and "#fff3b0" in body for body in sources)
    player_step(at, name, 3)  # the player paused on step 4
    after = [e.value for e in at.get("latex")]
    with open_trace(traces.images_ddim) as trace:
        scalars3 = {k: float(v[3]) for k, v in trace.scalars().items()}
    assert any(x0.values_latex(scalars3) in text for text in after)  # the values follow the step


# -- compare ------------------------------------------------------------------------------------------


def test_compare_aligns_the_traces_by_noise_level(app, traces: Traces) -> None:
    a, b = traces.name(traces.points_ddpm), traces.name(traces.points_ddim)
    t_a, t_b = t_column(traces.points_ddpm), t_column(traces.points_ddim)
    snr_a, snr_b = (noise_level(column(path, "alpha_bar_t"), "log_snr") for path in (traces.points_ddpm, traces.points_ddim))
    at = app(view="compare", compare=f"{a},{b}")
    no_failures(at)
    key = f"step:compare:{a}"
    i = int(np.flatnonzero(t_a == 37)[0])
    tracks = component_spec(at)["tracks"]
    assert [tr["kind"] for tr in tracks] == ["points", "points"]
    # B's noise levels are among A's (DDIM visits some of DDPM's t): the timeline is A's steps, position i is A's step i
    at.session_state[f"{key}.player"] = {"step": i, "seq": 1}
    at.run()
    no_failures(at)
    j = int(np.argmin(np.abs(snr_b - snr_a[i])))  # one schedule: nearest in log SNR is nearest in t here
    assert j == int(np.argmin(np.abs(t_b - 37)))
    (alignment,) = [text for text in texts(at) if text.startswith("**A**")]
    assert f"step {i + 1}, $t = 37$, log SNR = {snr_a[i]:.3g}" in alignment
    assert f"step {j + 1}, $t = {t_b[j]}$, log SNR = {snr_b[j]:.3g} (Δ log SNR = {snr_b[j] - snr_a[i]:+.2g})" in alignment
    assert len(at.get("plotly_chart")) >= 2  # side by side and distances (the sweep grid is for images)


def test_compare_says_where_the_traces_part_and_marks_it_on_the_distance_plot(app, traces: Traces) -> None:
    from tracer.diff import diff_traces

    a, b = traces.name(traces.points_ddpm), traces.name(traces.points_ddim)
    at = app(view="compare", compare=f"{a},{b}")
    no_failures(at)
    with open_trace(traces.points_ddpm) as trace_a, open_trace(traces.points_ddim) as trace_b:
        result = diff_traces(trace_a, trace_b)
        alpha_bar = trace_a.scalars()["alpha_bar_t"]
    assert result.parts is not None and result.lined_up_by == "noise level"  # DDPM against DDIM: other samplers, same levels
    (line,) = [text for text in texts(at) if text.startswith("**A vs B**")]
    parts = result.parts
    assert f"they part at A's step {parts.a + 1} (t = {parts.t_a}) and B's step {parts.b + 1} (t = {parts.t_b})" in line
    at_level = float(noise_level(alpha_bar, "log_snr")[parts.a])
    shapes = [s for c in at.get("plotly_chart") for s in json.loads(c.proto.spec)["layout"].get("shapes", [])
              if s.get("line", {}).get("dash") == "dash"]
    assert [s["x0"] for s in shapes] == [pytest.approx(at_level)]  # the mark, at A's noise level where they part


def test_compare_images_has_difference_sweep_and_distances(app, traces: Traces) -> None:
    names = [traces.name(p) for p in (traces.images_ddpm, traces.images_ddim, traces.images_guided)]
    at = app(view="compare", compare=",".join(names))
    no_failures(at)
    (alignment,) = [text for text in texts(at) if text.startswith("**A**")]
    assert "**C**" in alignment
    charts = at.get("plotly_chart")
    assert len(charts) >= 4  # B and C beside A with differences, the sweep grid, the distances
    assert any("RMS" in c.value for c in at.caption)


def test_a_compare_url_reopens_the_same_traces_and_step(app, traces: Traces) -> None:
    a, b = traces.name(traces.images_ddpm), traces.name(traces.images_ddim)
    t_a = t_column(traces.images_ddpm)
    at = app(view="compare", compare=f"{a},{b}", step="20")
    no_failures(at)
    (alignment,) = [text for text in texts(at) if text.startswith("**A**")]
    assert f"step 21, $t = {t_a[20]}$" in alignment
    assert at.sidebar.multiselect(key="compare").value == [a, b]
    at.session_state[f"step:compare:{a}.player"] = {"step": 21, "seq": 1}  # the player paused one position on (A's steps)
    at.run()
    assert str(at.query_params["step"]).strip("[]'") == "21" and str(at.query_params["compare"]).strip("[]'") == f"{a},{b}"


def test_compare_with_one_trace_asks_for_another(app, traces: Traces) -> None:
    at = app(view="compare", compare=traces.name(traces.images_ddim))
    no_failures(at)
    assert any("two or more" in i.value for i in at.info)


# -- training -----------------------------------------------------------------------------------------


def test_training_page_shows_loss_snapshots_and_the_forward_process(app, traces: Traces) -> None:
    name = traces.name(traces.training)
    at = app(view="training", trace=name)
    no_failures(at)
    assert any(text.startswith("**Snapshot 4 of 4**") for text in texts(at))  # opens at the last snapshot
    assert any(c.value.startswith("The header's 30 logged training rows") for c in at.caption)
    at.button(key=f"snapshot:{name}.first").click().run()
    at.button(key=f"snapshot:{name}.next").click().run()
    assert any(text.startswith("**Snapshot 2 of 4** · after training step 100") for text in texts(at))
    assert str(at.query_params["snapshot"]).strip("[]'") == "1"
    latex = [e.value for e in at.get("latex")]
    with open_trace(traces.training) as trace:
        t0 = int(trace.column("t", "examples")[0])
        alpha_bar = float(trace.schedule.alpha_bar[t0])
        alpha_bar_49 = float(trace.schedule.alpha_bar[49])
    assert any(num(float(np.sqrt(alpha_bar))) in text for text in latex)
    # at the example's own t the page checks Eq. 4 against the recorded x_t: float32 storage, so ~1e-7
    (check,) = [c.value for c in at.caption if "max |recorded" in c.value]
    assert float(check.rsplit("=", 1)[1].strip(" .")) < 1e-5
    registry = load_registry()
    if registry is not None:  # the registry's equations of the example: Eq. 4 and the loss, as training computed them
        with open_trace(traces.training) as trace:
            ids = {eq.id for eq in registry.equations_for(trace)}
        assert {"forward.q_sample", "loss.eps"} <= ids
        verdicts = [m.value for m in at.markdown if "residual max" in m.value]
        assert len(verdicts) >= 2 and all(v.startswith(":green-badge[holds]") for v in verdicts)
        assert any("tracer/forward.py:" in h.proto.body and "q_sample" in h.proto.body for h in at.get("html"))
    at.slider(key=f"{name}.forward.t").set_value(49).run()
    assert any(num(float(np.sqrt(alpha_bar_49))) in e.value for e in at.get("latex"))
    no_failures(at)


def test_training_view_on_a_sampling_trace_says_where_to_look(app, traces: Traces) -> None:
    at = app(view="schedule", trace=traces.name(traces.images_ddim))
    at.sidebar.radio(key="view").set_value("training").run()
    no_failures(at)
    assert at.sidebar.selectbox(key="trace").value == traces.name(traces.training)  # the picker offers training traces


# -- schedule -----------------------------------------------------------------------------------------


def test_schedule_page_marks_the_visited_timesteps(app, traces: Traces) -> None:
    name = traces.name(traces.images_ddim)
    at = app(view="schedule", trace=name)
    no_failures(at)
    (fig,) = at.get("plotly_chart")
    assert len(t_column(traces.images_ddim)) == 10
    summary = [text for text in texts(at) if text.startswith("**T = 50**")]
    assert summary and "10 distinct timesteps visited by the sampler" in summary[0]
    assert '"visited t=' in fig.proto.spec or "visited" in fig.proto.spec


# -- live ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def live_writer(module: str, path: Path, *args: str, until: str) -> Iterator[subprocess.Popen[str]]:
    """Run ``python -m module path args...`` (it writes a trace and prints a line a step) until it prints ``until``.

    With the delay argument "gate" the writer then waits: ``release`` lets it commit one more row, ``finish`` lets it
    run to the end. It is killed on the way out.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", module, str(path), *args], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        wait_for_line(proc, until, releasing=True)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def release(proc: subprocess.Popen[str], rows: int = 1) -> None:
    """Let a gated writer commit ``rows`` more rows."""
    assert proc.stdin is not None
    proc.stdin.write("\n" * rows)
    proc.stdin.flush()


def finish(proc: subprocess.Popen[str]) -> int:
    """Let a gated writer run to the end; its exit code."""
    assert proc.stdin is not None
    proc.stdin.close()
    return proc.wait(timeout=120)


def wait_for_line(proc: subprocess.Popen[str], line: str, *, releasing: bool = False) -> None:
    """Read the writer's lines until ``line``; ``releasing``: let a gated writer commit a row after each line before it."""
    assert proc.stdout is not None
    for printed in proc.stdout:
        if printed.strip() == line:
            return
        if releasing:
            release(proc)
    raise AssertionError(f"the writer ended without printing {line!r}")


def test_a_trace_being_written_is_followed_and_then_says_complete(app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "live"
    root.mkdir()
    path = root / "live.h5"
    with live_writer("tests.trace.writer_process", path, "40", "gate", until="step 4") as proc:
        monkeypatch.setenv(ROOTS_ENV, str(root))
        at = run_app()
        no_failures(at)
        header = " ".join(texts(at))
        assert "running: still being written" in header
        first = step_label(at)
        assert not first.startswith("**Step 40")
        assert at.toggle(key="step:live.h5.follow").value is True
        release(proc, 16)
        wait_for_line(proc, "step 20")
        at.run()
        later = step_label(at)
        assert int(later.split()[1]) > int(first.split()[1])  # following: the newest committed step is shown
        assert finish(proc) == 0
        at.run()
        no_failures(at)
        assert ":green-badge[complete]" in " ".join(texts(at))
        assert step_label(at).startswith("**Step 40 of 40**")  # it was following: it lands on the last step


def test_a_training_trace_being_written_is_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "live"
    root.mkdir()
    path = root / "train.h5"
    with live_writer("tests.viewer.live_training_writer", path, "30", "gate", until="row 6") as proc:
        monkeypatch.setenv(ROOTS_ENV, str(root))
        at = run_app(view="training")
        no_failures(at)
        assert "running: still being written" in " ".join(texts(at))
        first = [text for text in texts(at) if text.startswith("**Snapshot ")]
        shown, of = first[0].split()[1], first[0].split()[3].rstrip("*")
        assert int(shown) >= 2 and shown == of  # following: the newest snapshot committed so far
        assert finish(proc) == 0
        at.run()
        no_failures(at)
        assert ":green-badge[complete]" in " ".join(texts(at))
        assert any(text.startswith("**Snapshot 6 of 6**") for text in texts(at))


def test_after_a_followed_trace_finishes_the_scrubber_moves_freely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "live"
    root.mkdir()
    path = root / "live.h5"
    with live_writer("tests.trace.writer_process", path, "12", "gate", until="step 2") as proc:
        monkeypatch.setenv(ROOTS_ENV, str(root))
        at = run_app()
        assert finish(proc) == 0
        at.run()
        assert step_label(at).startswith("**Step 12 of 12**")  # landed on the last step once
        player_step(at, "live.h5", 10)  # finished: now played in the browser, which sends the step back
        assert step_label(at).startswith("**Step 11 of 12**")  # and does not jump back there again
        no_failures(at)


def test_a_failed_trace_says_so_and_shows_its_committed_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.trace.synthetic import records
    from tracer.schedules import make_schedule
    from tracer.trace.sampling import record_sampling

    def crashing():
        for record in records(make_schedule("linear", 1000), 8):
            if record.index == 5:
                raise RuntimeError("the sampler blew up")
            yield record

    root = tmp_path / "failed"
    root.mkdir()
    with pytest.raises(RuntimeError):
        record_sampling(crashing(), root / "crashed.h5", schedule=make_schedule("linear", 1000), config={}, planned=8, labels=None)
    monkeypatch.setenv(ROOTS_ENV, str(root))
    at = run_app()
    assert not at.exception and not at.error
    assert ":red-badge[failed: the writer stopped early] 5 of 8 steps" in " ".join(texts(at))
    assert any("marked failed" in w.value for w in at.warning)
    assert step_label(at).startswith("**Step 1 of 5**")


def test_a_trace_whose_writer_was_killed_says_so_and_plays_its_committed_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILLed after its fourth step, the file still says running; its writer is gone (tracer/trace/liveness.py): the
    page says the run was killed and plays the four steps in the browser instead of waiting for more."""
    from tests.pausing_run import run_and_kill

    root = tmp_path / "killed"
    root.mkdir()
    run_and_kill("sample", str(root / "killed.h5"), "8", "0", "step:3")
    monkeypatch.setenv(ROOTS_ENV, str(root))
    at = run_app()
    no_failures(at)
    assert ":red-badge[failed: killed before it closed the trace] 4 of 8 steps" in " ".join(texts(at))
    assert any("killed before it could close its trace" in w.value for w in at.warning)
    assert step_label(at).startswith("**Step 1 of 4**")
    player_step(at, "killed.h5", 2)  # played in the browser, as a finished trace: the step it sends back is shown
    assert step_label(at).startswith("**Step 3 of 4**")
    no_failures(at)


def test_a_v_prediction_trace_with_guidance_rescale_shows_its_equations_as_holding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from tests.viewer.conftest import BATCH, image_means, sample_trace
    from tracer.models.analytic import GaussianOracle
    from tracer.samplers import SamplerConfig
    from tracer.schedules import make_schedule

    registry = load_registry()
    assert registry is not None
    model = GaussianOracle(make_schedule("linear", 50), image_means(2), 0.3, per_class=True, prediction="v")
    labels = torch.tensor([k % 2 for k in range(BATCH)])
    path = sample_trace(tmp_path / "v_rescaled.h5", model, SamplerConfig("ddim", steps=8, guidance=4.0, guidance_rescale=0.7), (1, 8, 8), labels)
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    at = run_app(view="playback", trace=path.name, step="2")
    no_failures(at)
    with open_trace(path) as trace:
        ids = {eq.id for eq in registry.equations_for(trace)}
    assert {"prediction.conversion", "guidance.combine", "guidance.rescale", "ddim.step"} <= ids and "x0_from_eps" not in ids
    markdown = [m.value for m in at.markdown]
    assert any("s=4 · φ=0.7 · v-prediction" in text for text in markdown), markdown  # the header names the run's settings
    for title in ("Classifier-free guidance", "Guidance rescale", "eps and x0 from an x0 or v prediction", "DDIM step"):
        k = next(k for k, text in enumerate(markdown) if text.startswith(f"**{title}**"))
        assert markdown[k + 1].startswith(":green-badge[holds]"), markdown[k + 1]  # each equation's verdict follows its title
    assert not [text for text in markdown if "not checked" in text]


def test_compare_labels_samples_by_class_and_warns_when_only_one_run_clips(app, traces: Traces) -> None:
    guided, ddim = traces.name(traces.images_guided), traces.name(traces.images_ddim)
    at = app(view="compare", compare=f"{guided},{ddim}")
    no_failures(at)
    (picker,) = [m for m in at.sidebar.multiselect if m.label == "Samples"]
    assert picker.options[:2] == ["0 · class 0", "1 · class 1"]  # the guided trace's labels (k % 2)
    rows = [json.loads(c.proto.spec)["layout"]["yaxis"].get("ticktext") for c in at.get("plotly_chart")]
    (sweep_rows,) = [r for r in rows if r]  # the sweep grid labels its rows, left of them
    assert sweep_rows == [picker.options[k] for k in picker.value]  # the samples shown, top to bottom, as the picker names them
    assert not any("clipped" in w.value for w in at.warning)  # both DDIM, neither clips
    ddpm = traces.name(traces.images_ddpm)
    clipping = app(view="compare", compare=f"{ddpm},{ddim}")
    no_failures(clipping)
    (warning,) = [w.value for w in clipping.warning if "clipped" in w.value]
    assert "ddpm" in warning and "ddim" in warning
    legends = [d.get("name", "") for c in clipping.get("plotly_chart") for d in json.loads(c.proto.spec)["data"]]
    assert any("η=0" in name and " − " in name for name in legends)  # the distances' legend names settings, not files
