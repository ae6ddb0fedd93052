"""2-D traces: the point cloud at the current step, the trajectories so far, and x0_pred as arrows or ghost points.

Axes are fixed by ``extent`` (computed once per trace) so the view does not jump as the
scrubber moves.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go

from viewer.figures.layout import base_layout, figure

X0Mode = Literal["arrows", "ghost", "none"]
X0_MODES: tuple[str, ...] = ("arrows", "ghost", "none")
POINT = "#1f77b4"
PRED = "#ff7f0e"


def extent(*clouds: np.ndarray, margin: float = 0.05) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) covering every finite point of the arrays [..., 2], padded by ``margin``."""
    points = np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in clouds]) if clouds else np.zeros((0, 2))
    points = points[np.isfinite(points).all(axis=1)]
    if points.size == 0:
        return (-1.0, 1.0, -1.0, 1.0)
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = np.maximum((hi - lo) * margin, 1e-6)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def polylines(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[K, B, 2] paths (K points each) as x, y arrays with a NaN break between paths: one plotly trace for all."""
    k, b, _ = paths.shape
    if k == 0 or b == 0:
        return np.zeros(0), np.zeros(0)
    padded = np.concatenate([np.transpose(paths, (1, 0, 2)), np.full((b, 1, 2), np.nan)], axis=1)  # [B, K+1, 2]
    flat = padded.reshape(-1, 2)
    return flat[:, 0], flat[:, 1]


def point_cloud_figure(
    x_t: np.ndarray,
    history: np.ndarray,
    x0_pred: np.ndarray | None = None,
    mode: X0Mode = "arrows",
    bounds: tuple[float, float, float, float] | None = None,
    title: str = "",
    height: int = 460,
) -> go.Figure:
    """``x_t`` [B, 2] now, ``history`` [k, B, 2] the x_t of the steps so far (trajectories), ``x0_pred`` [B, 2]."""
    if mode not in X0_MODES:
        raise ValueError(f"unknown x0_pred mode {mode!r}; choose one of {', '.join(X0_MODES)}")
    data: list[dict[str, Any]] = []
    if history.shape[0] > 1:
        hx, hy = polylines(history)
        data.append({"type": "scattergl", "x": hx, "y": hy, "mode": "lines", "line": {"color": "rgba(31,119,180,0.25)", "width": 1},
                     "name": "trajectory", "hoverinfo": "skip"})
    if x0_pred is not None and mode == "arrows":
        segments = np.stack([x_t, x0_pred], axis=0)  # [2, B, 2]: from x_t to x0_pred
        ax, ay = polylines(segments)
        data.append({
            "type": "scatter", "x": ax, "y": ay, "mode": "lines+markers", "name": "x̂<sub>0</sub>", "line": {"color": PRED, "width": 1},
            "marker": {"symbol": "arrow", "angleref": "previous", "size": np.tile([0, 7, 0], x_t.shape[0]), "color": PRED}, "hoverinfo": "skip",
        })
    if x0_pred is not None and mode == "ghost":
        data.append({"type": "scattergl", "x": x0_pred[:, 0], "y": x0_pred[:, 1], "mode": "markers", "name": "x̂<sub>0</sub>",
                     "marker": {"color": PRED, "size": 6, "opacity": 0.35}, "hovertemplate": "x̂0 (%{x:.3f}, %{y:.3f})<extra></extra>"})
    data.append({"type": "scattergl", "x": x_t[:, 0], "y": x_t[:, 1], "mode": "markers", "name": "x<sub>t</sub>",
                 "marker": {"color": POINT, "size": 6}, "hovertemplate": "x_t (%{x:.3f}, %{y:.3f})<extra></extra>"})
    x0, x1, y0, y1 = bounds or extent(history, x_t, *(() if x0_pred is None else (x0_pred,)))
    layout = {
        **base_layout(height, showlegend=True, title={"text": title, "x": 0.01, "font": {"size": 13}}),
        "xaxis": {"range": [x0, x1], "zeroline": False},
        "yaxis": {"range": [y0, y1], "scaleanchor": "x", "zeroline": False},
        "legend": {"orientation": "h", "y": -0.05},
    }
    return figure(data, layout)
