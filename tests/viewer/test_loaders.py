"""Loaders and the scrub path over real traces: what the viewer shows is what the trace holds."""

from __future__ import annotations

import numpy as np
import pytest

from tests.viewer.conftest import BATCH, T, Traces
from tracer.trace.reader import TraceError, open_trace
from viewer import loaders, symbols
from viewer.figures.images import DIVERGING, NOISE_LIKE, colours_for, mosaic
from viewer.panels.playback import shown_names
from viewer.playback_view import IMAGE_TENSORS, Z_UNUSED, Display, StepView, default_tensors, offered_tensors, step_view, value_range


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


# -- z where sigma is 0, and the derived guidance_delta ------------------------------------------------


def test_z_is_left_out_with_a_note_at_a_step_where_sigma_is_0(traces: Traces) -> None:
    handle = loaders.open_handle(traces.images_ddpm)
    info = loaders.info(handle)
    with open_trace(traces.images_ddpm) as trace:
        sigma = trace.column("sigma")
    still, zero = np.flatnonzero(sigma > 0), np.flatnonzero(sigma == 0)
    assert still.size and zero.size  # DDPM adds noise at every step but the last
    display = Display(tensors=("x_t", "noise"), samples=(0, 1))
    for i in still[[0, -1]]:
        view = step_view(handle, info, int(i), display)
        assert view.panel_names == ["x_t", "noise"] and not view.notes
    for i in zero:
        view = step_view(handle, info, int(i), display)
        assert view.panel_names == ["x_t"] and view.notes == [Z_UNUSED] and len(view.images.data) == 1
    assert "noise" in default_tensors(info)  # drawn where sigma > 0: offered


def test_z_is_not_offered_where_sigma_is_0_at_every_step(traces: Traces) -> None:
    info = loaders.info(loaders.open_handle(traces.images_ddim))  # DDIM with eta = 0
    with open_trace(traces.images_ddim) as trace:
        assert np.all(trace.column("sigma") == 0) and "noise" in trace.tensor_names()
    assert "noise" not in default_tensors(info) and "noise" not in offered_tensors(info)
    assert default_tensors(info) == tuple(name for name in IMAGE_TENSORS if name in info.tensors and name != "noise")  # the rest, in reading order


def test_guidance_delta_is_offered_when_guided_but_not_shown_by_default(traces: Traces) -> None:
    guided = loaders.info(loaders.open_handle(traces.images_guided))
    assert loaders.derivable(guided.tensors) == ("guidance_delta",)
    assert offered_tensors(guided)[-1] == "guidance_delta" and "guidance_delta" not in default_tensors(guided)
    for path in (traces.images_ddpm, traces.images_ddim, traces.points_ddpm):
        unguided = loaders.info(loaders.open_handle(path))
        assert loaders.derivable(unguided.tensors) == () and "guidance_delta" not in offered_tensors(unguided)


def test_guidance_delta_is_eps_cond_minus_eps_uncond_exactly(traces: Traces) -> None:
    handle = loaders.open_handle(traces.images_guided)
    info = loaders.info(handle)
    samples = [3, 0, 7]
    with open_trace(traces.images_guided) as trace:
        for i in range(info.rows):
            got = loaders.step_tensors(handle, i, ["guidance_delta", "eps_cond"], samples, info.rows)
            cond, uncond = trace.tensor("eps_cond", i)[samples], trace.tensor("eps_uncond", i)[samples]
            np.testing.assert_array_equal(got["guidance_delta"], cond - uncond)
            np.testing.assert_array_equal(got["eps_cond"], cond)
            assert got["guidance_delta"].dtype == np.float32
    assert np.any(loaders.step_tensors(handle, 0, ["guidance_delta"], samples, info.rows)["guidance_delta"] != 0)  # the classes differ at t = T
    unguided = loaders.open_handle(traces.images_ddim)
    assert loaders.step_tensors(unguided, 0, ["guidance_delta", "x_t"], samples, 10).keys() == {"x_t"}  # nothing to derive it from


def test_guidance_delta_has_a_fixed_symmetric_range_and_a_diverging_scale(traces: Traces) -> None:
    handle = loaders.open_handle(traces.images_guided)
    info = loaders.info(handle)
    low, high = loaders.colour_ranges(info.path, info.inode, info.rows, ("guidance_delta",))["guidance_delta"]
    assert low == -high and high > 0
    with open_trace(traces.images_guided) as trace:
        per_step = [np.percentile(np.abs(trace.tensor("eps_cond", i) - trace.tensor("eps_uncond", i)), 99.5) for i in range(info.rows)]
    assert min(per_step) <= high <= max(per_step)  # a typical step's range of the difference
    view = step_view(handle, info, 4, Display(tensors=("eps_cond", "guidance_delta"), samples=(0, 1)))
    assert view.panel_names == ["eps_cond", "guidance_delta"]
    delta = view.panels[1]
    assert (delta.low, delta.high) == (low, high) and delta.colours is DIVERGING and delta.title == symbols.html("guidance_delta", False)
    assert symbols.is_noise_like("guidance_delta") and "guidance_delta" in NOISE_LIKE and colours_for("guidance_delta") is DIVERGING
    assert symbols.is_noise_like("eps") and symbols.is_noise_like("noise") and not symbols.is_noise_like("x_t") and not symbols.is_noise_like("sigma")
    assert symbols.latex("guidance_delta") == symbols.DERIVED["guidance_delta"].latex  # its own symbol, not the escaped name


def test_the_equations_shown_beside_guidance_delta_are_those_of_its_terms() -> None:
    view = StepView(index=0, t=0, t_prev=-1, scalars={}, panel_names=["guidance_delta", "eps_cond"])
    names = shown_names(view)
    assert names is not None and "guidance_delta" not in names
    assert names[:2] == ["eps_cond", "eps_uncond"]  # eps_cond once, though shown and a term
