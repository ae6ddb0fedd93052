"""The noise schedule of a trace: beta_t, alpha_bar_t and log SNR(t) against t, with the visited timesteps marked.

log SNR(t) = log(alpha_bar_t / (1 - alpha_bar_t)) (Kingma et al. 2021, Eq. 3 with the
variance-preserving alpha_bar of Ho et al. 2020, Eq. 4).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from viewer import symbols
from viewer.figures.layout import ACCENT, LINE, axis_name, base_layout, cursor_shape, domains, figure, panel_title, trace_axis


def log_snr(alpha_bar: np.ndarray) -> np.ndarray:
    """log(alpha_bar / (1 - alpha_bar)), in float64 (log1p keeps it exact near alpha_bar = 0)."""
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    return np.log(alpha_bar) - np.log1p(-alpha_bar)


def schedule_figure(beta: np.ndarray, alpha_bar: np.ndarray, visited: np.ndarray | None = None, current_t: int | None = None, height: int = 300) -> go.Figure:
    """Three panels against t = 0..T-1; ``visited`` timesteps (e.g. steps/t) as markers, ``current_t`` as a cursor."""
    curves = {"beta": np.asarray(beta, dtype=np.float64), "alpha_bar": np.asarray(alpha_bar, dtype=np.float64), "log_snr": log_snr(alpha_bar)}
    t = np.arange(curves["beta"].shape[0])
    marks = np.asarray([] if visited is None else visited, dtype=np.int64)
    marks = np.unique(marks[(marks >= 0) & (marks < t.size)])
    data: list[dict[str, Any]] = []
    slots = domains(3, gap=0.06)
    layout = base_layout(height, hovermode="closest")
    annotations, shapes = [], []
    for k, ((name, values), slot) in enumerate(zip(curves.items(), slots, strict=True)):
        x_ref, y_ref = trace_axis("x", k), trace_axis("y", k)
        data.append({"type": "scatter", "x": t, "y": values, "mode": "lines", "line": {"color": LINE}, "xaxis": x_ref, "yaxis": y_ref,
                     "name": name, "hovertemplate": "t=%{x}: %{y:.5g}<extra></extra>"})
        if marks.size:
            data.append({"type": "scatter", "x": marks, "y": values[marks], "mode": "markers", "marker": {"color": ACCENT, "size": 5},
                         "xaxis": x_ref, "yaxis": y_ref, "name": f"{name} visited", "hovertemplate": "visited t=%{x}: %{y:.5g}<extra></extra>"})
        if current_t is not None and 0 <= current_t < t.size:
            shapes.append(cursor_shape(current_t, k))
        annotations.append(panel_title(symbols.html(name, with_name=False), slot))
        layout[axis_name("xaxis", k)] = {"domain": list(slot), "anchor": y_ref, "title": {"text": "t"}}
        layout[axis_name("yaxis", k)] = {"anchor": x_ref, "title": {"text": symbols.html(name, with_name=False), "standoff": 2}}
    layout["annotations"], layout["shapes"] = annotations, shapes
    return figure(data, layout)
