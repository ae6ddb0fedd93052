"""Comparing traces on one timeline: per-step distances plotted over the reference's noise level (or t), with the shared cursor.

The x axis runs from noisy to clean, left to right, the direction sampling moves: log SNR rising, sigma (on a log
axis) and flow time falling; t from T down to 0 where the traces are lined up by t. Steps at an infinite level (pure
noise: log SNR -inf, sigma inf) have no place on the axis and are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from viewer.figures.layout import base_layout, cursor_shape, figure
from viewer.noise import MeasureSpec


def placeable(x: np.ndarray, measure: MeasureSpec | None) -> np.ndarray:
    """Which x can be drawn on the measure's axis: finite, and above 0 on a log axis."""
    x = np.asarray(x, dtype=np.float64)
    keep = np.isfinite(x)
    return keep & (x > 0) if measure is not None and measure.log_axis else keep


def distance_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], cursor: float | None = None, y_title: str = "distance",
                    height: int = 280, measure: MeasureSpec | None = None, parts: Mapping[str, float] | None = None) -> go.Figure:
    """``curves``: label -> (x, distance) over the reference trace's steps, x its noise level in ``measure`` (its t where
    None); one line per compared trace, the cursor at x = ``cursor``; ``parts``: label -> x where that trace parts from
    the reference (``noisescope diff``), a dashed line in the curve's colour."""
    palette = qualitative.Plotly
    symbol = "t" if measure is None else measure.text
    data = []
    for k, (label, (x, distance)) in enumerate(curves.items()):
        keep = placeable(x, measure)
        data.append({"type": "scatter", "x": np.asarray(x, dtype=np.float64)[keep], "y": np.asarray(distance)[keep], "mode": "lines+markers",
                     "name": label, "marker": {"size": 4}, "line": {"color": palette[k % len(palette)]},
                     "hovertemplate": f"{symbol}=%{{x:.4g}}: %{{y:.5g}}<extra></extra>"})
    xaxis: dict[str, Any] = {"title": {"text": "t" if measure is None else f"{measure.html} (noisy → clean)"}}
    if measure is None or measure.noisy_high:
        xaxis["autorange"] = "reversed"
    if measure is not None and measure.log_axis:
        xaxis["type"] = "log"
    show_cursor = cursor is not None and bool(placeable(np.array([cursor]), measure)[0])
    marks = []
    for k, label in enumerate(curves):
        at = (parts or {}).get(label)
        if at is not None and bool(placeable(np.array([at]), measure)[0]):
            marks.append({**cursor_shape(at), "line": {"color": palette[k % len(palette)], "dash": "dash", "width": 1.5}})
            data.append({"type": "scatter", "x": [at], "y": [0], "mode": "markers", "showlegend": False,
                         "marker": {"symbol": "triangle-up", "size": 10, "color": palette[k % len(palette)]},
                         "hovertemplate": f"{label} parts from A here ({symbol}=%{{x:.4g}})<extra></extra>"})
    layout = {
        **base_layout(height, showlegend=True),
        "xaxis": xaxis,
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
        "legend": {"orientation": "h", "y": 1.15},
        "shapes": ([cursor_shape(cursor)] if show_cursor and cursor is not None else []) + marks,
    }
    return figure(data, layout)
