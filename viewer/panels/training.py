"""The training page: loss (raw and smoothed), loss by timestep bucket, sample snapshots on their own scrubber,
and the forward-process explorer (x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps for any t).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np
import streamlit as st

from tracer.trace import schema
from viewer import equations_panel, loaders
from viewer.figures.images import Panel, as_images, colours_for, image_grids_figure
from viewer.figures.points import point_cloud_figure
from viewer.figures.training import bucket_bars_figure, loss_by_bucket_figure, loss_figure
from viewer.forward_view import FORWARD_LATEX, forward_panel_title, forward_sample, forward_values_latex
from viewer.panels.errors import guard
from viewer.panels.scrubber import scrubber_ui
from viewer.panels.status import header_ui
from viewer.paths import TraceEntry

CHART_CONFIG: Final = {"displaylogo": False}
LIVE_POLL_SECONDS: Final = 2.0  # a training trace being written is re-read this often
BUCKET_EDGES_ATTR: Final = schema.ATTR_LOSS_BUCKET_EDGES


def training_page(entry: TraceEntry, on_snapshot: Callable[[int | None], None], registry: Any = None) -> None:
    handle = loaders.open_handle(entry.path)
    info = loaders.info(handle)
    header_ui(entry.name, info)
    if info.kind != "training":
        st.info("This is a sampling trace: the **Training** view needs a training trace (train.h5 of `noisescope train`).")
        on_snapshot(None)
        return
    live = info.status == "running"
    # A followed trace that has just finished lands on its last snapshot once.
    following_key = f"snapshot:{entry.name}.was_following"
    if not live and st.session_state.pop(following_key, False):
        st.session_state[f"snapshot:{entry.name}.jump_last"] = True  # one-shot, read inside the fragment

    @st.fragment(run_every=LIVE_POLL_SECONDS if live else None)
    def body() -> None:
        now = loaders.info(handle)
        if live and now.status != "running":
            st.rerun()  # training finished or failed: redraw the header, stop polling
        with guard("loss"):
            loss_section(handle, now)
        with guard("snapshots"):
            on_snapshot(snapshots_section(handle, now, entry.name, live=live))
        with guard("forward process"):
            forward_section(handle, now, entry.name, registry)

    body()


def loss_section(handle: loaders.TraceHandle, info: loaders.TraceInfo) -> None:
    log = loaders.train_log(info.path, info.inode, info.rows)
    if not log or "loss" not in log or len(log["loss"]) == 0:
        st.info("No training steps logged yet.")
        return
    step = log.get("step", np.arange(len(log["loss"])))
    st.caption(rows_explained(step))
    st.markdown("#### Loss")
    weight = st.slider("Smoothing", 0.0, 0.99, 0.9, 0.01, key="train.smoothing", help="Weight of the exponential moving average (0 = raw)")
    st.plotly_chart(loss_figure(step, log["loss"], weight), config=CHART_CONFIG, key="train.loss")
    buckets = log.get("loss_by_bucket")
    if buckets is not None and buckets.ndim == 2 and buckets.shape[1] > 0:
        edges = loaders.json_attr(handle, BUCKET_EDGES_ATTR)
        edges = edges if isinstance(edges, list) else None
        st.markdown("#### Loss by timestep bucket")
        left, right = st.columns([1.6, 1])
        left.plotly_chart(loss_by_bucket_figure(step, buckets, edges, weight=min(weight, 0.95)), config=CHART_CONFIG, key="train.buckets")
        finite_rows = np.flatnonzero(np.isfinite(buckets).any(axis=1))
        if finite_rows.size:
            last = int(finite_rows[-1])
            right.plotly_chart(bucket_bars_figure(buckets[last], edges), config=CHART_CONFIG, key="train.bars")
            right.caption(f"Loss of each timestep bucket at training step {int(step[last])}, the last logged.")


def rows_explained(step: np.ndarray) -> str:
    """What the header's count of logged training rows is: one row per logged training step, which steps they are."""
    step = np.asarray(step)
    rows = len(step)
    if rows == 0:
        return "No training rows logged yet."
    gaps = np.unique(np.diff(step.astype(np.int64)))
    every = f", every {int(gaps[0])} training steps" if gaps.size == 1 and gaps[0] > 1 else ""
    span = f"training steps {int(step[0])} to {int(step[-1])}" if rows > 1 else f"training step {int(step[0])}"
    return (f"The header's {rows} logged training rows: one row (loss, and loss by timestep bucket) per logged "
            f"training step{every}, {span}.")


def snapshots_section(handle: loaders.TraceHandle, info: loaders.TraceInfo, name: str, live: bool = False) -> int | None:
    rows = loaders.series_rows(handle, schema.SNAPSHOTS)
    st.markdown("#### Samples over training")
    if rows == 0:
        st.caption("No sample snapshots in this trace.")
        return None
    steps = loaders.series_scalars(info.path, info.inode, rows, schema.SNAPSHOTS).get("step", np.arange(rows))
    key = f"snapshot:{name}"
    follow = live and st.toggle("Follow new snapshots", value=True, key=f"{key}.follow")
    if live:
        st.session_state[f"{key}.was_following"] = follow
    jump_to_last = bool(st.session_state.pop(f"{key}.jump_last", False)) or f"{key}.index" not in st.session_state  # opens at the last
    k = scrubber_ui(key, steps, follow=follow or jump_to_last, label="Snapshot", tick="step {}")
    samples = loaders.tensor_row(handle, "samples", k, schema.SNAPSHOTS)
    with st.container(key="snapshot-label"):
        st.markdown(f"**Snapshot {k + 1} of {rows}** · after training step {int(steps[k])} · samples from the same $x_T$")
    if samples.ndim == 2 and samples.shape[1] == 2:
        st.plotly_chart(point_cloud_figure(samples, samples[None], None, "none", (-3, 3, -3, 3), height=380), config=CHART_CONFIG, key="train.snap.pts")
    else:
        st.plotly_chart(image_grids_figure([Panel("samples", as_images(samples), -1.0, 1.0)], per_row=1, width_hint=420), config=CHART_CONFIG, key="train.snap")
    return k


def forward_section(handle: loaders.TraceHandle, info: loaders.TraceInfo, name: str, registry: Any = None) -> None:
    st.markdown("#### Forward process explorer")
    schedule = loaders.schedule_arrays(info.path, info.inode)
    rows = loaders.series_rows(handle, schema.EXAMPLES)
    if schedule is None or rows == 0:
        st.caption("This trace has no schedule or no recorded examples (they are written when training ends).")
        return
    alpha_bar = schedule["alpha_bar"]
    examples = loaders.series_scalars(info.path, info.inode, rows, schema.EXAMPLES)
    cols = st.columns([1, 3])
    k = int(cols[0].selectbox("Example", list(range(rows)), key=f"{name}.forward.example",
                              format_func=lambda j: f"#{j}" + (f" (class {int(examples['label'][j])})" if "label" in examples and examples["label"][j] >= 0 else "")))
    own_t = int(examples["t"][k]) if "t" in examples else 0
    t = int(cols[1].slider("t", 0, len(alpha_bar) - 1, own_t, key=f"{name}.forward.t"))
    x0 = loaders.tensor_row(handle, "x0", k, schema.EXAMPLES)
    eps = loaders.tensor_row(handle, "eps", k, schema.EXAMPLES)
    x_t = forward_sample(float(alpha_bar[t]), x0, eps)  # Ho et al. 2020, Eq. 4
    st.latex(FORWARD_LATEX)
    st.latex(forward_values_latex(t, float(alpha_bar[t])))
    if x0.ndim == 1:
        st.plotly_chart(point_cloud_figure(x_t[None], x_t[None, None], x0[None], "arrows", height=320), config=CHART_CONFIG, key="train.fwd.pts")
    else:
        bound = max(1.0, float(np.abs(x_t).max()))
        panels = [
            Panel("x<sub>0</sub>", as_images(x0[None]), -1.0, 1.0),
            Panel("ε", as_images(eps[None]), -3.0, 3.0, colours_for("eps")),
            Panel(forward_panel_title(t), as_images(x_t[None].astype(np.float32)), -bound, bound),
        ]
        st.plotly_chart(image_grids_figure(panels, width_hint=800), config=CHART_CONFIG, key="train.fwd")
    if t == own_t:
        recorded = loaders.tensor_row(handle, "x_t", k, schema.EXAMPLES).astype(np.float64)
        residual = float(np.max(np.abs(recorded - x_t))) if recorded.shape == x_t.shape else float("nan")
        st.caption(f"At the example's own t = {own_t} the training step recorded x_t; max |recorded − Eq. 4| = {residual:.2e}.")
    else:
        st.caption(f"This example was drawn at t = {own_t} in training; move t there to check Eq. 4 against the recorded x_t.")
    if registry is not None:
        st.markdown(f"##### The equations of example #{k} (t = {own_t}), as training computed them")
        with handle.lock:
            equations_panel.equations_ui(registry, handle.trace, k, examples, info.tensor_dtype, memo=handle.memo)
