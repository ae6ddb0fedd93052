"""Shared figure plumbing: side-by-side panels on manual domains (cheaper than make_subplots), cursors, styling."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

FONT = {"family": "Inter, system-ui, sans-serif", "size": 12}
ACCENT = "#d62728"  # the cursor and failing steps
LINE = "#1f77b4"


def base_layout(height: int, **extra: Any) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 8, "r": 8, "t": 28, "b": 8},
        "font": FONT,
        "showlegend": False,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        **extra,
    }


def axis_name(kind: str, i: int) -> str:
    """Layout key of the i-th (0-based) axis: xaxis, xaxis2, ..."""
    return kind + ("" if i == 0 else str(i + 1))


def trace_axis(kind: str, i: int) -> str:
    """Trace reference of the i-th axis: x, x2, ..."""
    return kind[0] + ("" if i == 0 else str(i + 1))


def domains(count: int, gap: float = 0.02) -> list[tuple[float, float]]:
    """``count`` equal horizontal slots of [0, 1] with ``gap`` between them."""
    if count < 1:
        return []
    width = (1.0 - gap * (count - 1)) / count
    return [(i * (width + gap), i * (width + gap) + width) for i in range(count)]


def panel_title(text: str, x_domain: tuple[float, float], y: float = 1.0) -> dict[str, Any]:
    """An annotation centred over a panel (subplot title)."""
    return {
        "text": text,
        "x": (x_domain[0] + x_domain[1]) / 2,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 13},
    }


def cursor_shape(x: float, axis_index: int = 0) -> dict[str, Any]:
    """A vertical line at data x spanning its panel: the current step or t."""
    return {
        "type": "line",
        "x0": x,
        "x1": x,
        "y0": 0,
        "y1": 1,
        "xref": trace_axis("x", axis_index),
        "yref": f"{trace_axis('y', axis_index)} domain",
        "line": {"color": ACCENT, "width": 1.5, "dash": "dot"},
    }


def figure(data: list[dict[str, Any]], layout: dict[str, Any]) -> go.Figure:
    """A Figure from trace and layout dicts built by this package, without plotly's per-property validation.

    Validation costs three times the build and runs again when Streamlit serializes the
    figure; the builders emit only known properties, which tests/viewer/test_figures.py
    checks by rebuilding every figure with validation on.
    """
    return go.Figure(data=data, layout=layout, _validate=False)
