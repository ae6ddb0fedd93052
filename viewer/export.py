"""Export: the current trajectory as GIF or MP4, and the current view as PNG, drawn with NumPy and Pillow.

No browser and no plotly image engine: frames are the same mosaics the screen shows
(the same samples in the same tiles, the same fixed colour range), scaled up with
nearest-neighbour, with a caption bar (trace name, step, t). 2-D traces are drawn as
scatter plots on fixed axes. Encoders return bytes for ``st.download_button``.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from viewer.figures.images import Panel, grid_columns, mosaic, to_uint8

CAPTION_HEIGHT = 22
MIN_SIDE = 256  # frames are scaled up (integer factor) until their shorter side reaches this
MACRO_BLOCK = 16  # H.264 wants sides divisible by 16: frames are padded, never resampled


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def grid_image(images: np.ndarray, low: float, high: float, columns: int | None = None) -> np.ndarray:
    """[N, C, H, W] samples as one RGB uint8 mosaic [H', W', 3] on the range [low, high] (grey for one channel)."""
    images = np.asarray(images, dtype=np.float32)
    channels = 3 if images.shape[1] == 3 else 1
    tiles = mosaic(images[:, :channels], columns or grid_columns(images.shape[0]))
    rgb = to_uint8(np.moveaxis(tiles, 0, -1), low, high)
    return np.repeat(rgb, 3, axis=-1) if channels == 1 else rgb


def upscale(frame: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """Nearest-neighbour scale by the integer factor that brings the shorter side to at least ``min_side``."""
    factor = max(1, -(-min_side // max(1, min(frame.shape[:2]))))
    return np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)


def caption(frame: np.ndarray, text: str) -> np.ndarray:
    """A white bar with ``text`` above the frame."""
    image = Image.new("RGB", (frame.shape[1], frame.shape[0] + CAPTION_HEIGHT), "white")
    image.paste(Image.fromarray(frame), (0, CAPTION_HEIGHT))
    ImageDraw.Draw(image).text((4, 3), text, fill="black", font=_font())
    return np.asarray(image)


def side_by_side(frames: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
    """Frames in a row on white, top-aligned."""
    height = max(f.shape[0] for f in frames)
    width = sum(f.shape[1] for f in frames) + gap * (len(frames) - 1)
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for f in frames:
        out[: f.shape[0], x : x + f.shape[1]] = f
        x += f.shape[1] + gap
    return out


def view_image(panels: Sequence[Panel], names: Sequence[str], title: str) -> np.ndarray:
    """The current view of an image trace: each panel's mosaic scaled up under its name, all under ``title``."""
    tiles = [caption(upscale(grid_image(p.images, p.low, p.high), 160), f"{name} [{p.low:.3g}, {p.high:.3g}]") for p, name in zip(panels, names, strict=True)]
    return caption(side_by_side(tiles), title)


def points_image(
    x_t: np.ndarray,
    bounds: tuple[float, float, float, float],
    x0_pred: np.ndarray | None = None,
    history: np.ndarray | None = None,
    size: int = 384,
) -> np.ndarray:
    """A 2-D point cloud on fixed axes: trajectories so far (light), x0_pred (orange), x_t (blue)."""
    x0, x1, y0, y1 = bounds
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)

    def pixel(p: np.ndarray) -> tuple[float, float]:
        return ((p[0] - x0) / (x1 - x0) * (size - 1), (1.0 - (p[1] - y0) / (y1 - y0)) * (size - 1))

    if history is not None and history.shape[0] > 1:
        for b in range(history.shape[1]):
            draw.line([pixel(p) for p in history[:, b]], fill=(180, 200, 230), width=1)
    if x0_pred is not None:
        for p in x0_pred:
            u, v = pixel(p)
            draw.ellipse((u - 2, v - 2, u + 2, v + 2), fill=(255, 170, 90))
    for p in x_t:
        u, v = pixel(p)
        draw.ellipse((u - 2.5, v - 2.5, u + 2.5, v + 2.5), fill=(31, 119, 180))
    return np.asarray(image)


def pad_to_block(frame: np.ndarray, block: int = MACRO_BLOCK) -> np.ndarray:
    """Pad with white on the right and bottom to sides divisible by ``block``."""
    h, w = frame.shape[:2]
    out = np.full((-(-h // block) * block, -(-w // block) * block, 3), 255, dtype=np.uint8)
    out[:h, :w] = frame
    return out


def same_size(frames: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Pad frames to the largest height and width among them (captions may differ in width)."""
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to encode")
    h = max(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    out = []
    for f in frames:
        canvas = np.full((h, w, 3), 255, dtype=np.uint8)
        canvas[: f.shape[0], : f.shape[1]] = f
        out.append(canvas)
    return out


def encode_png(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_gif(frames: Iterable[np.ndarray], fps: float = 10.0) -> bytes:
    """An endlessly looping GIF at ``fps`` frames a second."""
    images = [Image.fromarray(f) for f in same_size(frames)]
    buffer = io.BytesIO()
    duration = max(20, int(round(1000.0 / fps)))
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0, optimize=False)
    return buffer.getvalue()


def encode_mp4(frames: Iterable[np.ndarray], fps: float = 10.0) -> bytes:
    """H.264 MP4 (yuv420p, plays in browsers) through imageio's ffmpeg."""
    import imageio.v2 as imageio

    padded = [pad_to_block(f) for f in same_size(frames)]
    handle, name = tempfile.mkstemp(suffix=".mp4")
    os.close(handle)
    try:
        writer = imageio.get_writer(name, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
                                    macro_block_size=MACRO_BLOCK, ffmpeg_log_level="error")
        try:
            for frame in padded:
                writer.append_data(frame)
        finally:
            writer.close()
        with open(name, "rb") as f:
            return f.read()
    finally:
        os.unlink(name)


def export_steps(rows: int, stride: int) -> list[int]:
    """Steps in an exported trajectory: every ``stride``-th from 0, and always the last."""
    if rows <= 0:
        return []
    steps = list(range(0, rows, max(1, stride)))
    return steps if steps[-1] == rows - 1 else [*steps, rows - 1]


def image_frames(
    read: Callable[[int], np.ndarray],
    steps: Sequence[int],
    t: Sequence[int] | np.ndarray,
    value_range: Callable[[np.ndarray], tuple[float, float]],
    title: str,
) -> Iterator[np.ndarray]:
    """One captioned mosaic per step: ``read(s)`` gives the chosen samples [N, C, H, W] of step s."""
    for s in steps:
        images = read(s)
        low, high = value_range(images)
        yield caption(upscale(grid_image(images, low, high)), f"{title} · step {s + 1} · t = {int(t[s])}")


def point_frames(
    history: np.ndarray,
    x0_pred: np.ndarray | None,
    steps: Sequence[int],
    t: Sequence[int] | np.ndarray,
    bounds: tuple[float, float, float, float],
    title: str,
    trails: bool = True,
) -> Iterator[np.ndarray]:
    """One captioned scatter per step of a 2-D trace: x_t [S, B, 2], its trajectory so far, x0_pred [S, B, 2]."""
    for s in steps:
        past = history[: s + 1] if trails else None
        frame = points_image(history[s], bounds, None if x0_pred is None else x0_pred[s], past)
        yield caption(frame, f"{title} · step {s + 1} · t = {int(t[s])}")
