"""Image grids: tensors of a step ([N, C, H, W]) as tiled mosaics, one panel per tensor, on a fixed colour range.

A colour range is passed in, not computed from the step shown, so the scale does not
jump as the scrubber moves (viewer/loaders.py fixes it per trace). One channel is drawn
as a heatmap (grey for data-like tensors, a diverging map for noise-like ones, hover
shows the value); three channels as an RGB image mapped from the same range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import get_colorscale

from tracer.trace import schema
from viewer import symbols
from viewer.figures.layout import axis_name, base_layout, domains, figure, panel_title, trace_axis

# Explicit [position, colour] lists: figures skip plotly's validation, which is what would expand a name.
GREY: list[list[Any]] = [[0.0, "rgb(0, 0, 0)"], [1.0, "rgb(255, 255, 255)"]]  # linear, as the exported frames
DIVERGING: list[list[Any]] = get_colorscale("RdBu_r")
# Noise-like names (symbols.is_noise_like: the schema's display class "noise" and the noise-like derived tensors), and the
# viewer's differences of two tensors.
NOISE_LIKE = frozenset({*filter(symbols.is_noise_like, (*schema.names(), *symbols.DERIVED)), "difference"})
TILE_GAP = 1  # pixels between the tiles of a mosaic
WIDTH_HINT = 1100  # pixels across the container a figure is sized for


@dataclass(frozen=True)
class Panel:
    """One tensor to draw: ``images`` [N, C, H, W] and the value range mapped onto the colour scale."""

    title: str  # plotly HTML, e.g. "x<sub>t</sub>"
    images: np.ndarray
    low: float
    high: float
    colours: list[list[Any]] = field(default_factory=lambda: GREY)


def colours_for(name: str) -> list[list[Any]]:
    """Grey for data-like tensors (x_t, x0_pred), a diverging scale for noise-like ones (eps, z, differences)."""
    return DIVERGING if name in NOISE_LIKE else GREY


def grid_columns(count: int, max_columns: int = 8) -> int:
    """Columns of a near-square mosaic of ``count`` tiles."""
    return max(1, min(max_columns, math.ceil(math.sqrt(max(count, 1)))))


def mosaic(images: np.ndarray, columns: int, gap: int = TILE_GAP, fill: float = float("nan")) -> np.ndarray:
    """Tile [N, C, H, W] into [C, rows*H + (rows-1)*gap, columns*W + (columns-1)*gap], row-major, gaps filled."""
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {images.shape}")
    n, c, h, w = images.shape
    columns = max(1, min(columns, max(n, 1)))
    rows = max(1, math.ceil(n / columns))
    out = np.full((c, rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap), fill, dtype=np.float32)
    for k in range(n):
        r, q = divmod(k, columns)
        out[:, r * (h + gap) : r * (h + gap) + h, q * (w + gap) : q * (w + gap) + w] = images[k]
    return out


def to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto 0..255 (clipped); NaN (mosaic gaps) becomes white."""
    span = high - low if high > low else 1.0
    scaled = np.clip((values - low) / span, 0.0, 1.0) * 255.0
    return np.where(np.isnan(values), 255, np.round(scaled)).astype(np.uint8)


def as_images(values: np.ndarray) -> np.ndarray:
    """[N, *D] samples as [N, C, H, W]: C,H,W kept, H,W given one channel, anything else refused."""
    if values.ndim == 4:
        return values
    if values.ndim == 3:
        return values[:, None]
    raise ValueError(f"cannot draw samples of shape {values.shape[1:]} as images")


def image_grids_figure(
    panels: Sequence[Panel], columns: int | None = None, height: int | None = None, per_row: int = 4, width_hint: int = WIDTH_HINT
) -> go.Figure:
    """Panels in rows of ``per_row``, each a mosaic of the same N samples (sample k in the same tile of every panel).

    ``height`` None sizes the figure from the mosaics' aspect ratio for a ``width_hint``-pixel container.
    """
    return figure(*_grids(panels, columns, height, per_row, width_hint))


def _grids(panels: Sequence[Panel], columns: int | None, height: int | None, per_row: int, width_hint: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The traces and layout of ``image_grids_figure``: panel i on axes x(i+1), y(i+1), pixel rows and columns as data coordinates."""
    data: list[dict[str, Any]] = []
    count = len(panels)
    across = max(1, min(per_row, count))
    rows = max(1, math.ceil(count / across))
    slots = domains(across, gap=0.03)
    lines = max((p.title.count("<br>") + 1 for p in panels), default=1)
    title_px, gap_px = 12 + 15 * lines, 8  # room for the panel titles (one line each, plus <br>s)
    layout = base_layout(0)
    annotations = []
    tallest = 0.0
    mosaics = []
    for panel in panels:
        images = np.asarray(panel.images, dtype=np.float32)
        cols = columns or grid_columns(images.shape[0])
        tiles = mosaic(images[:, :3] if images.shape[1] == 3 else images[:, :1], cols)
        mosaics.append(tiles)
        tallest = max(tallest, tiles.shape[1] / max(tiles.shape[2], 1))
    panel_px = (width_hint * (slots[0][1] - slots[0][0]) if slots else width_hint) * tallest
    row_px = panel_px + title_px + gap_px
    total = height or int(min(max(row_px * rows + 10, 140), 1400))
    for i, (panel, tiles) in enumerate(zip(panels, mosaics, strict=True)):
        r, c = divmod(i, across)
        top, bottom = 1.0 - r / rows, 1.0 - (r + 1) / rows  # row r's share of the height: title above, gap below
        y_domain = [bottom + gap_px / total, max(top - title_px / total, bottom + gap_px / total + 1e-3)]
        x_ref, y_ref = trace_axis("x", i), trace_axis("y", i)
        if tiles.shape[0] == 3:
            rgb = to_uint8(np.moveaxis(tiles, 0, -1), panel.low, panel.high)
            data.append({"type": "image", "z": rgb, "xaxis": x_ref, "yaxis": y_ref, "hoverinfo": "skip", "name": panel.title})
        else:
            data.append({
                "type": "heatmap", "z": tiles[0], "zmin": panel.low, "zmax": panel.high, "colorscale": panel.colours, "showscale": False,
                "xaxis": x_ref, "yaxis": y_ref, "name": panel.title, "hovertemplate": "%{z:.4f}<extra></extra>",
            })
        layout[axis_name("xaxis", i)] = {"domain": list(slots[c]), "visible": False, "constrain": "domain", "anchor": y_ref}
        layout[axis_name("yaxis", i)] = {"domain": y_domain, "visible": False, "autorange": "reversed", "scaleanchor": x_ref,
                                         "constrain": "domain", "anchor": x_ref}
        annotations.append(panel_title(f"{panel.title} <span style='font-size:10px;color:#888'>[{panel.low:.3g}, {panel.high:.3g}]</span>",
                                       slots[c], y_domain[1]))
    layout["annotations"] = annotations
    layout["height"] = total
    layout["margin"] = {"l": 4, "r": 4, "t": 4, "b": 4}
    return data, layout


SWEEP_TILE_PX = 96  # height of one sample in the sweep grid


def tile_centres(count: int, tile: int, gap: int = TILE_GAP) -> np.ndarray:
    """The middle pixel row (or column) of each of ``count`` tiles of ``tile`` pixels laid ``gap`` apart, as in ``mosaic``."""
    return np.arange(count) * (tile + gap) + (tile - 1) / 2


def sweep_grid_figure(columns: Sequence[Panel], row_labels: Sequence[str] = (), height: int | None = None) -> go.Figure:
    """One column per trace, the same samples in the same rows (a sweep: eta 0/1, guidance 0/1/3/5); tiles of ~96 px.

    The columns are titled by their panels' titles (the traces' settings); ``row_labels`` (sample and class, top to
    bottom, one per row) are written left of the first column, each level with its row.
    """
    rows = max((p.images.shape[0] for p in columns), default=1)
    data, layout = _grids(columns, 1, height or min(1400, 50 + SWEEP_TILE_PX * rows), max(1, len(columns)), WIDTH_HINT)
    labels = list(row_labels)[:rows]
    if columns and labels:
        tile = np.asarray(columns[0].images).shape[2]  # H of [N, C, H, W]
        layout["yaxis"].update({
            "visible": True, "showticklabels": True, "tickmode": "array", "tickvals": tile_centres(len(labels), tile).tolist(), "ticktext": labels,
            "ticks": "", "showgrid": False, "zeroline": False, "showline": False, "tickfont": {"size": 12}, "automargin": True,
        })
    return figure(data, layout)
