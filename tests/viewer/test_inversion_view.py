"""The round trip of a DDIM inversion in Compare: the pure builders (no Streamlit), then the page under AppTest.

The traces are real: ``record_round_trip`` with the exact Gaussian oracle (tracer/models/analytic.py),
on 1x8x8 images and on 2-D points, so the expected numbers are read back from the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from streamlit.testing.v1 import AppTest

from tracer.inversion import record_round_trip
from tracer.models.analytic import GaussianOracle
from tracer.samplers.config import SamplerConfig
from tracer.schedules import make_schedule
from tracer.trace.reader import open_trace
from viewer.figures.inversion import (
    SAMPLES,
    line_up,
    round_trip_error_figure,
    round_trip_images_figure,
    round_trip_points_figure,
    state_error,
    states,
)
from viewer.panels.playback import DRAWN_WHOLE
from viewer.paths import ROOTS_ENV
from tests.viewer.conftest import no_failures

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "viewer" / "app.py"
RNG = np.random.default_rng(0)


# -- pure builders ------------------------------------------------------------------------------------------


def test_states_and_line_up_pair_the_two_ways_by_t() -> None:
    inversion = states(np.array([0, 10, 20]), np.array([10, 20, 30]), has_samples=True)
    resample = states(np.array([30, 20, 10]), np.array([20, 10, 0]), has_samples=True)
    assert inversion == {0: 0, 10: 1, 20: 2, 30: SAMPLES} and resample == {30: 0, 20: 1, 10: 2, 0: SAMPLES}
    assert line_up(inversion, resample) == [(0, 0, SAMPLES), (10, 1, 2), (20, 2, 1), (30, SAMPLES, 0)]
    assert states(np.array([0, 10]), np.array([10, 20]), has_samples=False) == {0: 0, 10: 1}  # x at 20 not written yet


def test_state_error_is_the_mean_rms_distance_and_the_max() -> None:
    a = np.zeros((2, 4))
    b = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0]])
    rms, top = state_error(a, b)
    assert rms == pytest.approx((1.0 + 1.0) / 2) and top == 2.0
    with pytest.raises(ValueError):
        state_error(np.zeros((1, 3)), np.zeros((1, 4)))


def test_round_trip_figures_carry_the_numbers_and_are_valid_plotly() -> None:
    t, rms, top = np.array([0, 10, 20]), np.array([0.1, 0.05, 0.0]), np.array([0.3, 0.1, 0.0])
    error = round_trip_error_figure(t, rms, top, cursor_t=10)
    np.testing.assert_array_equal(error.data[0].x, t)
    np.testing.assert_array_equal(error.data[0].y, rms)
    np.testing.assert_array_equal(error.data[1].y, top)
    assert error.layout.shapes[0].x0 == 10
    images = RNG.uniform(-1, 1, (3, 1, 4, 4))
    back = images + 0.01
    grid = round_trip_images_figure(images, RNG.standard_normal((3, 1, 4, 4)), back, 980)
    heatmaps = [d for d in grid.data if isinstance(d, go.Heatmap)]
    assert len(heatmaps) == 4
    diff = np.asarray(heatmaps[3].z, dtype=np.float64)
    np.testing.assert_allclose(diff[~np.isnan(diff)], 0.01, atol=1e-6)  # re-sampled − input, tile by tile
    assert any("t = 980" in a.text for a in grid.layout.annotations)
    points = round_trip_points_figure(RNG.standard_normal((5, 2)), RNG.standard_normal((5, 2)), RNG.standard_normal((5, 2)))
    assert [d.name for d in points.data] == ["input → re-sampled", "x<sub>T</sub> found", "input", "re-sampled"]
    for fig in (error, grid, points):
        go.Figure(fig.to_dict())  # raises on any property plotly does not know


# -- the page ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inversion-view")
    schedule = make_schedule("linear", 50)
    mean = torch.linspace(-0.8, 0.8, 64).reshape(1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    x0 = (mean + 0.4 * torch.randn(4, 1, 8, 8, generator=generator)).clamp(-1, 1)
    record_round_trip(GaussianOracle(schedule, mean, 0.4), schedule, SamplerConfig("ddim-inversion", steps=10), x0=x0, labels=None,
                      out=folder / "inv.h5", progress=False)
    points = torch.tensor([[0.5, -0.3], [0.1, 0.2], [-0.4, 0.6]])
    record_round_trip(GaussianOracle(schedule, torch.tensor([0.5, -0.3]), 0.4), schedule, SamplerConfig("ddim-inversion", steps=25),
                      x0=points, labels=None, out=folder / "points.h5", progress=False)
    return folder


def run_app(root: Path, monkeypatch: pytest.MonkeyPatch, **query: str) -> AppTest:
    monkeypatch.setenv(ROOTS_ENV, str(root))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state[DRAWN_WHOLE] = True  # the playback page whole from the first run (not the player alone, then the rest)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()




def test_compare_shows_the_round_trip_of_a_linked_pair(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = run_app(root, monkeypatch, view="compare", compare="inv.h5,inv.resample.h5")
    no_failures(at)
    assert [tab.label for tab in at.tabs][:2] == ["Round trip", "Side by side"]
    with open_trace(root / "inv.h5") as inv, open_trace(root / "inv.resample.h5") as res:
        x0, back = inv.tensor("x_t", 0).astype(np.float64), res.final("samples").astype(np.float64)
    diff = (back - x0).reshape(len(x0), -1)
    rms = float(np.mean(np.linalg.norm(diff, axis=1) / np.sqrt(diff.shape[1])))
    (caption,) = [c.value for c in at.caption if c.value.startswith("Round trip over the samples shown")]
    assert f"RMS {rms:.4g}" in caption and f"max |·| {np.max(np.abs(diff)):.4g}" in caption
    assert len(at.get("plotly_chart")) >= 4  # the round trip's images and error, side by side, the distances


def test_an_inversion_picked_alone_brings_in_its_resampling(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = run_app(root, monkeypatch, view="compare", compare="points.h5")
    no_failures(at)
    assert any("is linked to" in c.value and "points.resample.h5" in c.value for c in at.caption)
    assert at.tabs[0].label == "Round trip"
    assert any(c.value.startswith("Round trip over the samples shown") for c in at.caption)


def test_without_its_resampling_the_inversion_says_where_it_is(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    shutil.copy(root / "inv.h5", tmp_path / "inv.h5")
    shutil.copy(root / "inv.h5", tmp_path / "copy.h5")
    at = run_app(tmp_path, monkeypatch, view="compare", compare="inv.h5,copy.h5")
    no_failures(at)
    assert any("inv.resample.h5" in i.value and "not among the viewer's traces" in i.value for i in at.info)
