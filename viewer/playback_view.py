"""What one scrub computes: the tensors and scalars of step i, read through the loaders, turned into figures.

``step_view`` is the whole server-side cost of moving the scrubber (besides the
equations): one chunk read per tensor shown, cached O(steps) summaries, and the figure
builders. benchmarks/bench_viewer.py times exactly this path. Also here: which tensors
the picker offers and shows by default (``offered_tensors``, ``default_tensors``: x_t_scaled in x_t's place
in sigma space), the scalar plots of each family (``strip_series``), and the notes a step's view carries (z left out
where σ = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import plotly.graph_objects as go

from tracer.trace import schema
from viewer import loaders, symbols
from viewer.figures.images import Panel, as_images, colours_for, image_grids_figure
from viewer.figures.points import X0Mode, extent, point_cloud_figure
from viewer.figures.scalars import scalar_strips_figure

IMAGE_TENSORS: Final = schema.SAMPLER_STEP_TENSORS  # the step tensors noisescope's samplers record, in reading order
ColourMode = Literal["trace", "data", "step"]
COLOUR_MODES: Final[dict[str, str]] = {
    "trace": "fixed for the whole trace",
    "data": "data range [-1, 1]",
    "step": "per step (jumps)",
}
SCALAR_PLOTS: Final = ("alpha_bar_t", "sigma", "std_x_t", "rms_eps")
# A trace's own noise level, where it records one: sigma_t (sigma space: x_t = x0 + sigma_t eps), t_flow (flow: x_t =
# (1 - t) x0 + t eps). Plotted beside alpha_bar_t, in place of sigma (the std of the noise a step adds) where that is 0.
LEVEL_PLOTS: Final = ("sigma_t", "t_flow")
SCALED: Final = "x_t_scaled"  # symbols.DERIVED: x_t / sqrt(1 + sigma_t^2), shown for x_t by default in sigma space
Z: Final = schema.field(schema.STEPS, "noise").name  # z, the noise a step draws
SIGMA: Final = schema.field(schema.STEPS, "sigma").name  # the std of the noise it adds: sigma z
Z_UNUSED: Final = "z is not shown at this step: σ = 0, so σ z adds nothing (DDIM with η = 0, or the last step)."


@dataclass(frozen=True)
class Display:
    """The playback selections: tensors and samples to show, colour mode, and how 2-D x0_pred is drawn."""

    tensors: tuple[str, ...] = schema.STEP_TENSORS
    samples: tuple[int, ...] = tuple(range(16))
    colour: ColourMode = "trace"
    x0_mode: X0Mode = "arrows"
    trajectories: bool = True


@dataclass
class StepView:
    """Everything drawn for one step."""

    index: int
    t: int
    t_prev: int
    scalars: dict[str, float]
    panels: list[Panel] = field(default_factory=list)
    panel_names: list[str] = field(default_factory=list)
    images: go.Figure | None = None
    points: go.Figure | None = None
    strips: go.Figure | None = None
    notes: list[str] = field(default_factory=list)  # said under the images: what is left out at this step, and why


def z_never_used(info: loaders.TraceInfo) -> bool:
    """Whether σ is 0 at every step recorded (DDIM with η = 0): the z drawn is never added."""
    sigma = loaders.scalars(info.path, info.inode, info.rows).get(SIGMA)
    return sigma is not None and sigma.size > 0 and bool(np.all(sigma == 0))


def recorded_tensors(info: loaders.TraceInfo) -> tuple[str, ...]:
    """Every step tensor the trace has, in reading order (eps_cond and eps_uncond only when guided), but z where σ is 0
    at every step (``z_never_used``)."""
    unused = z_never_used(info)
    return tuple(name for name in IMAGE_TENSORS if name in info.tensors and not (name == Z and unused))


def default_tensors(info: loaders.TraceInfo) -> tuple[str, ...]:
    """``recorded_tensors``, but in a sigma-space trace x_t_scaled in x_t's place: its x_t = x0 + σ_t ε reaches |x| ~ 150,
    all saturated on the data range, and x_t / √(1 + σ_t²) is the same state on the data scale (the network's input)."""
    scaled = SCALED in derivable_tensors(info)
    return tuple(SCALED if name == "x_t" and scaled else name for name in recorded_tensors(info))


def derivable_tensors(info: loaders.TraceInfo) -> tuple[str, ...]:
    """The derived tensors (symbols.DERIVED) the trace's tensors and scalars allow."""
    return loaders.derivable(info.tensors, info.scalar_names)


def offered_tensors(info: loaders.TraceInfo) -> tuple[str, ...]:
    """The Tensors picker's options: ``default_tensors``, then x_t where x_t_scaled took its place, then the other
    tensors the viewer derives (guidance_delta when guided, symbols.DERIVED), which are not shown until picked."""
    shown = default_tensors(info)
    return tuple(dict.fromkeys((*shown, *recorded_tensors(info), *derivable_tensors(info))))


def strip_series(scalars: dict[str, np.ndarray], stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The scalar plots: alpha_bar_t; the trace's own noise level (sigma_t in sigma space, t_flow for flow) where it records
    one; sigma (the std of the noise a step adds) unless that level took its place because sigma is 0 at every step
    (a deterministic sigma-space or flow sampler); the std of x_t and the RMS of eps."""
    levels = [name for name in LEVEL_PLOTS if name in scalars]
    sigma = scalars.get(SIGMA)
    sigma_zero = sigma is not None and bool(np.all(np.asarray(sigma) == 0))
    names = ["alpha_bar_t", *levels, *([SIGMA] if not (levels and sigma_zero) else [])]
    out = {name: scalars[name] for name in names if name in scalars}
    out.update(stats)
    return out


def value_range(name: str, images: np.ndarray, mode: ColourMode, fixed: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """The colour range of a panel: fixed per trace, the data range [-1, 1], or this step's symmetric max."""
    if mode == "trace" and name in fixed:
        return fixed[name]
    if mode == "data":
        return (-1.0, 1.0)
    q = float(np.nanmax(np.abs(images))) if images.size else 1.0
    q = q if np.isfinite(q) and q > 0 else 1.0
    return (-q, q)


def step_view(handle: loaders.TraceHandle, info: loaders.TraceInfo, i: int, display: Display, draw_images: bool = True) -> StepView:
    """Read step ``i`` and build its figures: image grids or the 2-D point cloud (unless ``draw_images`` is False: the
    browser's player draws them), and the scalar strips."""
    rows = info.rows
    scalars = loaders.scalars(info.path, info.inode, rows)
    t = scalars.get("t", np.arange(rows))
    view = StepView(
        index=i,
        t=int(t[i]),
        t_prev=int(scalars["t_prev"][i]) if "t_prev" in scalars else -1,
        scalars={name: float(values[i]) for name, values in scalars.items()},
    )
    stats = loaders.step_stats(handle, rows)
    view.strips = scalar_strips_figure(strip_series(scalars, stats), t, i)
    if info.is_2d and not draw_images:
        return view  # the browser's player draws the points
    if info.is_2d:
        history = loaders.trajectory(info.path, info.inode, rows, "x_t")
        x0_all = loaders.trajectory(info.path, info.inode, rows, "x0_pred") if "x0_pred" in info.tensors else None
        bounds = extent(history, *(() if x0_all is None else (x0_all,)))
        x0_now = None if x0_all is None or display.x0_mode == "none" else x0_all[i]
        past = history[: i + 1] if display.trajectories else history[i : i + 1]
        view.points = point_cloud_figure(history[i], past, x0_now, display.x0_mode, bounds,
                                         title=f"x<sub>t</sub> at t = {view.t} (step {i + 1} of {rows})")
        return view
    shown = set(info.tensors) | set(derivable_tensors(info))
    names = [name for name in display.tensors if name in shown]
    if Z in names and SIGMA in scalars and scalars[SIGMA][i] == 0:
        names.remove(Z)
        view.notes.append(Z_UNUSED)
    samples = [s for s in display.samples if 0 <= s < info.batch] or [0]
    fixed = loaders.colour_ranges(info.path, info.inode, rows, tuple(names)) if display.colour == "trace" else {}
    tensors = loaders.step_tensors(handle, i, names, samples, rows)
    for name in names:
        images = as_images(tensors[name])
        low, high = value_range(name, images, display.colour, fixed)
        view.panels.append(Panel(symbols.html(name, with_name=False), images, low, high, colours_for(name)))
        view.panel_names.append(name)
    if view.panels and draw_images:
        view.images = image_grids_figure(view.panels)
    return view
