"""The URL and the session: which view, trace and step are shown, so a copied link reopens the same view.

Query parameters: ``view`` (playback, compare, training, schedule), ``trace`` (a trace
name relative to an allowed root; see viewer/paths.py), ``step`` (0-based step index),
``compare`` (the compared traces, comma-separated, the first setting the timeline that
``step`` indexes) and ``snapshot`` (training snapshot index). They are read once when a session starts and written back on every run; a
name that is not a listed trace is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import streamlit as st

VIEWS: Final = ("playback", "compare", "training", "schedule")
VIEW_TITLES: Final = {"playback": "Playback", "compare": "Compare", "training": "Training", "schedule": "Schedule"}
_LOADED: Final = "_url_loaded"


def parse_int(value: Any, default: int | None = None) -> int | None:
    """A non-negative int from a query value, else ``default``."""
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return default
    return number if number >= 0 else default


def read_url_once(names: Sequence[str]) -> None:
    """On a session's first run, copy valid query parameters into session state."""
    if st.session_state.get(_LOADED):
        return
    st.session_state[_LOADED] = True
    params: Mapping[str, Any] = st.query_params
    view = params.get("view")
    if view in VIEWS:
        st.session_state["view"] = view
    trace = params.get("trace")
    if isinstance(trace, str) and trace in names:
        st.session_state["trace"] = trace
        step = parse_int(params.get("step"))
        if step is not None:
            st.session_state[step_key(trace)] = step
        snapshot = parse_int(params.get("snapshot"))
        if snapshot is not None:
            st.session_state[f"snapshot:{trace}.index"] = snapshot
    compare = params.get("compare")
    if isinstance(compare, str):
        chosen = [n for n in compare.split(",") if n in names]
        st.session_state["compare"] = chosen
        step = parse_int(params.get("step"))
        if chosen and step is not None:
            st.session_state[step_key(f"compare:{chosen[0]}")] = step  # the timeline is the first trace's


def held(key: str, default: Any = None) -> Any:
    """The session's value of the widget ``key``, kept through a run that does not draw the widget (Streamlit forgets an
    undrawn widget's value at the end of a run: it is set again here as the session's own); ``default`` where it has none."""
    if key not in st.session_state:
        return default
    st.session_state[key] = st.session_state[key]
    return st.session_state[key]


def step_key(trace_name: str) -> str:
    """Session key holding the current step index of one trace (the scrubber's canonical state)."""
    return f"step:{trace_name}.index"


def write_url(view: str, trace: str | None, step: int | None, compare: Sequence[str] = (), snapshot: int | None = None) -> None:
    """Mirror the current view into the URL (only what changed is sent)."""
    wanted: dict[str, str] = {"view": view}
    if trace is not None:
        wanted["trace"] = trace
    if step is not None:
        wanted["step"] = str(step)
    if compare:
        wanted["compare"] = ",".join(compare)
    if snapshot is not None:
        wanted["snapshot"] = str(snapshot)
    current = {k: st.query_params.get(k) for k in st.query_params}
    if current != wanted:
        st.query_params.from_dict(wanted)
