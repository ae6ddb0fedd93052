"""A DDIM inversion's round trip (``noisescope invert``): data -> x_T -> data, lined up by timestep.

The inversion trace holds x at t = 0 (the input, its first x_t), then x at each larger t it
moves to (the next step's x_t, and ``samples``, the x_T found, after the last); the re-sampling
trace holds x at the same timesteps, descending, and its ``samples`` at t = 0. ``states`` lists
where each trace holds x at which t, ``line_up`` pairs the two at the timesteps both visit, and
the figures show the three ends and the error per timestep. Pure: no Streamlit, no file access.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from viewer.figures.images import DIVERGING, GREY, Panel, image_grids_figure
from viewer.figures.layout import base_layout, cursor_shape, figure

SAMPLES = -1  # a state held by the trace's ``samples``, not by a row of steps/x_t
ERROR_COLOURS = ("#1f77b4", "#d62728")


def states(t: np.ndarray, t_prev: np.ndarray, has_samples: bool) -> dict[int, int]:
    """Timestep -> the row of steps/x_t holding x there (SAMPLES: the ``samples`` dataset, after the last step).

    x_t of row i is x at t[i]; the last step's output, at t_prev[-1], is ``samples`` once written.
    """
    out = {int(ti): i for i, ti in enumerate(np.asarray(t).tolist())}
    if has_samples and len(t_prev):
        out.setdefault(int(t_prev[-1]), SAMPLES)
    return out


def line_up(a: dict[int, int], b: dict[int, int]) -> list[tuple[int, int, int]]:
    """(t, where A holds x at t, where B does) for every timestep both hold, t ascending."""
    return [(t, a[t], b[t]) for t in sorted(set(a) & set(b))]


def state_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean over the batch of ||a - b|| / sqrt(d), max |a - b|) of two [B, *D] states (the common leading samples)."""
    n = min(a.shape[0], b.shape[0])
    if a.shape[1:] != b.shape[1:] or n == 0:
        raise ValueError(f"states of shape {a.shape[1:]} and {b.shape[1:]} cannot be compared")
    diff = (np.asarray(a[:n], dtype=np.float64) - np.asarray(b[:n], dtype=np.float64)).reshape(n, -1)
    return float(np.mean(np.linalg.norm(diff, axis=1) / np.sqrt(diff.shape[1]))), float(np.max(np.abs(diff)))


def round_trip_error_figure(t: np.ndarray, rms: np.ndarray, max_abs: np.ndarray, cursor_t: int | None = None, height: int = 280) -> go.Figure:
    """The error between the inversion's x and the re-sampled x at each timestep both visit; t runs up, as the inversion."""
    data = [
        {"type": "scatter", "x": t, "y": values, "mode": "lines+markers", "name": name, "marker": {"size": 5},
         "line": {"color": colour}, "hovertemplate": "t=%{x}: %{y:.5g}<extra></extra>"}
        for name, values, colour in (("‖resample − inversion‖ / √d", rms, ERROR_COLOURS[0]), ("max |resample − inversion|", max_abs, ERROR_COLOURS[1]))
    ]
    layout = {
        **base_layout(height, showlegend=True),
        "xaxis": {"title": {"text": "t"}},
        "yaxis": {"title": {"text": "error"}, "rangemode": "tozero"},
        "legend": {"orientation": "h", "y": 1.15},
        "shapes": [cursor_shape(cursor_t)] if cursor_t is not None else [],
    }
    return figure(data, layout)


def round_trip_images_figure(input_: np.ndarray, x_T: np.ndarray, resampled: np.ndarray, t_end: int,  # noqa: N803
                             data_range: tuple[float, float] = (-1.0, 1.0)) -> go.Figure:
    """Four panels of [N, C, H, W] images: the input (x at t = 0), the x_T found, the re-sampled data, and resample − input."""
    n = min(len(input_), len(resampled))
    diff = resampled[:n].astype(np.float64) - input_[:n].astype(np.float64)
    bound = float(np.nanmax(np.abs(diff))) if diff.size else 0.0
    bound = bound if bound > 0 else 1.0
    noise = float(np.nanmax(np.abs(x_T))) if x_T.size else 1.0
    noise = noise if np.isfinite(noise) and noise > 0 else 1.0
    low, high = data_range
    panels: Sequence[Panel] = (
        Panel("input x<sub>0</sub> (t = 0)", input_, low, high, GREY),
        Panel(f"x<sub>T</sub> found (t = {t_end})", x_T, -noise, noise, DIVERGING),
        Panel("re-sampled (t = 0)", resampled, low, high, GREY),
        Panel("re-sampled − input", diff, -bound, bound, DIVERGING),
    )
    return image_grids_figure(panels, per_row=4)


def round_trip_points_figure(input_: np.ndarray, x_T: np.ndarray, resampled: np.ndarray, height: int = 420) -> go.Figure:  # noqa: N803
    """2-D samples [N, 2]: the input, the x_T found and the re-sampled points, each input joined to where it came back."""
    n = min(len(input_), len(resampled))
    segments = np.full((3 * n, 2), np.nan)
    segments[0::3], segments[1::3] = input_[:n], resampled[:n]
    data = [
        {"type": "scatter", "x": segments[:, 0], "y": segments[:, 1], "mode": "lines", "name": "input → re-sampled",
         "line": {"color": "rgba(214,39,40,0.6)", "width": 1}, "hoverinfo": "skip"},
        {"type": "scatter", "x": x_T[:, 0], "y": x_T[:, 1], "mode": "markers", "name": "x<sub>T</sub> found",
         "marker": {"color": "rgba(127,127,127,0.6)", "size": 6}, "hovertemplate": "x_T (%{x:.3f}, %{y:.3f})<extra></extra>"},
        {"type": "scatter", "x": input_[:, 0], "y": input_[:, 1], "mode": "markers", "name": "input",
         "marker": {"color": "#1f77b4", "size": 8}, "hovertemplate": "input (%{x:.3f}, %{y:.3f})<extra></extra>"},
        {"type": "scatter", "x": resampled[:, 0], "y": resampled[:, 1], "mode": "markers", "name": "re-sampled",
         "marker": {"color": "#d62728", "size": 6, "symbol": "x"}, "hovertemplate": "re-sampled (%{x:.3f}, %{y:.3f})<extra></extra>"},
    ]
    layout = {**base_layout(height, showlegend=True), "yaxis": {"scaleanchor": "x"}, "legend": {"orientation": "h", "y": -0.1}}
    return figure(data, layout)
