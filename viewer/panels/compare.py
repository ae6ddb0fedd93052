"""The compare page: two or more sampling traces on one timeline.

Traces are lined up by noise level, in the measure the sidebar's "Line up by" picks (log SNR, sigma or flow time,
each from the recorded alpha_bar_t: viewer/noise.py), not by step index or t, so traces of different families
(DDIM 50, Heun 25, flow Euler 50 from one x_T) sit side by side at equal noise. Finished traces of one kind (images,
or 2-D points) play in the browser's player (viewer/panels/player.py), one track per trace, every trace advancing
to the same noise level together (DDPM's 1,000 steps beside DDIM's 50, each showing its step nearest in noise
level); pausing or scrubbing sends back the position, which picks the reference trace's step for the tabs below.
Otherwise a scrubber runs over the steps of the reference trace. Either way every other trace shows its step
nearest in noise level to the reference's (nearest in t where a trace lacks alpha_bar_t).
Side by side: the tensors of each trace and their difference from the reference.
Sweep grid: one column per trace, the same samples in the same rows. Distances:
||A - B|| / sqrt(d) per step of A, plotted over A's noise level. Traces are named in legends and columns by
the settings that tell them apart (s=3, η=0), samples (the sweep grid's rows too) by their class label; comparing
x0_pred of a clipped and an unclipped run is warned about.

Samples are lined up by the run's sample index, not by row: a trace of ``noisescope sample --samples 2:4`` holds run
samples 2 and 3 in its rows 0 and 1. Only the samples every compared trace keeps are offered and compared
(tracer/trace/choice.py ``shared_samples``), each trace showing its own row of each; where they keep none in common,
a line says so and no image or distance is drawn (2-D traces still show each trace's own points side by side).

Round trip (a DDIM inversion among the traces, ``noisescope invert``): the input, the x_T the
inversion found and the data sampled back from it, and the error between the inversion's x and
the re-sampled x at every timestep both visit. The re-sampling trace is the one the inversion's
config links (``linked``); picked alone, either trace of a linked pair brings the other in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import streamlit as st

from tracer.trace.choice import samples_text, shared_samples
from viewer import describe, loaders, symbols
from viewer.noise import DEFAULT, MEASURES, delta, fmt
from viewer.figures.compare import distance_figure, placeable
from viewer.figures.images import DIVERGING, Panel, as_images, colours_for, image_grids_figure, sweep_grid_figure
from viewer.figures.inversion import SAMPLES, line_up, round_trip_error_figure, round_trip_images_figure, round_trip_points_figure, state_error, states
from viewer.figures.points import extent, point_cloud_figure
from viewer.panels.errors import guard, one_line
from viewer.panels.player import compare_spec, compare_steps, image_track, player_ui, points_track, supported
from viewer.panels.scrubber import current_index, scrubber_ui
from viewer.paths import TraceEntry
from viewer.state import step_key
from viewer.text import plain, plotly_text

COMPARED: Final = ("x0_pred", "x_t", "eps")
DISTANCES: Final = "compare-distances"  # the container of the distance plot, whose cursor the player moves
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

    def levels(self, measure: str) -> np.ndarray | None:
        """Each step's noise level in ``measure`` (viewer/noise.py), from its alpha_bar_t; None where it records none."""
        return loaders.step_levels(self.info.path, self.info.inode, self.info.rows, measure)


@dataclass(frozen=True)
class Shared:
    """The run's sample indices every compared trace keeps (``shared_samples``) and, per trace, the row of each."""

    indices: list[int]
    rows: list[list[int]]  # one list a trace, in the order the traces were given

    def rows_of(self, trace: int, samples: Sequence[int]) -> list[int]:
        """Trace number ``trace``'s rows of the run's ``samples`` (each one of ``indices``)."""
        where = dict(zip(self.indices, self.rows[trace], strict=True))
        return [where[s] for s in samples]

    def kept_by_all(self, traces: Sequence[Opened]) -> bool:
        """Whether every trace's every sample is shared (e.g. whole batches of one size): nothing left out."""
        return all(len(o.info.run_samples) == len(self.indices) for o in traces)


def shared_of(traces: Sequence[Opened]) -> Shared:
    """The samples ``traces`` have in common, by the run's index of each (their readers' ``sample_indices``)."""
    indices, rows = shared_samples(*(o.info.run_samples for o in traces))
    return Shared(indices, rows)


def samples_note(traces: Sequence[Opened], shared: Shared, names: Sequence[str] = "ABCDEFGH") -> str | None:
    """What is compared where the traces keep other samples of the batch (``--samples``): the shared ones, or that none
    is shared; None where every trace keeps exactly the shared samples. ``names``: how each trace is called (A, B, ...)."""
    if shared.kept_by_all(traces):
        return None
    kept = [f"{name} keeps {samples_text(o.info.run_samples)}" for name, o in zip(names, traces, strict=False)]
    if not shared.indices:
        first = f"{names[0]} keeps samples {samples_text(traces[0].info.run_samples)}"
        return f"{', '.join([first, *kept[1:]])} of the run's batch: no sample in common to compare."
    return (f"Compared: samples {samples_text(shared.indices)} of the run's batch, those every trace keeps ({', '.join(kept)}); "
            "each trace shows its own row of each.")


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


def line_up_measure(opened: Sequence[Opened], measure: str) -> str | None:
    """The measure the traces are lined up by: ``measure`` where every trace records alpha_bar_t, else None (by t)."""
    return measure if all(o.levels(measure) is not None for o in opened) else None


def alignment(reference: Opened, others: Sequence[Opened], i: int, measure: str | None = DEFAULT) -> list[int]:
    """The step of each other trace nearest to step i of the reference in noise level ``measure`` (viewer/noise.py), or in
    t where ``measure`` is None."""
    ref = reference.levels(measure) if measure is not None else None
    if ref is None:
        return [int(loaders.nearest_steps(reference.t[i : i + 1], o.t)[0]) for o in others]
    out = []
    for o in others:
        levels = o.levels(measure)  # type: ignore[arg-type]
        out.append(int(loaders.nearest_steps(ref[i : i + 1], levels if levels is not None else np.zeros(0))[0]))
    return out


def alignment_lines(reference: Opened, others: Sequence[Opened], i: int, matched: Sequence[int], measure: str | None) -> list[str]:
    """Markdown, one line a trace: its step, t and noise level, and how far each other trace's is from A's
    (``**B** heun.h5: step 3, $t = 35$, σ = 2.1 (Δσ = +0.02)``); by t where ``measure`` is None."""
    if measure is None:
        lines = [f"**A** {plain(reference.entry.name)}: step {i + 1}, $t = {int(reference.t[i])}$"]
        for letter, other, j in zip("BCDEFGH", others, matched, strict=False):
            gap = int(other.t[j]) - int(reference.t[i])
            lines.append(f"**{letter}** {plain(other.entry.name)}: step {j + 1}, $t = {int(other.t[j])}$ (Δt = {gap:+d})")
        return lines
    spec = MEASURES[measure]
    ref = float(reference.levels(measure)[i])  # type: ignore[index]
    lines = [f"**A** {plain(reference.entry.name)}: step {i + 1}, $t = {int(reference.t[i])}$, {spec.text} = {fmt(ref)}"]
    for letter, other, j in zip("BCDEFGH", others, matched, strict=False):
        level = float(other.levels(measure)[j])  # type: ignore[index]
        lines.append(f"**{letter}** {plain(other.entry.name)}: step {j + 1}, $t = {int(other.t[j])}$, {spec.text} = {fmt(level)} "
                     f"(Δ{'' if spec.text == 'σ' else ' '}{spec.text} = {delta(level, ref)})")
    return lines


def compare_ui(entries: Sequence[TraceEntry], default: Sequence[str]) -> tuple[list[TraceEntry], str, str]:
    """Sidebar: the traces (two or more; the first gives the timeline), the tensor compared and the noise level measure
    they are lined up by (viewer/noise.py: log SNR, sigma or flow time)."""
    names = [e.name for e in entries]
    if "compare" not in st.session_state:
        st.session_state["compare"] = [n for n in default if n in names][:8] or names[:2]
    chosen = st.sidebar.multiselect("Traces to compare (the first sets the timeline)", names, key="compare")
    tensor = st.sidebar.radio("Compare", COMPARED, key="compare.tensor", horizontal=True)
    measure = st.sidebar.radio("Line up by", list(MEASURES), format_func=lambda m: MEASURES[m].label, key="compare.measure",
                               help="The noise level every trace is lined up by, from the alpha_bar_t it records: "
                                    "log SNR = log(ᾱ/(1 − ᾱ)), σ = √((1 − ᾱ)/ᾱ) (sigma-space samplers' level), or the flow time "
                                    "t = σ/(1 + σ) (the flow path's time at that SNR). Each trace shows its step nearest in it.")
    by_name = {e.name: e for e in entries}
    return [by_name[n] for n in chosen if n in by_name], tensor, measure


def sample_label(k: int, labels: np.ndarray | None, row: int | None = None) -> str:
    """'3 · class 1' or '3 · unconditional' (label -1) for the run's sample k, its label read at ``row`` of the trace
    (default k: a trace that keeps the whole batch); just '3' where the trace has no labels for that row."""
    row = k if row is None else row
    if labels is None or not 0 <= row < len(labels):
        return str(k)
    label = int(labels[row])
    return f"{k} · {'unconditional' if label < 0 else f'class {label}'}"


def class_labels(o: Opened) -> np.ndarray | None:
    """The trace's ``labels`` (one class per sample, -1 unconditional), once written; None before or without."""
    written = loaders.has_final(o.handle)
    labels = loaders.final_array(o.info.path, o.info.inode, "labels", written) if written else None
    return None if labels is None else np.asarray(labels).reshape(-1)


def legend_labels(traces: Sequence[Opened]) -> list[str]:
    """Per trace, the settings that tell it from the others (describe.distinguishing_labels), made unique by file name."""
    labels = describe.distinguishing_labels([o.entry.name for o in traces], [o.info.config for o in traces])
    return [f"{label} ({o.entry.name})" if labels.count(label) > 1 and label != o.entry.name else label
            for label, o in zip(labels, traces, strict=True)]


def clipped(config: Mapping[str, Any], tensors: Sequence[str]) -> bool | None:
    """Whether a trace's x0_pred is clipped to [-1, 1]: its sampler's ``clip`` setting, else whether it records
    x0_pred_raw (only a clipping run does); None where neither says."""
    clip = describe.sampler_settings(config).get("clip")
    if isinstance(clip, bool):
        return clip
    return True if "x0_pred_raw" in tensors else None


def clipping_warning(traces: Sequence[Opened], labels: Sequence[str]) -> str | None:
    """A warning when some compared traces clip x0_pred and others do not (their difference is partly the clipping)."""
    state = [clipped(o.info.config, o.info.tensors) for o in traces]
    on = [label for label, c in zip(labels, state, strict=True) if c is True]
    off = [label for label, c in zip(labels, state, strict=True) if c is False]
    if not on or not off:
        return None
    return (f"x0_pred is clipped to [-1, 1] in {', '.join(on)} but not in {', '.join(off)}: "
            "part of their difference is the clipping, not the model or the sampler.")


def samples_ui(shared: Shared, labels: np.ndarray | None = None) -> list[int]:
    """Sidebar: the run's samples to show, among those every trace keeps, each named with its class label in A (``labels``,
    A's rows)."""
    row = dict(zip(shared.indices, shared.rows[0], strict=True)) if shared.rows else {}
    return st.sidebar.multiselect("Samples", shared.indices, default=shared.indices[:8], key=f"compare.samples.{samples_text(shared.indices)}",
                                  format_func=lambda k: sample_label(k, labels, row.get(k)))


def compare_page(entries: Sequence[TraceEntry], default: Sequence[str], on_state: Callable[[list[str], int], None]) -> None:
    chosen, tensor, choice = compare_ui(entries, default)
    if len(chosen) == 1:
        partner = linked_entry(chosen[0], entries)
        if partner is not None:
            st.caption(f"{plain(chosen[0].name)} is linked to {plain(partner.name)} (a DDIM inversion and its re-sampling): compared together.")
            chosen = [chosen[0], partner]
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
    labels = class_labels(reference)
    shared = shared_of(opened)
    samples = samples_ui(shared, labels)
    note = samples_note(opened, shared)
    if note is not None and not shared.indices:
        st.info(note)
    elif note is not None:
        st.caption(note)
    if reference.info.rows == 0:
        st.info(f"{plain(reference.entry.name)} has no steps yet.")
        return
    key = step_key(f"compare:{reference.entry.name}")[: -len(".index")]
    measure = line_up_measure(opened, choice)
    if measure is None:
        lacking = ", ".join(plain(o.entry.name) for o in opened if o.levels(choice) is None)
        st.caption(f"{lacking} record{'s' if ',' not in lacking else ''} no alpha_bar_t, so no noise level: the traces are lined up "
                   "by t instead (the step of each whose t is nearest to A's).")
    what = "nearest in $t$" if measure is None else f"nearest in {MEASURES[measure].text}"
    if measure is not None and playable(opened, tensor) and (reference.info.is_2d or shared.indices):
        st.markdown(f"Every trace at the same noise level ({MEASURES[measure].text}), played in the browser; pause to line the "
                    "tabs below up on **A**'s step nearest to it.")
        with guard("player"):
            compare_player(key, opened, tensor, samples, shared, measure)
        i = current_index(key, reference.info.rows)
    else:
        st.markdown(f"Timeline of **{plain(reference.entry.name)}** ({reference.info.rows} steps); every other trace shows its step {what}.")
        i = scrubber_ui(key, reference.t)
    on_state([o.entry.name for o in opened], i)
    matched = alignment(reference, others, i, measure)
    with st.container(key="compare-alignment"):
        st.markdown("  \n".join(alignment_lines(reference, others, i, matched, measure)))
    partings = {o.entry.name: parting_of(reference, o) for o in others}
    with st.container(key="compare-parting"):
        st.markdown("  \n".join(parting_line(doc, letter) for letter, doc in zip("BCDEFGH", partings.values())))
    without = [plain(o.entry.name) for o in opened if tensor not in o.info.tensors]
    if without:  # a run that recorded less by choice (noisescope sample --record): nothing of this tensor to compare
        st.info(f"{tensor} is not recorded in {', '.join(without)}: pick a tensor every compared trace records in the sidebar "
                "(x_t is in every trace).")
        return
    warning = clipping_warning(opened, legend_labels(opened)) if tensor == "x0_pred" else None
    if warning:
        st.warning(plain(warning), icon=":material/warning:")
    pair = round_trip_pair(opened, entries)
    titles = ["Side by side", "Sweep grid", "Distances over t" if measure is None else "Distances over noise level"]
    tabs = st.tabs(["Round trip", *titles] if pair is not None else titles)
    if pair is not None:
        with tabs[0], guard("round trip"):
            round_trip_ui(pair[0], pair[1], int(reference.t[i]), samples)
        tabs = tabs[1:]
    with tabs[0], guard("side by side"):
        side_by_side(reference, others, i, matched, tensor, samples, shared, measure)
    with tabs[1], guard("sweep grid"):
        sweep(reference, others, i, matched, tensor, samples, shared, labels, measure)
    with tabs[2], guard("distances"), st.container(key=DISTANCES):
        distances(reference, others, i, tensor, shared, measure, partings)


def noise_levels(o: Opened, measure: str = DEFAULT) -> np.ndarray | None:
    """Each step's noise level in ``measure`` (log SNR by default), from the recorded alpha_bar_t; None where the trace
    does not record it."""
    return o.levels(measure)


def playable(opened: Sequence[Opened], tensor: str) -> bool:
    """All finished, all drawable by the player, all of one kind (2-D points, or images of one channel count), all
    recording ``tensor`` and alpha_bar_t (the noise level they are lined up by)."""
    kinds = {(o.info.is_2d, o.info.sample_shape[0] if o.info.is_image else 0) for o in opened}
    return (len(kinds) == 1 and all(supported(o.info) and tensor in o.info.tensors for o in opened)
            and all(noise_levels(o) is not None for o in opened))


def compare_player(key: str, opened: Sequence[Opened], tensor: str, samples: Sequence[int], shared: Shared,
                   measure: str = DEFAULT) -> None:
    """The traces' ``tensor`` in one player, lined up by noise level in ``measure``; the position sent back picks A's step
    (``key``.index). Image tracks show the run's ``samples``, each trace its own rows of them (``shared``)."""
    levels = [noise_levels(o, measure) for o in opened]
    steps, level = compare_steps([v for v in levels if v is not None], [loaders.has_final(o.handle) for o in opened], MEASURES[measure])
    letters = list("ABCDEFGH"[: len(opened)])
    names = [f"{letter}: {plotly_text(label)}" for letter, label in zip(letters, legend_labels(opened), strict=True)]
    reference = opened[0]
    i = current_index(key, reference.info.rows)
    at = np.flatnonzero(steps[:, 0] == i)
    first = steps[int(at[0]) if at.size else 0]  # each trace's step at the position shown first
    if reference.info.is_2d:
        box = extent(*(loaders.trajectory(o.info.path, o.info.inode, o.info.rows, tensor) for o in opened))
        tracks = [points_track(o.handle, o.info, [tensor], class_labels(o), "none", True, name, box, step=int(s))
                  for o, name, s in zip(opened, names, first, strict=True)]
    else:
        picked = _shown(samples, shared)
        tracks = [image_track(o.handle, o.info, [tensor], shared.rows_of(k, picked), class_labels(o), name, ranges_of=reference.info,
                              step=int(s))
                  for k, (o, name, s) in enumerate(zip(opened, names, first, strict=True))]
    cursor = levels[0] if levels[0] is not None else reference.t
    spec = compare_spec(tracks, letters, [o.t for o in opened], steps, level, int(at[0]) if at.size else 0, DISTANCES, MEASURES[measure],
                        cursor_x=cursor)
    sent = player_ui(key, spec)
    if sent is not None:
        st.session_state[f"{key}.index"] = int(min(steps[sent, 0], reference.info.rows - 1))


def _images(o: Opened, step: int, tensor: str, rows: Sequence[int]) -> np.ndarray:
    """``tensor`` at ``step`` of ``o`` for its batch ``rows`` (``Shared.rows_of``), [N, *D]."""
    return loaders.step_tensors(o.handle, step, [tensor], rows, o.info.rows)[tensor]


NONE_SHARED: Final = "No sample is kept by every compared trace (see above): nothing to compare here."


def where(o: Opened, step: int, measure: str | None) -> str:
    """A trace's step for plot titles: 'step 3, σ = 2.1' (its noise level in ``measure``), or 't = 35' when lined up by t."""
    levels = o.levels(measure) if measure is not None else None
    if levels is None or measure is None:
        return f"t = {int(o.t[step])}"
    return f"step {step + 1}, {MEASURES[measure].html} = {fmt(float(levels[step]))}"


def side_by_side(reference: Opened, others: Sequence[Opened], i: int, matched: Sequence[int], tensor: str, samples: Sequence[int],
                 shared: Shared, measure: str | None = DEFAULT) -> None:
    """The run's ``samples`` of each trace (its own rows of them) beside A's, and their difference from A's; 2-D traces:
    each trace's whole point cloud."""
    if reference.info.is_2d:
        cols = st.columns(len(others) + 1)
        bounds = extent(loaders.trajectory(reference.info.path, reference.info.inode, reference.info.rows, tensor))
        for col, o, step in zip(cols, [reference, *others], [i, *matched], strict=True):
            cloud = loaders.trajectory(o.info.path, o.info.inode, o.info.rows, tensor)
            title = f"{plotly_text(o.entry.name)}, {where(o, step, measure)}"
            col.plotly_chart(point_cloud_figure(cloud[step], cloud[step : step + 1], None, "none", bounds, title=title, height=340),
                             config=CHART_CONFIG, key=f"cmp.pts.{o.entry.name}")
        return
    if not shared.indices:
        st.caption(NONE_SHARED)
        return
    picked = _shown(samples, shared)
    ref_images = as_images(_images(reference, i, tensor, shared.rows_of(0, picked)))
    fixed = loaders.colour_ranges(reference.info.path, reference.info.inode, reference.info.rows, (tensor,))
    low, high = fixed[tensor]
    ref_panel = Panel(f"A: {symbols.html(tensor, False)} at {where(reference, i, measure)}", ref_images, low, high, colours_for(tensor))
    for k, (letter, o, step) in enumerate(zip("BCDEFGH", others, matched, strict=False), start=1):
        images = as_images(_images(o, step, tensor, shared.rows_of(k, picked)))  # the same run samples as A's, in order
        panel = Panel(f"{letter}: {symbols.html(tensor, False)} at {where(o, step, measure)}", images, low, high, colours_for(tensor))
        if images.shape[1:] != ref_images.shape[1:]:
            st.warning(f"{plain(o.entry.name)}: sample shape {images.shape[1:]} differs from A's {ref_images.shape[1:]}; no difference image.")
            st.plotly_chart(image_grids_figure([ref_panel, panel], per_row=3), config=CHART_CONFIG, key=f"cmp.{letter}")
            continue
        diff = images - ref_images
        bound = float(np.nanmax(np.abs(diff))) if diff.size else 1.0
        bound = bound if bound > 0 else 1.0
        panels = [ref_panel, panel, Panel(f"{letter} − A", diff, -bound, bound, DIVERGING)]
        st.plotly_chart(image_grids_figure(panels, per_row=3), config=CHART_CONFIG, key=f"cmp.{letter}")
        rms = float(np.sqrt(np.mean(diff.astype(np.float64) ** 2))) if diff.size else 0.0
        st.caption(f"{letter} − A over the samples shown: RMS {rms:.4g}, max |·| {bound:.4g}")


def sweep(reference: Opened, others: Sequence[Opened], i: int, matched: Sequence[int], tensor: str, samples: Sequence[int],
          shared: Shared, labels: np.ndarray | None = None, measure: str | None = DEFAULT) -> None:
    """One column per trace, one row per sample of the run (each trace's own row of it), labelled with A's class label."""
    if reference.info.is_2d:
        st.info("The sweep grid shows images; for 2-D traces see Side by side.")
        return
    if not shared.indices:
        st.caption(NONE_SHARED)
        return
    picked = _shown(samples, shared)
    fixed = loaders.colour_ranges(reference.info.path, reference.info.inode, reference.info.rows, (tensor,))
    low, high = fixed[tensor]
    columns = []
    traces = [reference, *others]
    for k, (o, step, label) in enumerate(zip(traces, [i, *matched], legend_labels(traces), strict=True)):
        columns.append(Panel(f"{plotly_text(label)}<br>{where(o, step, measure)}", as_images(_images(o, step, tensor, shared.rows_of(k, picked))),
                             low, high, colours_for(tensor)))
    rows = [sample_label(k, labels, row) for k, row in zip(picked, shared.rows_of(0, picked), strict=True)]
    st.plotly_chart(sweep_grid_figure(columns, rows), config=CHART_CONFIG, key="cmp.sweep")
    st.caption("One column per trace; each row one sample of the run, the same in every column, whichever row of its trace "
               "holds it (the same x_T when the runs share a seed).")


def _shown(samples: Sequence[int], shared: Shared) -> list[int]:
    """The run's samples drawn: those picked that every trace keeps, or the first shared one when none is picked."""
    return [s for s in samples if s in shared.indices] or shared.indices[:1]


def parting_of(reference: Opened, other: Opened) -> dict[str, Any]:
    """``noisescope diff`` of A and ``other`` (viewer/loaders.py ``parting``)."""
    a, b = reference.info, other.info
    return loaders.parting(a.path, a.inode, a.rows, b.path, b.inode, b.rows)


def parting_line(doc: Mapping[str, Any], letter: str) -> str:
    """One line of what ``noisescope diff`` says of A against trace ``letter``: where they part, or that they agree."""
    if "error" in doc:
        return f"**A vs {letter}** (`noisescope diff`): not compared: {plain(doc['error'])}"
    head = f"**A vs {letter}** (`noisescope diff`, lined up by {doc['lined_up_by']}, tolerance {doc['tolerance']:g}): "
    parts = doc["parts"]
    if parts is None:
        return head + "they agree at every step compared."
    beyond = sorted(parts["beyond"].items(), key=lambda kv: -kv[1] if isinstance(kv[1], float) else -math.inf)
    values = ", ".join(f"`{name}` by {value if isinstance(value, str) else f'{value:.3g}'}" for name, value in beyond[:4])
    if parts["final"]:
        return head + f"they part only in their final samples ({values})."
    return head + (f"they part at A's step {parts['step_a'] + 1} (t = {parts['t_a']}) and {letter}'s step {parts['step_b'] + 1} "
                   f"(t = {parts['t_b']}): {values} (marked on the distance plot).")


def distances(reference: Opened, others: Sequence[Opened], i: int, tensor: str, shared: Shared, measure: str | None = DEFAULT,
              partings: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Per step of A: the mean RMS distance to each other trace at its step nearest in noise level (``measure``; in t where
    None), over the run's samples every trace keeps (``shared``), over A's noise level, the cursor at A's step; where
    ``partings`` says a trace parts from A, a mark at A's step."""
    if not shared.indices:
        st.caption(NONE_SHARED)
        return
    curves = {}
    parts: dict[str, float] = {}
    names = dict(zip((o.entry.name for o in (reference, *others)), legend_labels([reference, *others]), strict=True))
    for k, o in enumerate(others, start=1):
        x, d = loaders.aligned_distance(reference.info.path, reference.info.inode, reference.info.rows, o.info.path, o.info.inode, o.info.rows,
                                        tensor, measure, tuple(shared.rows[0]), tuple(shared.rows[k]))
        label = plotly_text(f"{names[o.entry.name]} − {names[reference.entry.name]}")
        curves[label] = (x, d)
        found = (partings or {}).get(o.entry.name, {}).get("parts")
        if found is not None and not found["final"] and found["step_a"] < len(x):
            parts[label] = float(x[found["step_a"]])
    title = f"‖{symbols.HTML.get(tensor, tensor)}(B) − {symbols.HTML.get(tensor, tensor)}(A)‖ / √d"
    spec = MEASURES[measure] if measure is not None else None
    levels = reference.levels(measure) if measure is not None else None
    cursor = float(levels[i]) if levels is not None else float(reference.t[i])
    st.plotly_chart(distance_figure(curves, cursor, y_title=title, measure=spec, parts=parts), config=CHART_CONFIG, key="cmp.dist")
    over = "the batch" if shared.kept_by_all([reference, *others]) else f"samples {samples_text(shared.indices)} (those every trace keeps)"
    if spec is None or levels is None:
        st.caption(f"Per step of A: the mean over {over} of the RMS distance to the other trace at its step nearest in t.")
        return
    off_axis = levels[~placeable(levels, spec)]
    st.caption(f"Per step of A: the mean over {over} of the RMS distance to the other trace at its step nearest in {spec.text}, "
               f"plotted over A's {spec.text} (noisy on the left, clean on the right)"
               + (f"; {off_axis.size} step(s) of A at {spec.text} = {fmt(float(off_axis[0]))} (pure noise) have no place on the axis."
                  if off_axis.size else "."))


# -- a DDIM inversion's round trip -------------------------------------------------------------------------------


def link_of(config: Mapping[str, Any]) -> tuple[str, str] | None:
    """(role, the other trace's path relative to this one's folder) from a trace config's ``linked``, or None."""
    linked = config.get("linked") if isinstance(config, Mapping) else None
    if isinstance(linked, Mapping) and isinstance(linked.get("role"), str) and isinstance(linked.get("trace"), str):
        return str(linked["role"]), str(linked["trace"])
    return None


def is_inversion(config: Mapping[str, Any]) -> bool:
    link = link_of(config)
    return describe.sampler_settings(config).get("sampler") == "ddim-inversion" or (link is not None and link[0] == "inversion")


def _linked_path(path: Path | str, config: Mapping[str, Any]) -> Path | None:
    link = link_of(config)
    return None if link is None else (Path(path).parent / link[1]).resolve()


def _entry_at(path: Path | None, entries: Sequence[TraceEntry]) -> TraceEntry | None:
    """The listed trace at ``path``: only traces under the viewer's roots are opened, whatever a config names."""
    if path is None:
        return None
    return next((e for e in entries if Path(e.path).resolve() == path), None)


def linked_entry(entry: TraceEntry, entries: Sequence[TraceEntry]) -> TraceEntry | None:
    """The listed trace ``entry``'s config links it to (an inversion's re-sampling, or the other way), if any."""
    try:
        config = loaders.static_info(loaders.open_handle(entry.path))["config"]
    except Exception:  # noqa: BLE001 - an unreadable trace is reported where it is opened
        return None
    return _entry_at(_linked_path(entry.path, config), entries)


def round_trip_pair(opened: Sequence[Opened], entries: Sequence[TraceEntry]) -> tuple[Opened, Opened | None] | None:
    """(inversion, its re-sampling or None) when an inversion trace, or a re-sampling linked to one, is compared."""
    inversion = next((o for o in opened if is_inversion(o.info.config)), None)
    if inversion is None:
        resample = next((o for o in opened if (link_of(o.info.config) or ("", ""))[0] == "resample"), None)
        if resample is None:
            return None
        found = _open_linked(resample, opened, entries)
        return (found, resample) if found is not None else None
    return inversion, _open_linked(inversion, opened, entries)


def _open_linked(o: Opened, opened: Sequence[Opened], entries: Sequence[TraceEntry]) -> Opened | None:
    target = _linked_path(o.info.path, o.info.config)
    if target is None:
        return None
    among = next((p for p in opened if Path(p.info.path).resolve() == target), None)
    if among is not None:
        return among
    entry = _entry_at(target, entries)
    found = open_all([entry]) if entry is not None else []
    return found[0] if found else None


def _state(o: Opened, where: int, rows: Sequence[int]) -> np.ndarray:
    """x of ``o`` at row ``where`` (or its final samples, ``SAMPLES``), its batch ``rows`` of it."""
    if where == SAMPLES:
        value = loaders.final_array(o.info.path, o.info.inode, "samples", loaders.has_final(o.handle))
        if value is None:
            raise ValueError(f"{o.entry.name} has no samples yet")
        array = np.asarray(value, dtype=np.float32)
    else:
        array = loaders.read_row(o.handle, "x_t", where, o.info.rows)
    return array[list(rows)]


def _states(o: Opened) -> dict[int, int]:
    t_prev = loaders.scalars(o.info.path, o.info.inode, o.info.rows).get("t_prev", np.zeros(0, dtype=np.int64))
    return states(o.t, t_prev, loaders.has_final(o.handle))


def round_trip_errors(inversion: Opened, resample: Opened) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, RMS error, max error) at every timestep both traces hold x at, t ascending, over the run's samples both keep;
    once per row counts."""
    shared = shared_of([inversion, resample])

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = [(t, *state_error(_state(resample, b, shared.rows[1]), _state(inversion, a, shared.rows[0])))
                for t, a, b in line_up(_states(inversion), _states(resample))]
        t, rms, top = (np.asarray(column) for column in zip(*rows)) if rows else (np.zeros(0),) * 3
        return t, rms, top

    key = ("round-trip", resample.info.path, resample.info.inode, inversion.info.rows, resample.info.rows,
           loaders.has_final(inversion.handle), loaders.has_final(resample.handle))
    return loaders.memo(inversion.handle, key, compute)  # type: ignore[no-any-return]


def round_trip_ui(inversion: Opened, resample: Opened | None, cursor_t: int, samples: Sequence[int]) -> None:
    """The input, the x_T found, the re-sampled data and their difference; the error per timestep."""
    if inversion.info.rows == 0 or not loaders.has_final(inversion.handle):
        st.info(f"{plain(inversion.entry.name)} has not found its x_T yet (the inversion is still running).")
        return
    t_end = int(max(_states(inversion)))
    if resample is None:
        link = link_of(inversion.info.config)
        named = f" ({plain(link[1])})" if link else ""
        st.info(f"The re-sampling trace{named} linked to {plain(inversion.entry.name)} is not among the viewer's traces: "
                "start the viewer on its folder to see the round trip.")
        return
    st.markdown(f"**{plain(inversion.entry.name)}** inverts its input from $t = 0$ up to $t = {t_end}$; "
                f"**{plain(resample.entry.name)}** samples back down from the $x_T$ it found.")
    if not loaders.has_final(resample.handle):
        st.info(f"{plain(resample.entry.name)} has not finished sampling back yet.")
        return
    shared = shared_of([inversion, resample])  # by the run's sample index, as everywhere in Compare
    if not shared.indices:
        st.info(samples_note([inversion, resample], shared, [plain(inversion.entry.name), plain(resample.entry.name)]) or "")
        return
    picked = _shown(samples, shared)
    input_ = _state(inversion, 0, shared.rows_of(0, picked))
    x_T = _state(inversion, SAMPLES, shared.rows_of(0, picked))  # noqa: N806
    resampled = _state(resample, SAMPLES, shared.rows_of(1, picked))
    if inversion.info.is_2d:
        st.plotly_chart(round_trip_points_figure(input_, x_T, resampled), config=CHART_CONFIG, key="cmp.roundtrip.points")
    else:
        st.plotly_chart(round_trip_images_figure(as_images(input_), as_images(x_T), as_images(resampled), t_end),
                        config=CHART_CONFIG, key="cmp.roundtrip.images")
    rms, top = state_error(resampled, input_)
    st.caption(f"Round trip over the samples shown, re-sampled − input: RMS {rms:.4g}, max |·| {top:.4g}")
    t, rms_t, top_t = round_trip_errors(inversion, resample)
    st.plotly_chart(round_trip_error_figure(t, rms_t, top_t, cursor_t), config=CHART_CONFIG, key="cmp.roundtrip.error")
    st.caption("At each timestep both traces visit: the re-sampled x against the inversion's x there (mean over the batch "
               "of the RMS distance, and the largest difference). It is 0 at the largest t, where the re-sampling starts "
               "from the x_T found, and grows as the two ways, which evaluate the network at different ends of each step, part.")
