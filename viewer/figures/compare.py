"""Comparing traces on one timeline: per-step distances plotted over t, with the shared cursor.

The t axis runs from T down to 0 (left to right), the direction sampling moves.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from viewer.figures.layout import base_layout, cursor_shape, figure


def distance_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], cursor_t: int | None = None, y_title: str = "distance", height: int = 280) -> go.Figure:
    """``curves``: label -> (t, distance) over the reference trace's steps; one line per compared trace."""
    palette = qualitative.Plotly
    data = [
        {"type": "scatter", "x": t, "y": distance, "mode": "lines+markers", "name": label, "marker": {"size": 4},
         "line": {"color": palette[k % len(palette)]}, "hovertemplate": "t=%{x}: %{y:.5g}<extra></extra>"}
        for k, (label, (t, distance)) in enumerate(curves.items())
    ]
    layout = {
        **base_layout(height, showlegend=True),
        "xaxis": {"title": {"text": "t"}, "autorange": "reversed"},
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
        "legend": {"orientation": "h", "y": 1.15},
        "shapes": [cursor_shape(cursor_t)] if cursor_t is not None else [],
    }
    return figure(data, layout)
