"""Export: GIF and MP4 of a trajectory, PNG of the view; frames are the trace's tensors on the fixed colour range."""

from __future__ import annotations

import io

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from tests.viewer.conftest import Traces
from tracer.trace.reader import open_trace
from viewer import export
from viewer.figures.images import Panel


def test_grid_image_maps_values_onto_grey_levels() -> None:
    images = np.array([[[[-1.0, 0.0], [1.0, 2.0]]]], dtype=np.float32)  # one 2x2 sample
    frame = export.grid_image(images, -1.0, 1.0)
    assert frame.shape == (2, 2, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[..., 0], [[0, 128], [255, 255]])
    assert np.all(frame[..., 0] == frame[..., 2])


def test_upscale_is_nearest_neighbour_by_an_integer_factor() -> None:
    frame = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    big = export.upscale(frame, min_side=10)
    assert big.shape == (10, 15, 3)
    np.testing.assert_array_equal(big[::5, ::5], frame)


def test_export_steps_keep_the_stride_and_the_last_step() -> None:
    assert export.export_steps(10, 3) == [0, 3, 6, 9]
    assert export.export_steps(11, 3) == [0, 3, 6, 9, 10]
    assert export.export_steps(0, 3) == []


def test_gif_holds_one_frame_per_step_with_the_trace_values(traces: Traces) -> None:
    with open_trace(traces.images_ddim) as trace:
        t = trace.column("t")
        steps = export.export_steps(trace.num_steps, 3)
        frames = list(export.image_frames(lambda s: trace.tensor("x_t", s)[:4], steps, t, lambda im: (-3.0, 3.0), "x_t"))
        expected_tiles = [export.upscale(export.grid_image(trace.tensor("x_t", s)[:4], -3.0, 3.0)) for s in steps]
    data = export.encode_gif(frames, fps=5)
    assert data[:6] in (b"GIF87a", b"GIF89a")
    decoded = iio.imread(data, index=None)
    assert decoded.shape[0] == len(steps)
    # below the caption bar, the first frame is the mosaic of step 0 (GIF is lossless for grey levels)
    first = decoded[0][export.CAPTION_HEIGHT :, : expected_tiles[0].shape[1], :3]
    np.testing.assert_array_equal(first, expected_tiles[0])


def test_mp4_is_an_h264_video_with_every_frame(traces: Traces) -> None:
    frames = [np.full((40, 50, 3), v, dtype=np.uint8) for v in (0, 120, 250)]
    data = export.encode_mp4(frames, fps=4)
    assert data[4:8] == b"ftyp"
    decoded = iio.imread(data, index=None, extension=".mp4")
    assert decoded.shape[0] == 3 and decoded.shape[1] % 16 == 0 and decoded.shape[2] % 16 == 0
    assert abs(float(decoded[1, :40, :50].mean()) - 120) < 6  # lossy, but the grey level survives


def test_view_png_shows_every_panel_side_by_side() -> None:
    panels = [Panel("x_t", np.zeros((4, 1, 8, 8)), -1, 1), Panel("eps", np.ones((4, 1, 8, 8)), -1, 1)]
    data = export.encode_png(export.view_image(panels, ["x_t", "eps"], "step 3"))
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert image.shape[1] > 2 * 160  # two upscaled mosaics
    assert (image == 128).all(axis=-1).any() and (image == 255).all(axis=-1).any()  # the zero panel is mid-grey, the ones panel white


def test_points_image_draws_on_fixed_axes() -> None:
    frame = export.points_image(np.array([[0.0, 0.0]]), (-1.0, 1.0, -1.0, 1.0), size=101)
    blue = np.argwhere((frame == [31, 119, 180]).all(axis=-1))
    assert blue.size and np.allclose(blue.mean(axis=0), [50, 50], atol=1.5)  # the origin is drawn at the centre


def test_frames_of_different_sizes_are_padded_not_rejected() -> None:
    padded = export.same_size([np.zeros((4, 6, 3), np.uint8), np.zeros((5, 3, 3), np.uint8)])
    assert {f.shape for f in padded} == {(5, 6, 3)}
    with pytest.raises(ValueError):
        export.same_size([])
