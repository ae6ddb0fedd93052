"""The in-browser player: a Streamlit custom component (viewer/player_frontend, plain HTML/JS) that animates a trace's frames.

``player_args`` builds what the page is sent (the panels, their colour ranges and
scales, the mosaic layout, the t of each step, the samples and their labels, where the
chunk files are); the frames themselves are fetched by the page from the cache folder
viewer/player.py writes, served as the files of a second component, ``frames``.
``player_ui`` draws the component and returns the step it last sent back (on pause
or scrub), which the rest of the page follows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
import streamlit as st
import streamlit.components.v1 as components

from viewer import loaders, player, symbols
from viewer.player import CACHE_DIR

FRONTEND: Final = Path(__file__).resolve().parents[1] / "player_frontend"
CACHE_DIR.mkdir(parents=True, exist_ok=True)
_component = components.declare_component("player", path=str(FRONTEND))
_frames = components.declare_component("frames", path=str(CACHE_DIR))  # only its files are used: /component/<name>/<key>/chunk_k.json
FRAMES_NAME: Final = f"{__name__}.frames"
HEIGHT_PER_ROW: Final = 300


def supported(info: loaders.TraceInfo) -> bool:
    """The player draws finished one-channel image traces; 2-D points, RGB and live traces keep the server-side view."""
    return info.is_image and info.sample_shape[0] == 1 and info.status != "running" and info.rows > 0


def player_args(handle: loaders.TraceHandle, info: loaders.TraceInfo, names: list[str], samples: list[int],
                labels: np.ndarray | None, step: int, background: bool = True) -> dict[str, Any]:
    """Write (or reuse) the chunk files of this selection and return the component's arguments."""
    rows = info.rows
    _, h, w = info.sample_shape
    layout = player.tile_layout(len(samples), h, w)
    fixed = loaders.colour_ranges(info.path, info.inode, rows, tuple(n for n in names if player.is_noise(n)))
    titles = {n: symbols.html(n, with_name=False) for n in names}
    panels = player.panels_for(names, titles, fixed, layout["width"])
    written = loaders.has_final(handle)
    final_samples = loaders.final_array(info.path, info.inode, "samples", written) if written else None
    index = np.asarray(samples, dtype=np.int64)

    def read_chunk(a: int, b: int) -> list[tuple[np.ndarray, list[float]]]:
        return [player.frame_row(loaders.step_tensors(handle, i, names, samples, rows), panels, layout) for i in range(a, b)]

    def final() -> tuple[np.ndarray, list[float]]:
        assert final_samples is not None
        values = np.asarray(final_samples, dtype=np.float32)[index]
        return player.frame_row({p.name: values for p in panels if not player.is_noise(p.name)}, panels, layout)

    key = player.frames_key(info.path, info.inode, rows, names, samples, [p.as_dict() for p in panels], player.CHUNK_STEPS, final_samples is not None)
    player.write_frames(key, rows, read_chunk, final if final_samples is not None else None, background=background)
    t = loaders.scalars(info.path, info.inode, rows).get("t", np.arange(rows))
    t_prev = loaders.scalars(info.path, info.inode, rows).get("t_prev")
    return {
        "frames": f"../{FRAMES_NAME}/{key}/",
        "rows": rows,
        "chunk": player.CHUNK_STEPS,
        "chunks": len(player.chunks(rows)),
        "final": final_samples is not None,
        "panels": [p.as_dict() for p in panels],
        "luts": {scale: player.colour_lut(scale) for scale in ("grey", "diverging")},
        "layout": layout,
        "t": [int(v) for v in t],
        "t_prev": [int(v) for v in t_prev] if t_prev is not None else None,
        "samples": [int(s) for s in samples],
        "labels": [int(labels[s]) if labels is not None and s < len(labels) else -1 for s in samples],
        "step": int(step),
        "height": HEIGHT_PER_ROW * max(1, -(-len(panels) // 4)) + 150,
    }


def player_ui(key: str, args: dict[str, Any]) -> int | None:
    """Draw the player; return the step it sent back when it was paused or scrubbed (once per send), else None."""
    value = _component(key=f"{key}.player", default=None, **{"spec": args})
    seq_key = f"{key}.player_seq"
    got = player.step_from_value(value, st.session_state.get(seq_key))
    if got is None:
        return None
    step, seq = got
    st.session_state[seq_key] = seq
    return min(step, args["rows"] - 1)
