"""Loaders and the scrub path over real traces: what the viewer shows is what the trace holds."""

from __future__ import annotations

import numpy as np
import pytest

from tests.viewer.conftest import BATCH, T, Traces
from tracer.trace.reader import TraceError, open_trace
from viewer import loaders
from viewer.figures.images import mosaic
from viewer.playback_view import Display, step_view, value_range


def test_info_describes_the_trace(traces: Traces) -> None:
    info = loaders.info(loaders.open_handle(traces.images_guided))
    assert (info.kind, info.status, info.rows, info.batch, info.sample_shape) == ("sampling", "complete", 10, BATCH, (1, 8, 8))
    assert {"eps_cond", "eps_uncond"} <= set(info.tensors) and info.is_image and not info.is_2d
    assert info.config["sampler"]["guidance"] == 3.0 and info.schedule_T == T


@pytest.mark.parametrize("attr", ["corrupt", "foreign", "truncated"])
def test_bad_files_raise_one_trace_error_line(traces: Traces, attr: str) -> None:
    with pytest.raises(TraceError) as caught:
        loaders.open_handle(getattr(traces, attr))
    assert "\n" not in str(caught.value)
    assert loaders.kind_of(getattr(traces, attr)) == "unreadable"


def test_missing_file_is_a_trace_error(traces: Traces) -> None:
    with pytest.raises(TraceError, match="no such file"):
        loaders.open_handle(traces.root / "gone.h5")


def test_step_statistics_are_those_of_the_recorded_tensors(traces: Traces) -> None:
    handle = loaders.open_handle(traces.images_ddpm)
    stats = loaders.step_stats(handle, 50)
    with open_trace(traces.images_ddpm) as trace:
        for i in (0, 17, 49):
            assert stats["std_x_t"][i] == pytest.approx(trace.tensor("x_t", i).astype(np.float64).std(), rel=1e-12)
            eps = trace.tensor("eps", i).astype(np.float64)
            assert stats["rms_eps"][i] == pytest.approx(np.linalg.norm(eps) / np.sqrt(eps.size), rel=1e-12)
    assert loaders.step_stats(handle, 20)["std_x_t"].shape == (20,)


def test_colour_range_is_fixed_for_the_trace_and_covers_most_values(traces: Traces) -> None:
    handle = loaders.open_handle(traces.images_ddpm)
    info = loaders.info(handle)
    ranges = loaders.colour_ranges(info.path, info.inode, info.rows, ("x_t", "eps"))
    low, high = ranges["x_t"]
    assert low == -high and high > 0
    with open_trace(traces.images_ddpm) as trace:
        per_step = [np.percentile(np.abs(trace.tensor("x_t", i)), 99.5) for i in range(info.rows)]
    assert min(per_step) <= high <= max(per_step)  # a typical step's range, not the extreme one
    # the same range at every step: the colour scale does not jump
    display = Display(tensors=("x_t",), samples=(0, 1, 2))
    shown = {(p.low, p.high) for i in (0, 25, 49) for p in step_view(handle, info, i, display).panels}
    assert shown == {ranges["x_t"]}


def test_value_range_modes() -> None:
    images = np.array([[-0.5, 2.0]])
    assert value_range("x_t", images, "trace", {"x_t": (-3.0, 3.0)}) == (-3.0, 3.0)
    assert value_range("x_t", images, "data", {}) == (-1.0, 1.0)
    assert value_range("x_t", images, "step", {}) == (-2.0, 2.0)


def test_step_view_shows_the_recorded_tensors_of_the_chosen_samples(traces: Traces) -> None:
    handle = loaders.open_handle(traces.images_guided)
    info = loaders.info(handle)
    samples = (3, 0, 7)
    view = step_view(handle, info, 4, Display(tensors=("x_t", "eps_cond", "x0_pred"), samples=samples))
    assert view.panel_names == ["x_t", "eps_cond", "x0_pred"]
    with open_trace(traces.images_guided) as trace:
        assert view.t == int(trace.column("t")[4]) and view.t_prev == int(trace.column("t_prev")[4])
        for name, heatmap in zip(view.panel_names, view.images.data, strict=True):
            expected = mosaic(trace.tensor(name, 4)[list(samples)], 2)[0]
            np.testing.assert_array_equal(np.asarray(heatmap.z, dtype=np.float32), expected)
        assert view.scalars["alpha_bar_t"] == trace.column("alpha_bar_t")[4]


def test_step_view_of_a_2d_trace_draws_the_cloud_and_its_trajectory(traces: Traces) -> None:
    handle = loaders.open_handle(traces.points_ddim)
    info = loaders.info(handle)
    view = step_view(handle, info, 6, Display(x0_mode="ghost"))
    assert view.images is None and view.points is not None
    by_name = {t.name: t for t in view.points.data}
    with open_trace(traces.points_ddim) as trace:
        np.testing.assert_array_equal(by_name["x<sub>t</sub>"].x, trace.tensor("x_t", 6)[:, 0])
        np.testing.assert_array_equal(by_name["x̂<sub>0</sub>"].y, trace.tensor("x0_pred", 6)[:, 1])
        trail = np.asarray(by_name["trajectory"].x, dtype=np.float32)
        np.testing.assert_array_equal(trail[:7], [trace.tensor("x_t", i)[0, 0] for i in range(7)])  # sample 0, steps 0..6


def test_nearest_steps_align_by_t_with_ties_to_the_earlier_step() -> None:
    t_ddpm = np.arange(49, -1, -1)
    t_ddim = np.arange(45, -1, -5)
    match = loaders.nearest_steps(t_ddpm, t_ddim)
    assert t_ddim[match[0]] == 45 and t_ddim[match[4]] == 45 and t_ddim[match[49]] == 0
    gaps = np.abs(t_ddim[match] - t_ddpm)
    assert np.all(gaps == np.abs(t_ddpm[:, None] - t_ddim[None, :]).min(axis=1))  # no visited t is closer
    assert np.all(gaps[t_ddpm <= 45] <= 2)
    assert loaders.nearest_steps(np.array([42]), np.array([44, 40]))[0] == 0


def test_aligned_distance_is_zero_against_itself_and_where_both_hold_x_T(traces: Traces) -> None:
    a, b = loaders.info(loaders.open_handle(traces.points_ddpm)), loaders.info(loaders.open_handle(traces.points_ddim))
    t, d = loaders.aligned_distance(a.path, a.inode, a.rows, a.path, a.inode, a.rows, "x0_pred")
    assert t.shape == (50,) and np.all(d == 0)
    t, d = loaders.aligned_distance(a.path, a.inode, a.rows, b.path, b.inode, b.rows, "x_t")
    assert d[0] == 0  # both runs start from the same x_T (same seed); DDPM's t=49 meets DDIM's first t=45
    assert np.all(d[1:5] > 0)  # DDPM has moved on while DDIM still sits at x_T (nearest t is still 45)
