"""The trace header: what the trace is, whether it is still being written, finished or failed (live mode), and what a
run that recorded less by choice kept (tracer/trace/choice.py)."""

from __future__ import annotations

import streamlit as st

from viewer import describe
from viewer.loaders import TraceInfo
from viewer.text import plain

BADGES = {"running": ("orange", "running: still being written"), "complete": ("green", "complete"), "failed": ("red", "failed: the writer stopped early")}
KILLED = ("red", "failed: killed before it closed the trace")  # the file says running, its writer is gone (TraceInfo.killed)


def status_text(info: TraceInfo) -> str:
    """':orange-badge[running: still being written] 12 of 50 steps' and the like (Streamlit badge markdown)."""
    colour, words = KILLED if info.killed else BADGES.get(info.status, ("gray", "status"))
    unknown = "" if info.status in BADGES else f" {plain(info.status)}"  # never inside the badge's brackets
    unit = "steps" if info.kind == "sampling" else "logged training rows"
    planned = f" of {info.planned}" if info.planned and info.planned != info.rows else ""
    return f":{colour}-badge[{words}]{unknown} {info.rows}{planned} {unit}"


def header_ui(name: str, info: TraceInfo) -> None:
    """File name, settings and status on one line; a failed or recovered trace says so plainly. What the file says is shown as text."""
    settings = describe.trace_label(info.config)
    shape = "×".join(str(d) for d in info.sample_shape)
    facts = " · ".join(p for p in (settings, f"{info.batch} samples of shape {shape}" if info.batch else "", info.tensor_dtype) if p)
    with st.container(key="trace-status"):
        st.markdown(f"##### {plain(name)}  \n{plain(facts)}  \n{status_text(info)}")
    if info.killed:
        st.warning("This run was killed before it could close its trace: the file still says it is running, but the process "
                   "that wrote it is gone. Every step it committed is shown; no more will come.")
    elif info.status == "failed":
        st.warning("This trace is marked failed: the run stopped before the end. Every step it committed is shown.")
    if info.recovered_from:
        st.caption(f"Recovered copy of {plain(info.recovered_from)}.")
    if info.recorded:  # a run that recorded less by choice (noisescope sample --record, --every, --samples)
        st.caption(f":gray-badge[recorded by choice] {plain(info.recorded)}. What was not recorded is not shown, and its "
                   "equations are listed as not checked.")
