"""The in-browser player: a Streamlit custom component (viewer/player_frontend, plain HTML/JS) that animates traces' frames.

A player holds one or more tracks on one timeline of positions. The playback page has
one track (position i is step i, then the final samples); Compare has one track per
trace, lined up by noise level in the measure picked (viewer/noise.py; viewer/player.py
``timeline``), every trace advancing to the same noise level together. A track is either image panels (one- or three-channel
tensors, PNG chunk files) or a 2-D point cloud (x_t with its trajectory and x0_pred as
arrows or ghost points, 16-bit chunk files).

``image_track`` and ``points_track`` write (or reuse) a track's chunk files, which the
page fetches from the cache folder viewer/player.py writes (served as the files of a
second component, ``frames``), and return what the page is sent; ``player_ui`` draws
the component and returns the position it last sent back (on pause or scrub), which the
rest of the page follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import streamlit as st
import streamlit.components.v1 as components

from tracer.trace import schema
from viewer import loaders, player, symbols
from viewer.figures.points import extent
from viewer.figures.scalars import step_axis
from viewer.noise import DEFAULT, MEASURES, MeasureSpec, fmt
from viewer.player import CACHE_DIR

FRONTEND: Final = Path(__file__).resolve().parents[1] / "player_frontend"
CACHE_DIR.mkdir(parents=True, exist_ok=True)
_component = components.declare_component("player", path=str(FRONTEND))
_frames = components.declare_component("frames", path=str(CACHE_DIR))  # only its files are used: /component/<name>/<key>/chunk_k.json
FRAMES_NAME: Final = f"{__name__}.frames"
HEIGHT_PER_ROW: Final = 300
POINTS_HEIGHT: Final = 520
CURSOR_CONTAINER: Final = "scalar-strips"  # the st.container key around the scalar plots whose cursor the player moves


def supported(info: loaders.TraceInfo) -> bool:
    """The player draws finished traces of images (one or three channels) or 2-D points; live traces keep the server-side view."""
    drawable = info.is_2d or (info.is_image and info.sample_shape[0] in (1, 3))
    return drawable and info.status != "running" and info.rows > 0


def _t(info: loaders.TraceInfo) -> tuple[np.ndarray, np.ndarray | None]:
    scalars = loaders.scalars(info.path, info.inode, info.rows)
    return scalars.get("t", np.arange(info.rows)), scalars.get("t_prev")


def muted_steps(info: loaders.TraceInfo) -> list[int]:
    """Steps where sigma = 0: the noise z drawn there (``noise``) adds nothing (sigma z = 0), so its panel is hidden with a note."""
    sigma = loaders.scalars(info.path, info.inode, info.rows).get("sigma")
    return [] if sigma is None else [int(i) for i in np.flatnonzero(np.asarray(sigma) == 0)]


def _final(handle: loaders.TraceHandle, info: loaders.TraceInfo) -> np.ndarray | None:
    written = loaders.has_final(handle)
    return loaders.final_array(info.path, info.inode, "samples", written) if written else None


def _frames_of(kind: str, title: str, key: str, rows: int, read_chunk: Any, final: Any, background: bool,
               first: list[int]) -> dict[str, Any]:
    """Write (or reuse) a track's chunk files under ``key`` (``first`` now: those of the step shown first); the part of
    its spec that says where they are."""
    player.write_frames(key, rows, read_chunk, final, background=background, first=first)
    return {"kind": kind, "title": title, "key": key, "frames": f"../{FRAMES_NAME}/{key}/", "rows": rows, "chunk": player.CHUNK_STEPS,
            "chunks": len(player.chunks(rows)), "final": final is not None}


def image_track(handle: loaders.TraceHandle, info: loaders.TraceInfo, names: Sequence[str], samples: Sequence[int],
                labels: np.ndarray | None, title: str = "", ranges_of: loaders.TraceInfo | None = None,
                background: bool = True, step: int = 0) -> dict[str, Any]:
    """Image panels of ``names`` for ``samples``; noise-like panels on the fixed range of ``ranges_of`` (default: this trace).
    ``step``: the step the page shows first (``rows``: the final samples), whose chunk is written before it is drawn."""
    rows, (channels, h, w) = info.rows, info.sample_shape
    layout = player.tile_layout(len(samples), h, w)
    source = ranges_of or info
    fixed = loaders.colour_ranges(source.path, source.inode, source.rows, tuple(n for n in names if player.is_noise(n)))
    titles = {n: symbols.html(n, with_name=False) for n in names}
    panels = player.panels_for(names, titles, fixed, layout["width"])
    final_samples = _final(handle, info)
    index = np.asarray(samples, dtype=np.int64)

    def read_chunk(a: int, b: int) -> player.Chunk:  # one step read and encoded at a time (image_chunk takes a generator)
        return player.image_chunk(player.frame_row(loaders.step_tensors(handle, i, names, samples, rows), panels, layout, channels)
                                  for i in range(a, b))

    def final() -> player.Chunk:
        assert final_samples is not None
        values = np.asarray(final_samples, dtype=np.float32)[index]
        return player.image_chunk([player.frame_row({p.name: values for p in panels if not player.is_noise(p.name)}, panels, layout, channels)])

    key = player.frames_key(info.path, info.inode, rows, names, samples, [p.as_dict() for p in panels], player.CHUNK_STEPS,
                            final_samples is not None, channels)
    return {
        **_frames_of("images", title, key, rows, read_chunk, final if final_samples is not None else None, background,
                     player.chunks_needed(step, rows)),
        "channels": channels,
        "panels": [p.as_dict() for p in panels],
        "layout": layout,
        "samples": [int(info.sample_indices[s]) if s < len(info.sample_indices) else int(s) for s in samples],  # the run's indices
        "labels": [int(labels[s]) if labels is not None and s < len(labels) else -1 for s in samples],
        "muted": {"noise": muted_steps(info)} if "noise" in names else {},
    }


def points_track(handle: loaders.TraceHandle, info: loaders.TraceInfo, series: Sequence[str], labels: np.ndarray | None,
                 x0_mode: str = "arrows", trails: bool = True, title: str = "",
                 bounds: tuple[float, float, float, float] | None = None, background: bool = True, step: int = 0) -> dict[str, Any]:
    """A 2-D point cloud: ``series[0]`` (x_t) drawn as points with its trajectory so far, ``series[1]`` (x0_pred, if given)
    as arrows or ghost points; all on a fixed extent (the whole trace's, unless ``bounds``). ``step``: as for ``image_track``."""
    rows = info.rows
    series = [s for s in series if s in info.tensors]
    clouds = {s: loaders.trajectory(info.path, info.inode, rows, s) for s in series}
    final_samples = _final(handle, info)
    box = bounds or extent(*clouds.values())

    def read_chunk(a: int, b: int) -> player.Chunk:
        return player.points_chunk([np.stack([clouds[s][i] for s in series]) for i in range(a, b)], box)

    def final() -> player.Chunk:
        assert final_samples is not None
        values = np.asarray(final_samples, dtype=np.float64)
        return player.points_chunk([np.stack([values] + [np.full_like(values, np.nan)] * (len(series) - 1))], box)

    key = player.frames_key(info.path, info.inode, rows, "points", series, box, player.CHUNK_STEPS, final_samples is not None)
    return {
        **_frames_of("points", title, key, rows, read_chunk, final if final_samples is not None else None, background,
                     player.chunks_needed(step, rows, trails)),
        "series": series,
        "titles": [symbols.html(s, with_name=False) for s in series],
        "n": info.batch,
        "bounds": list(box),
        "x0_mode": x0_mode,
        "trails": trails,
        "labels": [int(v) for v in labels] if labels is not None else [],
        "muted": {},
    }


def step_labels(t: np.ndarray, t_prev: np.ndarray | None, final: bool, index: np.ndarray | None = None, planned: int = 0) -> list[str]:
    """The player's label of each position: 'Step 4 of 10 · t = 30 → t_prev = 25' (t_prev = -1: the clean end), then the final
    samples. In a trace that keeps every K-th step (``index``: steps/index) a position is named by the run's step:
    'Step 11 of 50 (recorded 2 of 6) · ...'."""
    rows = len(t)
    out = []
    for i in range(rows):
        tp = int(t_prev[i]) if t_prev is not None else -1
        step = f"Step {i + 1} of {rows}" if index is None else f"Step {int(index[i]) + 1} of {planned or '?'} (recorded {i + 1} of {rows})"
        out.append(f"{step} · t = {int(t[i])} → " + ("the clean end x₀ (t_prev = −1)" if tp < 0 else f"t_prev = {tp}"))
    if final:
        last = rows if index is None or not rows else int(index[rows - 1]) + 1
        out.append(f"Final sample (after step {last} of {last if index is None else planned or '?'})")
    return out


def single_spec(track: dict[str, Any], info: loaders.TraceInfo, step: int) -> dict[str, Any]:
    """One trace: position i is step i, then its final samples; the scalar plots' cursor follows at each step's x."""
    t, t_prev = _t(info)
    x, _ = step_axis(t)
    positions = info.rows + (1 if track["final"] else 0)
    cursor = [float(v) for v in x] + ([float(x[-1])] if track["final"] else [])
    index = loaders.scalars(info.path, info.inode, info.rows).get(schema.STEP_INDEX)  # a trace that skips steps (--every K)
    labels = step_labels(t, t_prev, track["final"], index, info.run_steps)
    return _spec([track], positions, labels, step, {"container": CURSOR_CONTAINER, "x": cursor})


def compare_steps(levels: Sequence[np.ndarray], finals: Sequence[bool], measure: MeasureSpec = MEASURES[DEFAULT]) -> tuple[np.ndarray, np.ndarray]:
    """The traces lined up by noise level in ``measure`` (``player.timeline``), then one last position: each trace's final
    samples (step = rows) where it has them, else its last step. Returns (steps [P, K], level [P], the clean end's level
    at the end: log SNR +inf, sigma and flow time 0)."""
    steps, level = player.timeline(levels, noisy_high=measure.noisy_high)
    last = np.array([[len(v) if f else len(v) - 1 for v, f in zip(levels, finals, strict=True)]], dtype=np.int64)
    return np.concatenate([steps, last]), np.append(level, measure.clean_end)


def cursor_values(x: np.ndarray) -> list[float]:
    """Cursor positions the page can draw: each non-finite x (pure noise: log SNR -inf, sigma inf) as its nearest finite one."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(x))
    if not finite.size:
        return [0.0] * len(x)
    return [float(x[k]) if np.isfinite(x[k]) else float(x[finite[np.argmin(np.abs(finite - k))]]) for k in range(len(x))]


def compare_spec(tracks: Sequence[dict[str, Any]], letters: Sequence[str], t: Sequence[np.ndarray], steps: np.ndarray,
                 level: np.ndarray, position: int, cursor_container: str | None = None, measure: MeasureSpec = MEASURES[DEFAULT],
                 cursor_x: np.ndarray | None = None) -> dict[str, Any]:
    """Several traces on one timeline of noise levels (in ``measure``); the label names the level and each trace's step and
    t. The cursor of the plot in ``cursor_container`` moves to A's ``cursor_x`` (its t by default) at A's step."""
    labels = []
    for p in range(len(steps)):
        parts = []
        for letter, times, j in zip(letters, t, steps[p], strict=True):
            parts.append(f"{letter} final sample" if j >= len(times) else f"{letter} step {int(j) + 1} (t = {int(times[j])})")
        final = p == len(steps) - 1 and float(level[p]) == measure.clean_end  # compare_steps' last position
        head = "Final samples" if final else f"{measure.text} = {fmt(float(level[p]))}"
        labels.append(f"{head} · " + " · ".join(parts))
    tracks = [dict(track, steps=[int(j) for j in steps[:, k]]) for k, track in enumerate(tracks)]
    ref_x = cursor_values(t[0] if cursor_x is None else cursor_x)
    cursor = None
    if cursor_container is not None and ref_x:
        cursor = {"container": cursor_container, "x": [ref_x[min(int(j), len(ref_x) - 1)] for j in steps[:, 0]]}
    return _spec(tracks, len(steps), labels, position, cursor)


def _spec(tracks: Sequence[dict[str, Any]], positions: int, labels: list[str], step: int, cursor: dict[str, Any] | None) -> dict[str, Any]:
    rows_of_panels = sum(1 if tr["kind"] == "points" else max(1, -(-len(tr["panels"]) // 4)) for tr in tracks)
    points = any(tr["kind"] == "points" for tr in tracks)
    return {
        "tracks": list(tracks),
        "positions": positions,
        "labels": labels,
        "luts": {scale: player.colour_lut(scale) for scale in ("grey", "diverging")},
        "step": int(min(max(step, 0), positions - 1)),
        "cursor": cursor,
        "height": (POINTS_HEIGHT if points else HEIGHT_PER_ROW * max(1, rows_of_panels)) + 150,
    }


def player_ui(key: str, spec: dict[str, Any]) -> int | None:
    """Draw the player; return the position it sent back when it was paused or scrubbed (once per send), else None."""
    value = _component(key=f"{key}.player", default=None, spec=spec)
    if value is not None:  # the page has shown a frame (it sends its step back once its first frame is up)
        for track in spec["tracks"]:
            if "key" in track:
                player.frames_shown(track["key"])
    seq_key = f"{key}.player_seq"
    got = player.step_from_value(value, st.session_state.get(seq_key))
    if got is None:
        return None
    step, seq = got
    st.session_state[seq_key] = seq
    return min(step, spec["positions"] - 1)
