"""Training traces: the loss curve (raw and smoothed), loss by timestep bucket, and the bucket profile at one step."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from viewer.figures.layout import LINE, base_layout, cursor_shape, figure


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average: s_n = w s_{n-1} + (1 - w) v_n, divided by 1 - w^n; NaNs are skipped."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must lie in [0, 1), got {weight}")
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    running, count = 0.0, 0
    for i, v in enumerate(values):
        if np.isfinite(v):
            running = weight * running + (1.0 - weight) * v
            count += 1
        if count:
            out[i] = running / (1.0 - weight**count)
    return out


def log_ticks(values: np.ndarray) -> dict[str, Any]:
    """Tick values and plain labels for a log axis over ``values`` (positive finite ones): decades when they span
    three or more, else 1-2-5 of each decade inside the range (three
    rounded values across a range too narrow for two); labels like 0.02 or 3e-05, never plotly's bare 2 and 5."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return {}
    lo, hi = float(v.min()), float(v.max())
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mantissas = (1.0,) if last - first >= 3 else (1.0, 2.0, 5.0)
    ticks = [m * 10.0**e for e in range(first, last + 1) for m in mantissas]
    inside = [x for x in ticks if lo <= x <= hi]
    if len(inside) < 2:  # a narrow range: three values across it, rounded to two significant digits
        inside = sorted({float(f"{x:.2g}") for x in np.geomspace(lo, hi, 3)})
    return {"tickvals": inside, "ticktext": [f"{x:.3g}" for x in inside]}


def loss_figure(step: np.ndarray, loss: np.ndarray, weight: float = 0.9, cursor: float | None = None, height: int = 300) -> go.Figure:
    """Raw loss (faint) and its smoothed curve over training steps; log y when every loss is positive."""
    data = [
        {"type": "scatter", "x": step, "y": loss, "mode": "lines", "name": "raw", "line": {"color": "rgba(31,119,180,0.3)", "width": 1}},
        {"type": "scatter", "x": step, "y": smooth(loss, weight), "mode": "lines", "name": f"smoothed ({weight:g})", "line": {"color": LINE, "width": 2}},
    ]
    finite = np.asarray(loss, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    log_y = finite.size > 0 and bool(np.all(finite > 0))
    layout = {
        **base_layout(height, showlegend=True),
        "xaxis": {"title": {"text": "training step"}},
        "yaxis": {"title": {"text": "loss"}, **({"type": "log", **log_ticks(finite)} if log_y else {"type": "linear"})},
        "legend": {"orientation": "h", "y": 1.12},
        "shapes": [cursor_shape(cursor)] if cursor is not None else [],
    }
    return figure(data, layout)


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """'t 0-99' for each bucket [edges[k], edges[k+1])."""
    return [f"t {int(a)}-{int(b) - 1}" for a, b in zip(edges[:-1], edges[1:], strict=False)]


def loss_by_bucket_figure(step: np.ndarray, loss_by_bucket: np.ndarray, edges: Sequence[int] | None = None, weight: float = 0.0, height: int = 300) -> go.Figure:
    """One line per timestep bucket over training (colour from low t to high t); ``weight`` smooths each line."""
    values = np.asarray(loss_by_bucket, dtype=np.float64)
    buckets = values.shape[1] if values.ndim == 2 else 0
    labels = bucket_labels(edges) if edges is not None and len(edges) == buckets + 1 else [f"bucket {k}" for k in range(buckets)]
    colours = sample_colorscale("Viridis", [k / max(buckets - 1, 1) for k in range(buckets)])
    data = [
        {"type": "scatter", "x": step, "y": smooth(values[:, k], weight) if weight > 0 else values[:, k], "mode": "lines", "name": labels[k],
         "line": {"color": colours[k], "width": 1.5}}
        for k in range(buckets)
    ]
    layout = {**base_layout(height, showlegend=True), "xaxis": {"title": {"text": "training step"}},
              "yaxis": {"title": {"text": "loss"}, "type": "log", **log_ticks(values)}}
    return figure(data, layout)


def bucket_bars_figure(values: np.ndarray, edges: Sequence[int] | None = None, height: int = 260) -> go.Figure:
    """The loss of each timestep bucket at one logged step, as bars."""
    values = np.asarray(values, dtype=np.float64)
    labels = bucket_labels(edges) if edges is not None and len(edges) == values.size + 1 else [f"bucket {k}" for k in range(values.size)]
    data = [{"type": "bar", "x": labels, "y": values, "marker": {"color": LINE}, "hovertemplate": "%{x}: %{y:.5g}<extra></extra>"}]
    return figure(data, {**base_layout(height), "xaxis": {"title": {"text": "timestep bucket"}}, "yaxis": {"title": {"text": "loss"}}})
