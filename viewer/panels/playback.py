"""The playback page: one sampling trace, a scrubber over its steps, the tensors and scalars of the step, the equations.

A finished trace (images of one or three channels, or 2-D points) is played in the
browser (viewer/panels/player.py): its frames are sent once and animated there, the
scalar plots' cursor moves with them, and the step comes back to Python only when
playback pauses or the user scrubs; the equations and scalar plots then follow. A trace
still being written keeps the server-side scrubber: while playing, or while a live
trace is followed, the body is a Streamlit fragment that reruns on a timer (the scrubber
moves on, or jumps to the newest committed step), so new steps show as they commit.
Derived tensors (guidance_delta: eps_cond − eps_uncond) play like recorded ones. The trace's findings
(viewer/panels/findings.py) are listed under the header, from the second draw on. A trace that recorded less by
choice (tracer/trace/choice.py) shows what it has: the tensors it kept, its steps named by the run's step (steps/index),
its samples by the run's index; the header says what was left out.

The player shares the browser's main thread with the page (its iframe is same-origin):
on a session's first draw, the page's plotly charts (the first one evaluates plotly.js,
about 0.9 s of main thread) and KaTeX equations would hold its first frame back by 1.5
to 3 s. So that first draw is the player alone (and the step label), and the rest follows
in a second run, the sidebar's widgets too (the view and trace pickers, and the display
widgets, whose values the player plays): a page's first widget of each kind loads and runs
its front-end code, 0.2 to 0.4 s on 2 cores. The second run comes once the player sends its
step (its first frame is up), or when the body fragment's timer (FIRST_DRAW_DEFER_SECONDS)
fires; that run is a full one, which draws the page whole and stops the timer. Later runs
draw the page whole at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np
import streamlit as st

from tracer.trace import schema
from viewer import equations_panel, loaders, state, symbols
from viewer.figures.points import X0_MODES
from viewer.figures.scalars import timeline_figure
from viewer.panels import export_ui
from viewer.panels.errors import guard
from viewer.panels.findings import findings_ui
from viewer.panels.player import CURSOR_CONTAINER, image_track, player_ui, points_track, single_spec, supported
from viewer.panels.scrubber import PlayState, advance, current_index, play_controls_ui, scrubber_ui
from viewer.panels.status import header_ui
from viewer.paths import TraceEntry
from viewer.playback_view import (COLOUR_MODES, LEVEL_PLOTS, SCALAR_PLOTS, Display, StepView, default_tensors, derivable_tensors,
                                  offered_tensors, step_view)
from viewer.state import step_key
from viewer.text import plain

LIVE_POLL_SECONDS: Final = 1.0
FIRST_DRAW_DEFER_SECONDS: Final = 3.0  # the charts and equations of a session's first draw, at the latest (the player's first frame starts them)
DRAWN_WHOLE: Final = "playback.drawn_whole"  # session: the player's first draw is done; the playback page is drawn whole from now on
MAX_DEFAULT_SAMPLES: Final = 16
CHART_CONFIG: Final = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def sample_label(k: int, labels: np.ndarray | None, indices: tuple[int, ...] = ()) -> str:
    """'#3 (class 1)': stored sample k by the run's index of it (``indices``: where a slice of the batch was kept)."""
    shown = indices[k] if k < len(indices) else k
    if labels is not None and k < len(labels) and int(labels[k]) >= 0:
        return f"#{shown} (class {int(labels[k])})"
    return f"#{shown}"


def display_ui(info: loaders.TraceInfo, labels: np.ndarray | None, key: str, in_browser: bool = False,
               deferring: bool = False) -> Display:
    """Sidebar: which tensors and samples to show and on what colour scale (images), or how to draw x0_pred (2-D).
    ``deferring`` (the player's first draw): no widget is drawn (they come next run); the display is the session's values,
    else the defaults."""
    default = default_display(info)
    if deferring:  # drawn next run; until then the session's values (a live trace that has just finished), else the defaults
        if info.is_2d:
            return Display(x0_mode=state.held(f"{key}.x0mode", default.x0_mode), trajectories=state.held(f"{key}.trails", default.trajectories))
        return Display(tensors=tuple(state.held(f"{key}.tensors", default.tensors)),
                       samples=tuple(state.held(f"{key}.samples", default.samples)), colour="trace")
    st.sidebar.markdown("**Display**")
    if info.is_2d:
        mode = st.sidebar.radio("x̂₀ (x0_pred) shown as", X0_MODES, index=X0_MODES.index(default.x0_mode), key=f"{key}.x0mode",
                                horizontal=True)
        trails = st.sidebar.toggle("Trajectories so far", value=default.trajectories, key=f"{key}.trails")
        return Display(x0_mode=mode, trajectories=trails)  # type: ignore[arg-type]
    offered = offered_tensors(info)
    derived = [name for name in offered if name in symbols.DERIVED]
    tensors = st.sidebar.multiselect("Tensors", offered, default=list(default.tensors), key=f"{key}.tensors",
                                     format_func=tensor_label, help=tensors_help(derived))
    samples = st.sidebar.multiselect("Samples", list(range(info.batch)), default=list(default.samples),
                                     key=f"{key}.samples", format_func=lambda k: sample_label(k, labels, info.sample_indices))
    if in_browser:  # the player's fixed scales: [-1, 1] for x_t, x0_pred and samples, symmetric per noise-like tensor
        return Display(tensors=tuple(tensors), samples=tuple(samples), colour="trace")
    colour = st.sidebar.radio("Colour scale", list(COLOUR_MODES), format_func=COLOUR_MODES.__getitem__, key=f"{key}.colour")
    return Display(tensors=tuple(tensors), samples=tuple(samples), colour=colour)  # type: ignore[arg-type]


def default_display(info: loaders.TraceInfo) -> Display:
    """What the display widgets show before anyone touches them (the player's fixed scales)."""
    if info.is_2d:
        return Display(x0_mode=X0_MODES[0], trajectories=True)  # type: ignore[arg-type]
    return Display(tensors=tuple(default_tensors(info)), samples=tuple(range(min(info.batch, MAX_DEFAULT_SAMPLES))), colour="trace")


def tensor_label(name: str) -> str:
    """The picker's name of a tensor: the trace name, and for a derived one what it is ('guidance_delta (ε_cond − ε_uncond)')."""
    return f"{name} ({symbols.DERIVED[name].text})" if name in symbols.DERIVED else name


def tensors_help(derived: list[str]) -> str | None:
    """What the derived tensors offered mean, as markdown (None when none is)."""
    return "  \n".join(f"`{name}` ({symbols.DERIVED[name].text}): {symbols.DERIVED[name].meaning}" for name in derived) or None


def step_label(i: int, rows: int, t: int, t_prev: int, step: int | None = None, planned: int = 0) -> str:
    """'Step 4 of 10 · t = 30 → t_prev = 25' (t_prev = -1 is the clean end). In a trace that keeps every K-th step, ``step``
    is row i's step of the run (steps/index) and ``planned`` the run's steps: 'Step 11 of 50 (recorded 2 of 6) · ...'."""
    prev = "the clean end (t_prev = −1)" if t_prev < 0 else f"t_prev = {t_prev}"
    if step is None:
        return f"**Step {i + 1} of {rows}** · t = {t} → {prev}"
    return f"**Step {step + 1} of {planned or '?'}** (recorded {i + 1} of {rows}) · t = {t} → {prev}"


def run_step(scalars: dict[str, np.ndarray], i: int) -> int | None:
    """Row i's step of the run where the trace skips steps (steps/index), else None (the row is the step)."""
    index = scalars.get(schema.STEP_INDEX)
    return None if index is None or i >= len(index) else int(index[i])


def playback_page(entry: TraceEntry, registry: Any, on_step: Callable[[int], None]) -> bool:
    """Draw the page for ``entry``; ``on_step(i)`` is told the step shown (for the URL). True where this was a player's
    first draw: the sidebar's pickers wait for the next run too (the first use of a Streamlit widget in a page loads and
    runs its front-end code, 0.2 to 0.4 s of the main thread that the first frame would wait behind)."""
    handle = loaders.open_handle(entry.path)
    info = loaders.info(handle)
    header_ui(entry.name, info)
    if info.kind != "sampling":
        st.info("This is a training trace: open the **Training** view to see it.")
        return False
    key = step_key(entry.name)[: -len(".index")]
    written = loaders.has_final(handle)
    labels = loaders.final_array(info.path, info.inode, "labels", written) if written else None
    in_browser = supported(info)
    deferring = in_browser and not st.session_state.get(DRAWN_WHOLE)  # the first draw: the player alone (see the module's doc)
    display = display_ui(info, labels, key, in_browser, deferring)
    live = info.status == "running"
    play = PlayState(playing=False, speed=1, follow=False) if in_browser else play_controls_ui(key, live)
    # Following a live trace that has just finished: show its last step once.
    following_key = f"{key}.was_following"
    if not live and st.session_state.pop(following_key, False):
        st.session_state[f"{key}.jump_last"] = True  # one-shot, read inside the fragment
    if live:
        st.session_state[following_key] = play.follow
    findings_ui(registry, info, compute=not deferring)  # under the header; they read every row once per file: not on the first draw
    run_every = play.interval if play.playing else (LIVE_POLL_SECONDS if live else (FIRST_DRAW_DEFER_SECONDS if deferring else None))

    @st.fragment(run_every=run_every)
    def body() -> None:
        with guard(entry.name):
            draw()

    def draw() -> None:
        if deferring:
            if st.session_state.get(DRAWN_WHOLE):
                st.rerun()  # the rest's turn (the timer, or a value from the player): a full run draws the page whole, without the timer
            st.session_state[DRAWN_WHOLE] = True  # set first: whatever happens below, the next run is the whole page
        now = loaders.info(handle)
        if live and now.status != "running":
            st.rerun()  # the writer finished or failed: redraw the header and stop polling
        if advance(key, now.rows, play):
            st.rerun()  # played to the end: stop the timer
        if now.rows == 0:
            st.info("No steps committed yet; waiting for the writer." if live else "This trace has no steps.")
            return
        scalars = loaders.scalars(now.path, now.inode, now.rows)
        t = scalars.get("t", np.arange(now.rows))
        jump_to_last = bool(st.session_state.pop(f"{key}.jump_last", False))
        if in_browser:
            i = now.rows - 1 if jump_to_last else current_index(key, now.rows)  # a followed trace just finished: its last step
            st.session_state[f"{key}.index"] = i
            names = [name for name in display.tensors if name in now.tensors or name in derivable_tensors(now)]
            track = None
            if now.is_2d:
                track = points_track(handle, now, ["x_t", "x0_pred"], labels, display.x0_mode, display.trajectories, step=i)
            elif names:
                track = image_track(handle, now, names, [s for s in display.samples if 0 <= s < now.batch] or [0], labels, step=i)
            if track is not None:
                sent = player_ui(key, single_spec(track, now, i))
                if sent is not None:
                    i = min(sent, now.rows - 1)  # the final-sample frame: the last step's equations
                    st.session_state[f"{key}.index"] = i
        else:
            i = scrubber_ui(key, t, follow=(live and play.follow and not play.playing) or jump_to_last)
        on_step(i)
        failing = failing_steps(handle, registry, now) if not deferring else {}
        if failing:
            st.plotly_chart(timeline_figure(t, i, failing), config=CHART_CONFIG, key=f"{key}.timeline")
            bad = [step if (step := run_step(scalars, s)) is not None else s for s in sorted({s for steps in failing.values() for s in steps})]
            st.caption(f":red-badge[fails] equation checks fail at {len(bad)} step(s): " + ", ".join(map(str, bad[:20]))
                       + (" …" if len(bad) > 20 else "") + f" ({plain(', '.join(sorted(failing)))})")
        if deferring:  # the player alone: no tensors read, no per-step statistics computed (O(steps) on a first open)
            with st.container(key="step-label"):
                st.markdown(step_label(i, now.rows, int(t[i]), int(scalars["t_prev"][i]) if "t_prev" in scalars else -1,
                                       run_step(scalars, i), now.run_steps))
            st.caption("The scalar plots and the equations of this step follow in a moment.")
            return
        view = step_view(handle, now, i, display, draw_images=not in_browser)
        with st.container(key="step-label"):
            st.markdown(step_label(i, now.rows, view.t, view.t_prev, run_step(scalars, i), now.run_steps))
        if in_browser:
            if not view.panels and not now.is_2d:
                st.caption("Pick at least one tensor to show.")
        elif view.points is not None:
            st.plotly_chart(view.points, config=CHART_CONFIG, key=f"{key}.points")
        elif view.images is not None:
            st.plotly_chart(view.images, config=CHART_CONFIG, key=f"{key}.images")
        else:
            st.caption("Pick at least one tensor to show.")
        if not in_browser:  # the player dims z itself at the steps where sigma = 0
            for note in view.notes:
                st.caption(note)
        with st.container(key=CURSOR_CONTAINER):  # the player moves this plot's cursor while it plays
            st.plotly_chart(view.strips, config=CHART_CONFIG, key=f"{key}.strips")
        head, switch = st.columns([3, 1], vertical_alignment="bottom")
        head.markdown("#### The equations of this step")
        only_shown = switch.toggle("Only what is shown", value=True, key=f"{key}.eq_shown",
                                   help="Only the equations that relate the tensors and scalars on screen; off: every equation of this trace")
        with guard("equations"), handle.lock:
            equations_panel.equations_ui(registry, handle.trace, i, scalars, now.tensor_dtype, names=shown_names(view) if only_shown else None,
                                         memo=handle.memo)
        with guard("export"):
            export_ui.export_ui(handle, now, i, view, display, entry.name)

    body()
    return deferring


def shown_names(view: StepView) -> list[str] | None:
    """The trace names on screen (tensors shown, a derived one as the two it is made of, the plotted scalars, t):
    equations relating any of them are shown."""
    if not view.panel_names:
        return None  # a 2-D trace shows x_t and x0_pred together: every equation
    recorded = [term for name in view.panel_names
                for term in ((*symbols.DERIVED[name].terms, *symbols.DERIVED[name].scalars) if name in symbols.DERIVED else (name,))]
    # guidance_delta: eps_cond, eps_uncond; x_t_scaled: x_t, sigma_t
    return [*dict.fromkeys(recorded), *SCALAR_PLOTS, *LEVEL_PLOTS, "t", "t_prev", "alpha_bar_prev"]


def failing_steps(handle: loaders.TraceHandle, registry: Any, info: loaders.TraceInfo) -> dict[str, list[int]]:
    """Steps where an equation fails its check, from the registry; computed once per finished trace (not while live)."""
    fn = getattr(registry, "failing_steps", None) if registry is not None else None
    if fn is None or info.status == "running":
        return {}

    def compute() -> dict[str, list[int]]:
        try:
            return {str(k): [int(s) for s in v] for k, v in fn(handle.trace).items() if len(v)}
        except Exception:  # noqa: BLE001 - a checker that cannot run marks nothing
            return {}

    result: dict[str, list[int]] = loaders.memo(handle, ("failing", getattr(registry, "__name__", id(registry)), info.rows), compute)
    return result

