"""Noise level measures (viewer/noise.py) and lining traces of different families up by them, without Streamlit.

Closed forms: alpha_bar = 1/2 is log SNR 0, sigma 1 and flow time 1/2; a sigma-space level sigma has alpha_bar
1 / (1 + sigma^2) and a flow time t has alpha_bar (1 - t)^2 / ((1 - t)^2 + t^2) (docs/samplers.md), each read back
exactly; flow time is sigma / (1 + sigma). The three families of the test fixtures (DDIM 50, Heun 25, flow Euler 50
from one x_T) are lined up by level, not by t.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.viewer.conftest import Traces
from tracer.schedules import flow_alpha_bar
from tracer.trace.reader import open_trace
from viewer import loaders, player
from viewer.noise import MEASURES, delta, fmt, nearest, noise_level
from viewer.panels.player import compare_spec, compare_steps, cursor_values


def test_alpha_bar_one_half_is_log_snr_0_sigma_1_and_flow_time_one_half() -> None:
    assert noise_level(0.5, "log_snr") == pytest.approx(0.0, abs=1e-15)
    assert noise_level(0.5, "sigma") == pytest.approx(1.0, rel=1e-15)
    assert noise_level(0.5, "flow_t") == pytest.approx(0.5, rel=1e-15)


def test_the_ends_pure_noise_and_the_clean_sample() -> None:
    ends = np.array([0.0, 1.0])
    assert noise_level(ends, "log_snr").tolist() == [-math.inf, math.inf]
    assert noise_level(ends, "sigma").tolist() == [math.inf, 0.0]
    assert noise_level(ends, "flow_t").tolist() == [1.0, 0.0]
    assert [MEASURES[m].clean_end for m in ("log_snr", "sigma", "flow_t")] == [math.inf, 0.0, 0.0]
    assert np.isnan(noise_level(np.array([-0.1, 1.5]), "sigma")).all()  # not an alpha_bar
    with pytest.raises(ValueError, match="unknown noise level measure"):
        noise_level(0.5, "snr")


@pytest.mark.parametrize("sigma", [1e-3, 0.1, 1.0, 14.6, 160.0])
def test_a_sigma_space_level_reads_back_as_itself_and_as_its_flow_time(sigma: float) -> None:
    alpha_bar = 1.0 / (1.0 + sigma**2)  # what a sigma-space trace records as alpha_bar_t
    assert noise_level(alpha_bar, "sigma") == pytest.approx(sigma, rel=1e-12)
    assert noise_level(alpha_bar, "log_snr") == pytest.approx(-2.0 * math.log(sigma), rel=1e-9, abs=1e-9)  # SNR = 1 / sigma^2
    assert noise_level(alpha_bar, "flow_t") == pytest.approx(sigma / (1.0 + sigma), rel=1e-12)


@pytest.mark.parametrize("t", [0.02, 0.25, 0.5, 0.9, 0.999])
def test_a_flow_time_reads_back_as_itself(t: float) -> None:
    alpha_bar = flow_alpha_bar(t)  # what a flow trace records: the SNR of x_t = (1 - t) x0 + t eps
    assert noise_level(alpha_bar, "flow_t") == pytest.approx(t, rel=1e-12)
    assert noise_level(alpha_bar, "sigma") == pytest.approx(t / (1.0 - t), rel=1e-12)
    assert noise_level(alpha_bar, "log_snr") == pytest.approx(2.0 * math.log((1.0 - t) / t), rel=1e-9, abs=1e-9)


def test_the_measures_order_every_level_alike() -> None:
    alpha_bar = np.linspace(0.0, 1.0, 101)
    assert np.all(np.diff(noise_level(alpha_bar, "log_snr")) > 0)  # cleaner: higher log SNR
    assert np.all(np.diff(noise_level(alpha_bar, "sigma")) < 0)  # cleaner: lower sigma
    assert np.all(np.diff(noise_level(alpha_bar, "flow_t")) < 0)  # and lower flow time
    assert [m.noisy_high for m in MEASURES.values()] == [False, True, True]


def test_nearest_breaks_ties_to_the_earlier_step_and_meets_equal_infinities() -> None:
    assert nearest(np.array([42.0]), np.array([44.0, 40.0])).tolist() == [0]
    assert nearest(np.array([-np.inf, 0.0]), np.array([-np.inf, -5.0, 1.0])).tolist() == [0, 2]
    assert nearest(np.array([np.inf]), np.array([np.nan, 3.0])).tolist() == [1]  # NaN is farther than anything
    assert nearest(np.array([np.inf, -np.inf]), np.array([2.0, 9.0, 9.0, -4.0])).tolist() == [1, 3]  # the most extreme level
    assert nearest(np.array([1.0, 2.0]), np.zeros(0)).tolist() == [0, 0]
    assert fmt(-np.inf) == "-inf" and fmt(2.104) == "2.1" and delta(-2.1, -2.12) == "+0.02" and delta(np.inf, np.inf) == "+0"


def test_the_timeline_runs_noisy_first_in_every_measure() -> None:
    alpha_bar = [np.array([0.01, 0.2, 0.7]), np.array([0.0, 0.5, 0.9])]
    for name, spec in MEASURES.items():
        levels = [noise_level(a, name) for a in alpha_bar]
        steps, level = player.timeline(levels, noisy_high=spec.noisy_high)
        order = np.argsort(np.concatenate(alpha_bar))  # noisiest (lowest alpha_bar) first
        np.testing.assert_array_equal(level, np.concatenate(levels)[order])
        assert steps[0].tolist() == [0, 0] and steps[-1].tolist() == [2, 2]
        steps, level = compare_steps(levels, [True, False], spec)
        assert steps[-1].tolist() == [3, 2] and level[-1] == spec.clean_end  # A's final samples, B's last step


def test_the_labels_name_the_level_in_the_measure_and_the_cursor_skips_infinities() -> None:
    levels = [noise_level(np.array([0.0, 0.5]), "sigma"), noise_level(np.array([0.2, 0.5]), "sigma")]
    steps, level = compare_steps(levels, [True, True], MEASURES["sigma"])
    track = {"kind": "images", "panels": [{}], "final": True}
    spec = compare_spec([track, track], ["A", "B"], [np.array([49, 24]), np.array([40, 24])], steps, level, 0, "box",
                        MEASURES["sigma"], cursor_x=levels[0])
    assert spec["labels"][0] == "σ = inf · A step 1 (t = 49) · B step 1 (t = 40)"
    assert spec["labels"][1] == "σ = 2 · A step 2 (t = 24) · B step 1 (t = 40)"  # B's sigma 2 is nearer A's 1 than A's inf
    assert spec["labels"][-1].startswith("Final samples · A final sample · B final sample")
    assert spec["positions"] == 4  # sigma inf, 2, 1, then the final samples
    assert spec["cursor"]["x"] == [1.0, 1.0, 1.0, 1.0]  # A's inf has no place on an axis: its nearest finite level
    assert cursor_values(np.array([np.inf, 3.0, 1.0])) == [3.0, 3.0, 1.0]


# -- the three families of the fixtures ---------------------------------------------------------------------------


def levels_of(path: object, measure: str) -> np.ndarray:
    with open_trace(path) as trace:  # type: ignore[arg-type]
        return noise_level(trace.column("alpha_bar_t"), measure)


def test_the_families_from_one_x_t_line_up_by_noise_level_not_by_t(traces: Traces) -> None:
    """A flow trace's t is its grid index, so by t its step 2 (flow time 0.98, log SNR -7.8) would sit beside DDIM's
    second step (log SNR -11.3); by level it sits beside the DDIM step of nearest log SNR. Heun's first level is the
    schedule's sigma_{T-1}, DDIM's first step: the same level."""
    ddim, heun, flow = (levels_of(p, "log_snr") for p in (traces.family_ddim, traces.family_heun, traces.family_flow))
    assert ddim[0] == pytest.approx(heun[0], abs=1e-9) and flow[0] == -np.inf
    match = nearest(flow[1:2], ddim)[0]
    assert abs(ddim[match] - flow[1]) == np.abs(ddim - flow[1]).min() and match > 5
    with open_trace(traces.family_flow) as trace:
        assert trace.column("t")[1] == 48  # by t it would have been DDIM's step 2
    sigma = levels_of(traces.family_heun, "sigma")
    with open_trace(traces.family_heun) as trace:
        np.testing.assert_allclose(sigma, trace.column("sigma_t"), rtol=1e-12)  # alpha_bar_t = 1 / (1 + sigma_t^2)
    with open_trace(traces.family_flow) as trace:
        np.testing.assert_allclose(levels_of(traces.family_flow, "flow_t"), trace.column("t_flow"), rtol=1e-12, atol=1e-15)


def test_distances_by_noise_level_are_zero_against_itself_and_small_at_both_ends_across_families(traces: Traces) -> None:
    infos = [loaders.info(loaders.open_handle(p)) for p in (traces.family_ddim, traces.family_heun, traces.family_flow)]
    a = infos[0]
    for measure in MEASURES:
        x, d = loaders.aligned_distance(a.path, a.inode, a.rows, a.path, a.inode, a.rows, "x0_pred", measure)
        np.testing.assert_array_equal(x, levels_of(traces.family_ddim, measure))
        assert np.all(d == 0)
        for b in infos[1:]:  # the same data law and x_T: x0_pred is the data mean at pure noise, and close at the clean end
            x, d = loaders.aligned_distance(a.path, a.inode, a.rows, b.path, b.inode, b.rows, "x0_pred", measure)
            assert d[0] < 0.01 and d[-1] < 0.05 and np.all(np.isfinite(d))
    x, d = loaders.aligned_distance(a.path, a.inode, a.rows, a.path, a.inode, a.rows, "x0_pred", None)  # by t
    np.testing.assert_array_equal(x, np.arange(49, -1, -1))
