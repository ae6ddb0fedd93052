"""Figure builders without Streamlit: the numbers passed in are the numbers the plotly traces carry."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from tracer.schedules import make_schedule
from viewer.figures.compare import distance_figure
from viewer.noise import MEASURES, noise_level
from viewer.figures.images import DIVERGING, GREY, Panel, as_images, colours_for, grid_columns, image_grids_figure, mosaic, sweep_grid_figure, tile_centres, to_uint8
from viewer.figures.points import extent, point_cloud_figure, polylines
from viewer.figures.scalars import scalar_strips_figure, step_axis, thin, timeline_figure
from viewer.figures.schedule import log_snr, schedule_figure
from viewer.figures.training import bucket_bars_figure, bucket_labels, log_ticks, loss_by_bucket_figure, loss_figure, smooth

RNG = np.random.default_rng(0)


# -- images -------------------------------------------------------------------------------------------


def test_mosaic_puts_sample_k_in_row_major_tile_k_with_nan_gaps() -> None:
    images = np.arange(5 * 1 * 2 * 3, dtype=np.float32).reshape(5, 1, 2, 3)
    tiles = mosaic(images, columns=3, gap=1)
    assert tiles.shape == (1, 2 * 2 + 1, 3 * 3 + 2)
    for k in range(5):
        r, c = divmod(k, 3)
        np.testing.assert_array_equal(tiles[0, r * 3 : r * 3 + 2, c * 4 : c * 4 + 3], images[k, 0])
    assert np.isnan(tiles[0, 2, :]).all()  # the gap row
    assert np.isnan(tiles[0, 3:, 8:]).all()  # the empty sixth tile


def test_grid_columns_is_near_square() -> None:
    assert [grid_columns(n) for n in (1, 2, 4, 5, 9, 10, 64, 200)] == [1, 2, 2, 3, 3, 4, 8, 8]


def test_to_uint8_maps_the_range_linearly_and_clips() -> None:
    values = np.array([-2.0, -1.0, 0.0, 1.0, 3.0, np.nan])
    np.testing.assert_array_equal(to_uint8(values, -1.0, 1.0), [0, 0, 128, 255, 255, 255])


def test_image_grid_heatmaps_carry_the_mosaic_and_the_fixed_range() -> None:
    x_t = RNG.standard_normal((4, 1, 5, 5)).astype(np.float32)
    eps = RNG.standard_normal((4, 1, 5, 5)).astype(np.float32)
    fig = image_grids_figure([Panel("x<sub>t</sub>", x_t, -2.5, 2.5), Panel("ε", eps, -3.0, 3.0, colours_for("eps"))])
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 2
    np.testing.assert_array_equal(np.asarray(heatmaps[0].z, dtype=np.float32), mosaic(x_t, 2)[0])
    np.testing.assert_array_equal(np.asarray(heatmaps[1].z, dtype=np.float32), mosaic(eps, 2)[0])
    assert (heatmaps[0].zmin, heatmaps[0].zmax) == (-2.5, 2.5) and (heatmaps[1].zmin, heatmaps[1].zmax) == (-3.0, 3.0)
    assert heatmaps[1].colorscale != heatmaps[0].colorscale  # noise-like tensors get the diverging map
    for heatmap in heatmaps:  # explicit scales: plotly.js does not know every name plotly.py expands
        assert all(len(stop) == 2 and 0 <= stop[0] <= 1 and str(stop[1]).startswith("rgb") for stop in heatmap.colorscale)
    assert heatmaps[0].colorscale[0][1] == "rgb(0, 0, 0)" and heatmaps[0].colorscale[-1][1] == "rgb(255, 255, 255)"  # grey: black to white
    assert heatmaps[0].xaxis == "x" and heatmaps[1].xaxis == "x2"
    assert fig.layout.yaxis.autorange == "reversed"  # images are drawn top row first


def test_image_grid_wraps_panels_into_rows() -> None:
    panels = [Panel(str(k), np.zeros((1, 1, 4, 4)), -1, 1) for k in range(6)]
    fig = image_grids_figure(panels, per_row=4)
    top, bottom = fig.layout.yaxis.domain, fig.layout.yaxis5.domain
    assert bottom[1] <= top[0]  # panel 5 sits in the second row
    assert fig.layout.xaxis5.domain == fig.layout.xaxis.domain


def test_rgb_images_become_an_image_trace_on_the_same_range() -> None:
    images = np.stack([np.full((2, 2), -1.0), np.zeros((2, 2)), np.full((2, 2), 1.0)])[None].astype(np.float32)  # [1, 3, 2, 2]
    fig = image_grids_figure([Panel("rgb", images, -1.0, 1.0)])
    (image,) = fig.data
    assert isinstance(image, go.Image)
    np.testing.assert_array_equal(np.asarray(image.z)[0, 0], [0, 128, 255])


def test_as_images_adds_a_channel_to_hw_samples_and_refuses_points() -> None:
    assert as_images(np.zeros((3, 4, 5))).shape == (3, 1, 4, 5)
    with pytest.raises(ValueError):
        as_images(np.zeros((3, 2)))


def test_sweep_grid_is_one_column_per_trace_with_samples_in_rows() -> None:
    columns = [Panel(f"s={s}", RNG.standard_normal((3, 1, 4, 4)), -1, 1) for s in (0, 1, 3)]
    fig = sweep_grid_figure(columns)
    assert len(fig.data) == 3
    for panel, trace in zip(columns, fig.data, strict=True):
        np.testing.assert_array_equal(np.asarray(trace.z, dtype=np.float32), mosaic(panel.images.astype(np.float32), 1)[0])
        assert np.asarray(trace.z).shape == (3 * 4 + 2, 4)  # three samples stacked, one column
    assert colours_for("x_t") == GREY and colours_for("noise") == DIVERGING


def test_tile_centres_fall_in_the_middle_of_each_tile_of_a_mosaic() -> None:
    for h in (1, 4, 7):
        images = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 1, h, 3), dtype=np.float32)  # sample k holds k
        column = mosaic(images, 1)[0, :, 0]
        centres = tile_centres(5, h)
        for k, y in enumerate(centres):
            assert column[math.floor(y)] == k and column[math.ceil(y)] == k  # inside tile k, not a gap
            assert y - k * (h + 1) == pytest.approx((h - 1) / 2)  # as far from its top as from its bottom


def test_sweep_grid_labels_each_row_with_its_sample_left_of_the_first_column() -> None:
    h = 4
    columns = [Panel(f"s={s}", RNG.standard_normal((3, 1, h, h)), -1, 1) for s in (0, 3)]
    labels = ["5 · class 1", "0 · class 0", "2 · unconditional"]
    fig = sweep_grid_figure(columns, labels)
    y = fig.layout.yaxis  # the first column's: its tick labels sit left of it
    assert y.visible and y.showticklabels and list(y.ticktext) == labels  # in row order, one per row
    np.testing.assert_allclose(y.tickvals, tile_centres(3, h))  # each level with its row
    assert not fig.layout.yaxis2.visible  # the other columns are not labelled again
    assert [a.text.split(" <span")[0] for a in fig.layout.annotations] == ["s=0", "s=3"]  # columns: the traces' settings
    assert list(sweep_grid_figure(columns, [*labels, "extra"]).layout.yaxis.ticktext) == labels  # never more labels than rows
    assert not sweep_grid_figure(columns).layout.yaxis.visible  # no labels given: no axis


# -- 2-D point clouds ---------------------------------------------------------------------------------


def test_polylines_join_each_path_and_break_between_paths() -> None:
    paths = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2)  # 3 points on each of 2 paths
    x, y = polylines(paths)
    np.testing.assert_array_equal(x[:3], paths[:, 0, 0])
    assert np.isnan(x[3]) and np.isnan(y[3])
    np.testing.assert_array_equal(y[4:7], paths[:, 1, 1])


def test_point_cloud_draws_x_t_trajectories_and_arrows_to_x0_pred() -> None:
    history = RNG.standard_normal((4, 5, 2))
    x0 = RNG.standard_normal((5, 2))
    fig = point_cloud_figure(history[-1], history, x0, "arrows", bounds=(-5, 5, -4, 4))
    by_name = {t.name: t for t in fig.data}
    np.testing.assert_array_equal(by_name["x<sub>t</sub>"].x, history[-1, :, 0])
    np.testing.assert_array_equal(by_name["x<sub>t</sub>"].y, history[-1, :, 1])
    traj_x = np.asarray(by_name["trajectory"].x, dtype=float)
    np.testing.assert_array_equal(traj_x[:4], history[:, 0, 0])
    arrows_x = np.asarray(by_name["x̂<sub>0</sub>"].x, dtype=float)
    np.testing.assert_array_equal(arrows_x[0::3], history[-1, :, 0])  # each arrow starts at x_t ...
    np.testing.assert_array_equal(arrows_x[1::3], x0[:, 0])  # ... and ends at x0_pred
    assert list(fig.layout.xaxis.range) == [-5, 5] and list(fig.layout.yaxis.range) == [-4, 4]


def test_point_cloud_ghost_points_and_no_x0() -> None:
    x_t, x0 = RNG.standard_normal((6, 2)), RNG.standard_normal((6, 2))
    ghost = point_cloud_figure(x_t, x_t[None], x0, "ghost")
    assert any(t.name == "x̂<sub>0</sub>" and t.marker.opacity < 1 and np.allclose(t.x, x0[:, 0]) for t in ghost.data)
    plain = point_cloud_figure(x_t, x_t[None], x0, "none")
    assert [t.name for t in plain.data] == ["x<sub>t</sub>"]
    with pytest.raises(ValueError):
        point_cloud_figure(x_t, x_t[None], x0, "sparkles")  # type: ignore[arg-type]


def test_extent_covers_every_point() -> None:
    a, b = RNG.standard_normal((10, 3, 2)), RNG.standard_normal((4, 2)) * 5
    x0, x1, y0, y1 = extent(a, b)
    points = np.concatenate([a.reshape(-1, 2), b])
    assert x0 < points[:, 0].min() and x1 > points[:, 0].max() and y0 < points[:, 1].min() and y1 > points[:, 1].max()


# -- scalars, timeline --------------------------------------------------------------------------------


def test_scalar_strips_plot_each_series_with_a_cursor_at_the_step() -> None:
    t = np.arange(20, 0, -1)
    series = {"alpha_bar_t": np.linspace(0.01, 0.99, 20), "sigma": np.linspace(0.5, 0.0, 20)}
    fig = scalar_strips_figure(series, t, cursor=7)
    lines = [trace for trace in fig.data if trace.mode == "lines"]
    markers = [trace for trace in fig.data if trace.mode == "markers"]
    for line, marker, values in zip(lines, markers, series.values(), strict=True):
        np.testing.assert_array_equal(line.y, values)
        np.testing.assert_array_equal(line.x, t)  # x is t, as the scrubber labels the steps
        np.testing.assert_array_equal(np.asarray(line.customdata)[:, 1], t)  # hover shows step and t
        assert list(marker.x) == [t[7]] and list(marker.y) == [values[7]]
    assert [s.x0 for s in fig.layout.shapes] == [t[7], t[7]]
    assert fig.layout.xaxis.title.text == "t" and fig.layout.xaxis.autorange == "reversed"  # T -> 0, left to right
    assert fig.layout.yaxis.title.text and fig.layout.yaxis2.title.text
    assert f"= {series['alpha_bar_t'][7]:.4g}" in fig.layout.annotations[0].text  # the value at the step, in the panel title


def test_long_strips_are_thinned_to_every_kth_step_with_the_last_and_an_exact_cursor() -> None:
    values = np.linspace(0, 1, 1000) ** 2
    fig = scalar_strips_figure({"sigma": values}, np.arange(999, -1, -1), cursor=777)
    line, marker = fig.data
    x = 999 - np.asarray(line.x)  # the step index of each point (t = 999 - step)
    assert len(x) <= 401 and x[0] == 0 and x[-1] == 999 and len(set(np.diff(x[:-1]))) == 1
    np.testing.assert_array_equal(line.y, values[x])
    assert list(marker.y) == [values[777]]
    assert list(thin(10, 4)) == [0, 3, 6, 9] and list(thin(11, 4)) == [0, 3, 6, 9, 10] and list(thin(3)) == [0, 1, 2]


def test_strips_fall_back_to_the_step_index_where_t_is_not_monotone_and_run_up_for_an_inversion() -> None:
    fig = scalar_strips_figure({"sigma": np.arange(4.0)}, np.array([3, 3, 1, 0]), cursor=1)
    assert list(fig.data[0].x) == [0, 1, 2, 3] and fig.layout.xaxis.title.text == "step"
    rising = scalar_strips_figure({"sigma": np.arange(4.0)}, np.array([0, 2, 4, 6]), cursor=1)
    assert rising.layout.xaxis.title.text == "t" and rising.layout.xaxis.autorange is None


def test_timeline_marks_failing_steps_at_their_t_on_the_strips_axis() -> None:
    t = np.arange(980, -1, -20)  # 50 steps, T -> 0
    fig = timeline_figure(t, 3, {"ddim_update": [4, 9]})
    (failing,) = [trace for trace in fig.data if trace.name == "ddim_update"]
    assert list(failing.x) == [t[4], t[9]]  # at the t of the failing steps
    np.testing.assert_array_equal(np.asarray(failing.customdata), [[4, t[4]], [9, t[9]]])  # hover: step and t
    assert "step %{customdata[0]}" in failing.hovertemplate and "t = %{customdata[1]}" in failing.hovertemplate
    assert list([trace for trace in fig.data if trace.name == "now"][0].x) == [t[3]]
    strips = scalar_strips_figure({"sigma": np.ones(50)}, t, 3)
    assert fig.layout.xaxis.title.text == strips.layout.xaxis.title.text == "t"
    low, high = fig.layout.xaxis.range
    assert low > t[0] > t[-1] > high  # T on the left, reversed as the strips' autorange is: the same direction
    assert low - t[0] == pytest.approx(t[-1] - high) == pytest.approx(10)  # half a step past each end


def test_timeline_falls_back_to_the_step_index_as_the_strips_do() -> None:
    t = np.array([5, 5, 3, 0])  # not strictly monotone
    fig = timeline_figure(t, 1, {"eq": [2, 7]})  # step 7 does not exist: not marked
    assert fig.layout.xaxis.title.text == step_axis(t)[1]["title"]["text"] == "step"
    (failing,) = [trace for trace in fig.data if trace.name == "eq"]
    assert list(failing.x) == [2] and list(fig.layout.xaxis.range) == [-0.5, 3.5]
    rising = timeline_figure(np.array([0, 10, 20]), 0, {"eq": [1]})  # an inversion runs t up: left to right
    assert list(rising.layout.xaxis.range) == [-5, 25] and list(rising.data[1].x) == [10]


# -- schedule -----------------------------------------------------------------------------------------


def test_schedule_figure_plots_beta_alpha_bar_and_log_snr_with_visited_marks() -> None:
    schedule = make_schedule("linear", 100)
    visited = np.array([99, 80, 60, 0])
    fig = schedule_figure(schedule.beta, schedule.alpha_bar, visited, current_t=60)
    curves = [t for t in fig.data if t.mode == "lines"]
    np.testing.assert_array_equal(curves[0].y, schedule.beta)
    np.testing.assert_array_equal(curves[1].y, schedule.alpha_bar)
    np.testing.assert_allclose(curves[2].y, np.log(schedule.alpha_bar / (1 - schedule.alpha_bar)), rtol=1e-12)
    marks = [t for t in fig.data if t.mode == "markers"]
    assert sorted(marks[0].x) == [0, 60, 80, 99]
    np.testing.assert_array_equal(marks[0].y, schedule.beta[np.sort(visited)])
    assert [s.x0 for s in fig.layout.shapes] == [60, 60, 60]
    assert all(fig.layout[f"yaxis{k}"].title.text for k in ("", 2, 3)) and fig.layout.xaxis.title.text == "t"


def test_log_snr_is_decreasing_and_zero_where_alpha_bar_is_one_half() -> None:
    assert log_snr(np.array([0.5]))[0] == pytest.approx(0.0, abs=1e-15)
    schedule = make_schedule("cosine", 200)
    assert np.all(np.diff(log_snr(schedule.alpha_bar)) < 0)


# -- training -----------------------------------------------------------------------------------------


def test_smooth_is_the_debiased_ema() -> None:
    values = RNG.uniform(0.1, 1.0, 50)
    np.testing.assert_array_equal(smooth(values, 0.0), values)
    np.testing.assert_allclose(smooth(np.full(30, 0.7), 0.9), 0.7, rtol=1e-12)  # debiasing: no warm-up bias
    w, s, expected = 0.8, 0.0, []
    for n, v in enumerate(values, start=1):
        s = w * s + (1 - w) * v
        expected.append(s / (1 - w**n))
    np.testing.assert_allclose(smooth(values, w), expected, rtol=1e-12)
    gappy = smooth(np.array([1.0, np.nan, 3.0]), 0.5)
    assert gappy[1] == gappy[0] == 1.0 and gappy[2] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)
    with pytest.raises(ValueError):
        smooth(values, 1.0)


def test_loss_figure_has_raw_and_smoothed_curves_on_log_axis() -> None:
    step, loss = np.arange(1, 41) * 10, np.exp(-np.linspace(0, 3, 40))
    fig = loss_figure(step, loss, 0.5)
    raw, smoothed = fig.data
    np.testing.assert_array_equal(raw.y, loss)
    np.testing.assert_allclose(smoothed.y, smooth(loss, 0.5))
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.xaxis.title.text == "training step" and fig.layout.yaxis.title.text == "loss"
    assert list(fig.layout.yaxis.ticktext) == ["0.05", "0.1", "0.2", "0.5", "1"]  # readable labels, not plotly's bare 2 and 5
    assert loss_figure(step, loss - 0.5).layout.yaxis.type == "linear"  # negative values: no log axis


def test_log_ticks_are_decades_over_a_wide_range_and_1_2_5_over_a_narrow_one() -> None:
    assert log_ticks(np.array([1e-5, 3.0])) == {"tickvals": [1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0],
                                                 "ticktext": ["1e-05", "0.0001", "0.001", "0.01", "0.1", "1"]}
    assert log_ticks(np.array([0.03, 0.9]))["ticktext"] == ["0.05", "0.1", "0.2", "0.5"]
    assert log_ticks(np.array([0.31, 0.35]))["ticktext"] == ["0.31", "0.33", "0.35"]  # too narrow for 1-2-5: values across it
    assert log_ticks(np.array([-1.0, np.nan])) == {}


def test_loss_by_bucket_lines_and_bars_follow_the_bucket_edges() -> None:
    edges = [0, 25, 50, 75, 100]
    assert bucket_labels(edges) == ["t 0-24", "t 25-49", "t 50-74", "t 75-99"]
    values = RNG.uniform(0.1, 1, (12, 4))
    fig = loss_by_bucket_figure(np.arange(12), values, edges)
    assert [t.name for t in fig.data] == bucket_labels(edges)
    for k, trace in enumerate(fig.data):
        np.testing.assert_array_equal(trace.y, values[:, k])
    assert fig.layout.xaxis.title.text == "training step" and fig.layout.yaxis.title.text == "loss"
    bars = bucket_bars_figure(values[-1], edges)
    assert bars.layout.xaxis.title.text == "timestep bucket" and bars.layout.yaxis.title.text == "loss"
    np.testing.assert_array_equal(bars.data[0].y, values[-1])
    assert list(bars.data[0].x) == bucket_labels(edges)


# -- compare ------------------------------------------------------------------------------------------


def test_distance_figure_runs_t_from_high_to_low_with_the_cursor() -> None:
    t, d = np.arange(49, -1, -1), RNG.uniform(0, 1, 50)
    fig = distance_figure({"ddim − ddpm": (t, d)}, cursor=30)
    np.testing.assert_array_equal(fig.data[0].x, t)
    np.testing.assert_array_equal(fig.data[0].y, d)
    assert fig.layout.xaxis.autorange == "reversed" and fig.layout.shapes[0].x0 == 30
    assert math.isfinite(fig.layout.height)


@pytest.mark.parametrize("measure", list(MEASURES))
def test_distance_figure_over_a_noise_level_runs_noisy_to_clean_and_leaves_pure_noise_off_the_axis(measure: str) -> None:
    """x is A's noise level: log SNR rising, sigma (log axis) and flow t reversed, so noisy is on the left in each; the flow
    trace's first step (alpha_bar 0: log SNR -inf, sigma inf) has no place on the axis; flow t = 1 has."""
    alpha_bar = np.array([0.0, 0.1, 0.5, 0.9])
    x, d = noise_level(alpha_bar, measure), np.array([1.0, 0.5, 0.2, 0.1])
    spec = MEASURES[measure]
    fig = distance_figure({"b − a": (x, d)}, cursor=float(x[2]), measure=spec)
    kept = np.isfinite(x)
    np.testing.assert_array_equal(fig.data[0].x, x[kept])
    np.testing.assert_array_equal(fig.data[0].y, d[kept])
    assert (fig.layout.xaxis.autorange == "reversed") == spec.noisy_high  # log SNR grows left to right; sigma and t fall
    assert (fig.layout.xaxis.type == "log") == (measure == "sigma")
    assert spec.html in fig.layout.xaxis.title.text and fig.layout.shapes[0].x0 == x[2]
    assert distance_figure({"b − a": (x, d)}, cursor=float(x[0]), measure=spec).layout.shapes == () or measure == "flow_t"
    go.Figure(fig.to_dict())


def test_every_builder_emits_only_valid_plotly_properties() -> None:
    """The builders skip plotly's validation for speed (layout.figure); rebuilding with validation must accept them."""
    images = RNG.standard_normal((4, 1, 5, 5))
    history = RNG.standard_normal((3, 4, 2))
    schedule = make_schedule("linear", 40)
    figures = [
        image_grids_figure([Panel("a", images, -1, 1), Panel("b", images, -1, 1, DIVERGING), Panel("rgb", RNG.standard_normal((2, 3, 4, 4)), -1, 1)]),
        sweep_grid_figure([Panel("a", images, -1, 1)], ["0 · class 3", "1 · unconditional"]),
        point_cloud_figure(history[-1], history, history[0], "arrows"),
        point_cloud_figure(history[-1], history, history[0], "ghost"),
        scalar_strips_figure({"sigma": np.arange(5.0)}, np.arange(5), 2),
        timeline_figure(np.arange(9, -1, -1), 3, {"ddim.step": [1, 2]}),
        schedule_figure(schedule.beta, schedule.alpha_bar, np.array([3, 7]), 7),
        loss_figure(np.arange(1, 6), np.linspace(1, 0.1, 5), 0.5, cursor=3),
        loss_by_bucket_figure(np.arange(3), RNG.uniform(0.1, 1, (3, 2)), [0, 10, 20], 0.5),
        bucket_bars_figure(np.array([0.3, 0.2]), [0, 10, 20]),
        distance_figure({"b − a": (np.arange(5), np.arange(5.0))}, 2),
    ]
    for fig in figures:
        go.Figure(fig.to_dict())  # raises ValueError on any unknown property or bad value
