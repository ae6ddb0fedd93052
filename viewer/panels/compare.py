"""The compare page: two or more sampling traces on one scrubber, aligned by timestep t.

The scrubber runs over the steps of a reference trace; every other trace shows its
step whose t is nearest (DDPM at t = 980 beside DDIM at the nearest t it visits).
Side by side: the tensors of each trace and their difference from the reference.
Sweep grid: one column per trace, the same samples in the same rows. Distances:
||A - B|| / sqrt(d) per step, plotted over t.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import streamlit as st

from viewer import describe, loaders, symbols
from viewer.figures.compare import distance_figure
from viewer.figures.images import DIVERGING, Panel, as_images, colours_for, image_grids_figure, sweep_grid_figure
from viewer.figures.points import extent, point_cloud_figure
from viewer.panels.errors import guard, one_line
from viewer.panels.scrubber import scrubber_ui
from viewer.paths import TraceEntry
from viewer.state import step_key
from viewer.text import plain, plotly_text

COMPARED: Final = ("x0_pred", "x_t", "eps")
CHART_CONFIG: Final = {"displaylogo": False}


@dataclass(frozen=True)
class Opened:
    entry: TraceEntry
    handle: loaders.TraceHandle
    info: loaders.TraceInfo
    t: np.ndarray

    @property
    def label(self) -> str:
        return describe.short_label(self.entry.name, self.info.config)


def open_all(entries: Sequence[TraceEntry]) -> list[Opened]:
    """Open each chosen trace; one that cannot be read gets one st.error line and is left out."""
    opened = []
    for entry in entries:
        try:
            handle = loaders.open_handle(entry.path)
            info = loaders.info(handle)
            if info.kind != "sampling":
                st.warning(f"{plain(entry.name)}: a training trace has no sampling steps to compare; left out.")
                continue
            t = loaders.scalars(info.path, info.inode, info.rows).get("t", np.arange(info.rows))
            opened.append(Opened(entry, handle, info, t))
        except Exception as error:  # noqa: BLE001
            st.error(f"{plain(entry.name)}: {plain(one_line(error))}", icon=":material/error:")
    return opened


def alignment(reference: Opened, others: Sequence[Opened], i: int) -> list[int]:
    """The step of each other trace nearest in t to step i of the reference."""
    t_ref = reference.t[i : i + 1]
    return [int(loaders.nearest_steps(t_ref, o.t)[0]) for o in others]


def compare_ui(entries: Sequence[TraceEntry], default: Sequence[str]) -> tuple[list[TraceEntry], str]:
    """Sidebar: the traces (two or more; the first gives the timeline) and the tensor compared."""
    names = [e.name for e in entries]
    if "compare" not in st.session_state:
        st.session_state["compare"] = [n for n in default if n in names][:8] or names[:2]
    chosen = st.sidebar.multiselect("Traces to compare (the first sets the timeline)", names, key="compare")
    tensor = st.sidebar.radio("Compare", COMPARED, key="compare.tensor", horizontal=True)
    by_name = {e.name: e for e in entries}
    return [by_name[n] for n in chosen if n in by_name], tensor


def samples_ui(batch: int) -> list[int]:
    return st.sidebar.multiselect("Samples", list(range(batch)), default=list(range(min(batch, 8))), key=f"compare.samples.{batch}")


def compare_page(entries: Sequence[TraceEntry], default: Sequence[str], on_state: Callable[[list[str], int], None]) -> None:
    chosen, tensor = compare_ui(entries, default)
    if len(chosen) < 2:
        st.info("Pick two or more sampling traces in the sidebar to compare them on one timeline.")
        on_state([e.name for e in chosen], 0)
        return
    opened = open_all(chosen)
    if len(opened) < 2:
        st.info("Fewer than two of the chosen traces can be compared.")
        on_state([e.name for e in chosen], 0)
        return
    reference = opened[0]
    others = opened[1:]
    samples = samples_ui(min(o.info.batch for o in opened))
    if reference.info.rows == 0:
        st.info(f"{plain(reference.entry.name)} has no steps yet.")
        return
    st.markdown(f"Timeline of **{plain(reference.entry.name)}** ({reference.info.rows} steps); every other trace shows its step nearest in $t$.")
    key = step_key(f"compare:{reference.entry.name}")[: -len(".index")]
    i = scrubber_ui(key, reference.t)
    on_state([o.entry.name for o in opened], i)
    matched = alignment(reference, others, i)
    lines = [f"**A** {plain(reference.entry.name)}: step {i + 1}, $t = {int(reference.t[i])}$"]
    for letter, other, j in zip("BCDEFGH", others, matched, strict=False):
        gap = int(other.t[j]) - int(reference.t[i])
        lines.append(f"**{letter}** {plain(other.entry.name)}: step {j + 1}, $t = {int(other.t[j])}$ (Δt = {gap:+d})")
    with st.container(key="compare-alignment"):
        st.markdown("  \n".join(lines))
    tabs = st.tabs(["Side by side", "Sweep grid", "Distances over t"])
    with tabs[0], guard("side by side"):
        side_by_side(reference, others, i, matched, tensor, samples)
    with tabs[1], guard("sweep grid"):
        sweep(reference, others, i, matched, tensor, samples)
    with tabs[2], guard("distances"):
        distances(reference, others, i, tensor)


def _images(o: Opened, step: int, tensor: str, samples: Sequence[int]) -> np.ndarray:
    picked = [s for s in samples if 0 <= s < o.info.batch] or [0]
    return loaders.step_tensors(o.handle, step, [tensor], picked, o.info.rows)[tensor]


def side_by_side(reference: Opened, others: Sequence[Opened], i: int, matched: Sequence[int], tensor: str, samples: Sequence[int]) -> None:
    if reference.info.is_2d:
        cols = st.columns(len(others) + 1)
        bounds = extent(loaders.trajectory(reference.info.path, reference.info.inode, reference.info.rows, tensor))
        for col, o, step in zip(cols, [reference, *others], [i, *matched], strict=True):
            cloud = loaders.trajectory(o.info.path, o.info.inode, o.info.rows, tensor)
            col.plotly_chart(point_cloud_figure(cloud[step], cloud[step : step + 1], None, "none", bounds, title=f"{plotly_text(o.entry.name)}, t = {int(o.t[step])}", height=340),
                             config=CHART_CONFIG, key=f"cmp.pts.{o.entry.name}")
        return
    ref_images = as_images(_images(reference, i, tensor, samples))
    fixed = loaders.colour_ranges(reference.info.path, reference.info.inode, reference.info.rows, (tensor,))
    low, high = fixed[tensor]
    ref_panel = Panel(f"A: {symbols.html(tensor, False)} at t = {int(reference.t[i])}", ref_images, low, high, colours_for(tensor))
    for letter, o, step in zip("BCDEFGH", others, matched, strict=False):
        images = as_images(_images(o, step, tensor, samples))
        n = min(len(images), len(ref_images))
        panel = Panel(f"{letter}: {symbols.html(tensor, False)} at t = {int(o.t[step])}", images, low, high, colours_for(tensor))
        if images.shape[1:] != ref_images.shape[1:]:
            st.warning(f"{plain(o.entry.name)}: sample shape {images.shape[1:]} differs from A's {ref_images.shape[1:]}; no difference image.")
            st.plotly_chart(image_grids_figure([ref_panel, panel], per_row=3), config=CHART_CONFIG, key=f"cmp.{letter}")
            continue
        diff = images[:n] - ref_images[:n]
        bound = float(np.nanmax(np.abs(diff))) if diff.size else 1.0
        bound = bound if bound > 0 else 1.0
        panels = [ref_panel, panel, Panel(f"{letter} − A", diff, -bound, bound, DIVERGING)]
        st.plotly_chart(image_grids_figure(panels, per_row=3), config=CHART_CONFIG, key=f"cmp.{letter}")
        rms = float(np.sqrt(np.mean(diff.astype(np.float64) ** 2))) if diff.size else 0.0
        st.caption(f"{letter} − A over the samples shown: RMS {rms:.4g}, max |·| {bound:.4g}")


def sweep(reference: Opened, others: Sequence[Opened], i: int, matched: Sequence[int], tensor: str, samples: Sequence[int]) -> None:
    if reference.info.is_2d:
        st.info("The sweep grid shows images; for 2-D traces see Side by side.")
        return
    fixed = loaders.colour_ranges(reference.info.path, reference.info.inode, reference.info.rows, (tensor,))
    low, high = fixed[tensor]
    columns = []
    traces = [reference, *others]
    labels = describe.distinguishing_labels([o.entry.name for o in traces], [o.info.config for o in traces])
    for o, step, label in zip(traces, [i, *matched], labels, strict=True):
        columns.append(Panel(f"{plotly_text(label)}<br>t = {int(o.t[step])}", as_images(_images(o, step, tensor, samples)), low, high, colours_for(tensor)))
    st.plotly_chart(sweep_grid_figure(columns), config=CHART_CONFIG, key="cmp.sweep")
    st.caption("One column per trace; sample k of every trace in row k (the same x_T when the runs share a seed).")


def distances(reference: Opened, others: Sequence[Opened], i: int, tensor: str) -> None:
    curves = {}
    for o in others:
        t_ref, d = loaders.aligned_distance(reference.info.path, reference.info.inode, reference.info.rows, o.info.path, o.info.inode, o.info.rows, tensor)
        curves[plotly_text(f"{o.entry.name} − {reference.entry.name}")] = (t_ref, d)
    title = f"‖{symbols.HTML.get(tensor, tensor)}(B) − {symbols.HTML.get(tensor, tensor)}(A)‖ / √d"
    st.plotly_chart(distance_figure(curves, int(reference.t[i]), y_title=title), config=CHART_CONFIG, key="cmp.dist")
    st.caption("Per step of A: the mean over the batch of the RMS distance to the other trace at its step nearest in t.")
