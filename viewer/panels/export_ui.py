"""Export controls: the current trajectory as GIF or MP4, and the current view as PNG.

The files are made only when a download button is clicked (Streamlit calls the data
function then), so scrubbing never pays for them.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
import streamlit as st

from viewer import export, loaders
from viewer.figures.points import extent
from viewer.playback_view import Display, StepView, value_range

MAX_FRAMES = 200  # default stride keeps an export under this many frames


def default_stride(rows: int) -> int:
    return max(1, -(-rows // MAX_FRAMES))


def export_ui(handle: loaders.TraceHandle, info: loaders.TraceInfo, i: int, view: StepView, display: Display, name: str) -> None:
    stem = PurePosixPath(name).stem
    with st.expander("Export: GIF, MP4, PNG"):
        cols = st.columns(4, vertical_alignment="bottom")
        if info.is_2d:
            tensor = "x_t"
        else:
            options = view.panel_names or ["x_t"]
            tensor = cols[0].selectbox("Trajectory of", options, index=options.index("x_t") if "x_t" in options else 0, key=f"{stem}.export.tensor")
        stride = int(cols[1].number_input("Every n-th step", min_value=1, max_value=max(1, info.rows), value=default_stride(info.rows), key=f"{stem}.export.stride"))
        fps = float(cols[2].number_input("Frames/s", min_value=1, max_value=60, value=10, key=f"{stem}.export.fps"))
        steps = export.export_steps(info.rows, stride)
        scalars = loaders.scalars(info.path, info.inode, info.rows)
        t = scalars.get("t", np.arange(info.rows))

        def frames() -> list[np.ndarray]:
            if info.is_2d:
                history = loaders.trajectory(info.path, info.inode, info.rows, "x_t")
                x0 = loaders.trajectory(info.path, info.inode, info.rows, "x0_pred") if "x0_pred" in info.tensors and display.x0_mode != "none" else None
                bounds = extent(history, *(() if x0 is None else (x0,)))
                return list(export.point_frames(history, x0, steps, t, bounds, stem, display.trajectories))
            samples = [s for s in display.samples if 0 <= s < info.batch] or [0]
            fixed = loaders.colour_ranges(info.path, info.inode, info.rows, (tensor,)) if display.colour == "trace" else {}

            def read(s: int) -> np.ndarray:
                images = loaders.step_tensors(handle, s, [tensor], samples, info.rows)[tensor]
                return images if images.ndim == 4 else images[:, None]

            return list(export.image_frames(read, steps, t, lambda im: value_range(tensor, im, display.colour, fixed), f"{stem} {tensor}"))

        def png() -> bytes:
            if info.is_2d:
                history = loaders.trajectory(info.path, info.inode, info.rows, "x_t")
                x0 = loaders.trajectory(info.path, info.inode, info.rows, "x0_pred") if "x0_pred" in info.tensors else None
                bounds = extent(history, *(() if x0 is None else (x0,)))
                frame = export.points_image(history[i], bounds, None if x0 is None else x0[i], history[: i + 1] if display.trajectories else None)
                return export.encode_png(export.caption(frame, f"{stem} · step {i + 1} · t = {view.t}"))
            return export.encode_png(export.view_image(view.panels, view.panel_names, f"{stem} · step {i + 1} of {info.rows} · t = {view.t}"))

        with cols[3]:
            st.download_button("PNG of this view", data=png, file_name=f"{stem}_step{i}.png", mime="image/png", on_click="ignore", key=f"{stem}.export.png")
        c1, c2, _ = st.columns([1, 1, 2])
        with c1:
            st.download_button(f"GIF ({len(steps)} frames)", data=lambda: export.encode_gif(frames(), fps), file_name=f"{stem}_{tensor}.gif",
                               mime="image/gif", on_click="ignore", key=f"{stem}.export.gif")
        with c2:
            st.download_button(f"MP4 ({len(steps)} frames)", data=lambda: export.encode_mp4(frames(), fps), file_name=f"{stem}_{tensor}.mp4",
                               mime="video/mp4", on_click="ignore", key=f"{stem}.export.mp4")
