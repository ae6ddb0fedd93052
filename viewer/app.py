"""The noisescope viewer, wired: the page, then the sidebar's view and trace pickers in their place (above it). Run by ``noisescope view PATH ...``.

    streamlit run viewer/app.py -- PATH ...      (or NOISESCOPE_VIEW_ROOTS=PATH:PATH)

Only traces under the given paths can be opened (viewer/paths.py). Pages live in
viewer/panels; this file only wires them and mirrors the view into the URL.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run viewer/app.py` runs this file as a script: make `viewer` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from viewer import loaders, paths, player, state
from viewer.text import plain
from viewer.equations_panel import load_registry
from viewer.panels.compare import compare_page
from viewer.panels.errors import guard
from viewer.panels.playback import playback_page
from viewer.panels.schedule import schedule_page
from viewer.panels.training import training_page

NAV_KEYS = ("view", "trace")  # the sidebar pickers' session keys (nav_ui)
KINDS_FOR_VIEW = {"playback": ("sampling",), "training": ("training",), "schedule": ("sampling", "training")}


def trace_choice(entries: list[paths.TraceEntry], view: str) -> tuple[paths.TraceEntry | None, list[str]]:
    """The trace the session shows among those that suit the view (unreadable files stay listed, to say why), and the
    names the sidebar's picker offers."""
    wanted = KINDS_FOR_VIEW.get(view, ("sampling", "training"))
    options = [e for e in entries if loaders.kind_of(e.path) in (*wanted, "unreadable")] or entries
    names = [e.name for e in options]
    if not names:
        return None, names
    if st.session_state.get("trace") not in names:
        st.session_state["trace"] = names[0]
    return next(e for e in options if e.name == st.session_state["trace"]), names


def nav_ui(nav: DeltaGenerator, trace_names: list[str] | None) -> None:
    """The view and trace pickers, in the sidebar's ``nav`` container (their values are the session's, already shown)."""
    nav.radio("View", state.VIEWS, format_func=state.VIEW_TITLES.__getitem__, key="view", horizontal=True)
    if trace_names:
        nav.selectbox("Trace", trace_names, key="trace")


def main() -> None:
    st.set_page_config(page_title="noisescope", page_icon="🔬", layout="wide")
    roots = paths.roots_from(sys.argv[1:])
    entries = paths.list_traces(roots)
    names = [e.name for e in entries]
    state.read_url_once(names)
    st.sidebar.title("noisescope")
    # The pickers are drawn after the page, in their place: a player's first draw holds them back (viewer/panels/playback.py).
    nav = st.sidebar.container()
    for key in NAV_KEYS:  # kept through a run that does not draw the pickers
        state.held(key)
    view = st.session_state.setdefault("view", state.VIEWS[0])
    trace_names: list[str] | None = None
    held_back = False
    missing = [str(r) for r in roots if not r.exists()]
    for root in missing:
        st.sidebar.warning(f"{plain(root)}: no such file or folder")
    if not entries:
        nav_ui(nav, None)
        st.info("No traces found. Start the viewer with trace files or folders: `noisescope view runs/`.")
        st.sidebar.caption("Allowed: " + (", ".join(plain(r) for r in roots) or "nothing"))
        return
    registry = load_registry()
    if view == "compare":
        with guard("compare"):
            compare_page(entries, st.session_state.get("compare", []), lambda chosen, i: state.write_url(view, chosen[0] if chosen else None, i, chosen))
    else:
        entry, trace_names = trace_choice(entries, view)
        if entry is not None:
            with guard(entry.name):
                if view == "playback":
                    held_back = playback_page(entry, registry, lambda i: state.write_url(view, entry.name, i))
                elif view == "training":
                    training_page(entry, lambda k: state.write_url(view, entry.name, None, snapshot=k), registry)
                else:
                    state.write_url(view, entry.name, None)
                    schedule_page(entry)
    if not held_back:
        nav_ui(nav, trace_names)
    st.sidebar.caption(f"{len(entries)} trace(s) under " + ", ".join(plain(r) for r in roots))


with player.script_running():
    main()
