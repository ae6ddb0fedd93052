"""The noisescope viewer, wired: sidebar (view and trace), then the page. Run by ``noisescope view PATH ...``.

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

from viewer import loaders, paths, player, state
from viewer.text import plain
from viewer.equations_panel import load_registry
from viewer.panels.compare import compare_page
from viewer.panels.errors import guard
from viewer.panels.playback import playback_page
from viewer.panels.schedule import schedule_page
from viewer.panels.training import training_page

KINDS_FOR_VIEW = {"playback": ("sampling",), "training": ("training",), "schedule": ("sampling", "training")}


def trace_ui(entries: list[paths.TraceEntry], view: str) -> paths.TraceEntry | None:
    """Sidebar: pick one trace among those that suit the view (unreadable files stay listed, to say why)."""
    wanted = KINDS_FOR_VIEW.get(view, ("sampling", "training"))
    options = [e for e in entries if loaders.kind_of(e.path) in (*wanted, "unreadable")] or entries
    names = [e.name for e in options]
    if not names:
        return None
    if st.session_state.get("trace") not in names:
        st.session_state["trace"] = names[0]
    chosen = st.sidebar.selectbox("Trace", names, key="trace")
    return next(e for e in options if e.name == chosen)


def main() -> None:
    st.set_page_config(page_title="noisescope", page_icon="🔬", layout="wide")
    roots = paths.roots_from(sys.argv[1:])
    entries = paths.list_traces(roots)
    names = [e.name for e in entries]
    state.read_url_once(names)
    st.sidebar.title("noisescope")
    view = st.sidebar.radio("View", state.VIEWS, format_func=state.VIEW_TITLES.__getitem__, key="view", horizontal=True)
    missing = [str(r) for r in roots if not r.exists()]
    for root in missing:
        st.sidebar.warning(f"{plain(root)}: no such file or folder")
    if not entries:
        st.info("No traces found. Start the viewer with trace files or folders: `noisescope view runs/`.")
        st.sidebar.caption("Allowed: " + (", ".join(plain(r) for r in roots) or "nothing"))
        return
    registry = load_registry()
    if view == "compare":
        with guard("compare"):
            compare_page(entries, st.session_state.get("compare", []), lambda chosen, i: state.write_url(view, chosen[0] if chosen else None, i, chosen))
    else:
        entry = trace_ui(entries, view)
        if entry is not None:
            with guard(entry.name):
                if view == "playback":
                    playback_page(entry, registry, lambda i: state.write_url(view, entry.name, i))
                elif view == "training":
                    training_page(entry, lambda k: state.write_url(view, entry.name, None, snapshot=k), registry)
                else:
                    state.write_url(view, entry.name, None)
                    schedule_page(entry)
    st.sidebar.caption(f"{len(entries)} trace(s) under " + ", ".join(plain(r) for r in roots))


with player.script_running():
    main()
