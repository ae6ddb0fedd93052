"""Small multiples of per-step scalars (alpha_bar_t, sigma or the trace's own noise level, std of x_t, norm of eps), each with a
cursor at the current step.

The x axis is t, as the scrubber labels its steps (running T -> 0 left to right for sampling,
0 -> T for an inversion), or the step index where t is not monotone; hovering shows both.
A thin timeline on the same x axis marks steps where an equation fails its check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from viewer import symbols
from viewer.figures.layout import ACCENT, LINE, axis_name, base_layout, cursor_shape, domains, figure, panel_title, trace_axis


MAX_POINTS = 400  # points per strip line: a 250-pixel plot shows no more, and plotly validates every one
# Titled with their trace name beside the symbol: a sigma-space trace's sigma_t (σ_i, its state's noise level, not the
# std σ_t of the noise a step adds) and a flow trace's t_flow (t_i in [0, 1], not the schedule index t of the x axis).
NAMED = frozenset({"sigma_t", "t_flow"})


def thin(count: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of every k-th of ``count`` points (k the smallest that keeps at most ``max_points``), the last included."""
    stride = max(1, -(-count // max_points))
    index = np.arange(0, count, stride)
    return index if count == 0 or index[-1] == count - 1 else np.append(index, count - 1)


def step_axis(t: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The x of each step and its axis: t where t is strictly monotone (reversed when it falls), else the step index."""
    t = np.asarray(t)
    diffs = np.diff(t.astype(np.float64))
    if t.size and (np.all(diffs < 0) or np.all(diffs > 0)):
        return t, {"title": {"text": "t", "standoff": 2}, **({"autorange": "reversed"} if t.size > 1 and diffs[0] < 0 else {})}
    return np.arange(t.size), {"title": {"text": "step", "standoff": 2}}


def scalar_strips_figure(series: Mapping[str, np.ndarray], t: np.ndarray, cursor: int, height: int = 170) -> go.Figure:
    """One small plot per named series (values indexed by step), side by side, each marked at step ``cursor``.

    x is t (see ``step_axis``), each y axis titled with its series' symbol. Lines longer than MAX_POINTS steps are drawn through every k-th step; the cursor's value is exact.
    """
    data: list[dict[str, Any]] = []
    names = [name for name, values in series.items() if len(values)]
    slots = domains(len(names), gap=0.08)
    layout = base_layout(height, hovermode="x", margin={"l": 8, "r": 8, "t": 28, "b": 34})
    annotations, shapes = [], []
    steps = np.arange(len(t))
    x, x_axis = step_axis(t)
    for k, (name, slot) in enumerate(zip(names, slots, strict=True)):
        values = np.asarray(series[name], dtype=np.float64)
        x_ref, y_ref = trace_axis("x", k), trace_axis("y", k)
        keep = thin(len(values))
        data.append({
            "type": "scatter", "x": x[keep], "y": values[keep], "mode": "lines", "line": {"color": LINE, "width": 1.5},
            "xaxis": x_ref, "yaxis": y_ref, "customdata": np.stack([steps[keep], np.asarray(t)[keep]], axis=-1), "name": name,
            "hovertemplate": "step %{customdata[0]}, t=%{customdata[1]}: %{y:.5g}<extra></extra>",
        })
        if 0 <= cursor < len(values):
            data.append({"type": "scatter", "x": [x[cursor]], "y": [values[cursor]], "mode": "markers", "marker": {"color": ACCENT, "size": 7},
                         "xaxis": x_ref, "yaxis": y_ref, "hoverinfo": "skip", "name": f"{name} now"})
            shapes.append(cursor_shape(x[cursor], k))
        now = f" = {values[cursor]:.4g}" if 0 <= cursor < len(values) else ""
        label = symbols.html(name, with_name=name in NAMED)
        annotations.append(panel_title(f"{label}{now}", slot))
        layout[axis_name("xaxis", k)] = {"domain": list(slot), "anchor": y_ref, "showgrid": False, "tickfont": {"size": 9}, "automargin": True, **x_axis}
        layout[axis_name("yaxis", k)] = {"anchor": x_ref, "tickfont": {"size": 9}, "nticks": 4, "automargin": True,
                                         "title": {"text": label, "standoff": 2, "font": {"size": 10}}}
    layout["annotations"], layout["shapes"] = annotations, shapes
    return figure(data, layout)


def timeline_figure(t: np.ndarray, cursor: int, failing: Mapping[str, Sequence[int]] | None = None, height: int = 70) -> go.Figure:
    """A strip over the steps on the scalar strips' x axis (t where monotone, see ``step_axis``): the current step, and a
    red tick at each step where an equation fails its check, at that step's t; hovering a tick names the step and its t.

    The axis runs from the first step (left) to the last, half a step past each end.
    """
    t = np.asarray(t)
    rows = t.size
    x, x_axis = step_axis(t)
    first, last = (float(x[0]), float(x[-1])) if rows else (0.0, 0.0)
    pad = abs(last - first) / (2 * (rows - 1)) if rows > 1 else 0.5
    direction = -1.0 if last < first else 1.0  # t falling: the axis reversed, as step_axis has the strips'
    data: list[dict[str, Any]] = [
        {"type": "scatter", "x": [first, last], "y": [0, 0], "mode": "lines", "line": {"color": "#bbb", "width": 2}, "hoverinfo": "skip"}
    ]
    for eq_id, steps in (failing or {}).items():
        at = np.asarray([s for s in steps if 0 <= s < rows], dtype=np.int64)
        if at.size:
            data.append({"type": "scatter", "x": x[at], "y": np.zeros(at.size), "mode": "markers", "name": eq_id,
                         "marker": {"symbol": "line-ns", "size": 14, "line": {"color": ACCENT, "width": 2}},
                         "customdata": np.stack([at, t[at]], axis=-1),
                         "hovertemplate": f"{eq_id} fails at step %{{customdata[0]}}, t = %{{customdata[1]}}<extra></extra>"})
    if 0 <= cursor < rows:
        data.append({"type": "scatter", "x": [x[cursor]], "y": [0], "mode": "markers", "marker": {"color": LINE, "size": 10}, "hoverinfo": "skip",
                     "name": "now"})
    axis = {key: value for key, value in x_axis.items() if key != "autorange"}  # the range below sets the direction
    axis["title"] = {**axis["title"], "font": {"size": 10}}
    layout = {
        **base_layout(height, margin={"l": 8, "r": 8, "t": 4, "b": 30}),
        "xaxis": {**axis, "range": [first - direction * pad, last + direction * pad], "showgrid": False, "tickfont": {"size": 9}},
        "yaxis": {"visible": False, "range": [-1, 1]},
    }
    return figure(data, layout)
