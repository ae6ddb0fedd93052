"""The schedule page: beta_t, alpha_bar_t and log SNR(t) of a trace's schedule, with the timesteps it visited marked."""

from __future__ import annotations

from typing import Final

import numpy as np
import streamlit as st

from tracer.trace import schema
from viewer import loaders
from viewer.figures.schedule import log_snr, schedule_figure
from viewer.panels.status import header_ui
from viewer.paths import TraceEntry
from viewer.state import step_key

CHART_CONFIG: Final = {"displaylogo": False}


def visited_timesteps(handle: loaders.TraceHandle, info: loaders.TraceInfo) -> tuple[np.ndarray, str]:
    """The t a sampling trace stepped through, or the t of a training trace's recorded examples."""
    if info.kind == "sampling":
        return loaders.scalars(info.path, info.inode, info.rows).get("t", np.zeros(0, dtype=np.int64)), "visited by the sampler"
    rows = loaders.series_rows(handle, schema.EXAMPLES)
    t = loaders.series_scalars(info.path, info.inode, rows, schema.EXAMPLES).get("t", np.zeros(0, dtype=np.int64)) if rows else np.zeros(0, dtype=np.int64)
    return t, "of the recorded training examples"


def schedule_page(entry: TraceEntry) -> None:
    handle = loaders.open_handle(entry.path)
    info = loaders.info(handle)
    header_ui(entry.name, info)
    arrays = loaders.schedule_arrays(info.path, info.inode)
    if arrays is None:
        st.info("This trace stores no schedule.")
        return
    visited, what = visited_timesteps(handle, info)
    current = None
    if info.kind == "sampling" and info.rows:
        i = min(int(st.session_state.get(step_key(entry.name), 0)), info.rows - 1)
        current = int(visited[i])
    st.plotly_chart(schedule_figure(arrays["beta"], arrays["alpha_bar"], visited, current), config=CHART_CONFIG, key="schedule")
    snr = log_snr(arrays["alpha_bar"])
    T = arrays["beta"].size  # noqa: N806
    st.markdown(
        f"**T = {T}** · $\\beta_t$ from {arrays['beta'][0]:.4g} to {arrays['beta'][-1]:.4g} · "
        f"$\\bar\\alpha_{{T-1}}$ = {arrays['alpha_bar'][-1]:.3g} · log SNR from {snr[0]:.2f} to {snr[-1]:.2f}  \n"
        f"{np.unique(visited).size} distinct timesteps {what} are marked in red"
        + (f"; the cursor is at the playback step's $t = {current}$." if current is not None else ".")
    )
