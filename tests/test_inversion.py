"""DDIM inversion (Song et al. 2021, Sec. 4.3) against the exact noise predictor of Gaussian data.

For data N(mu, s^2 I) and the exact eps, every DDIM step with eta 0 is affine in
y_t = x_t - sqrt(alpha_bar_t) mu (tests/test_oracle.py): from alpha_bar a to b, evaluated at a,

    y_b = N(a, b) / v_a * y_a,   N(a, b) = sqrt(a b) s^2 + sqrt((1 - a)(1 - b)),   v_a = a s^2 + 1 - a.

The inversion steps from t_i up to t_{i+1} with eps at t_i; the re-sampling comes back down with
eps at t_{i+1}. So the round trip maps y_0 to R y_0 with R = prod N^2 / (v_a v_b), and by
Lagrange's identity v_a v_b - N^2 = s^2 (sqrt(a (1 - b)) - sqrt((1 - a) b))^2 = d_i v_a v_b >= 0:
0 <= 1 - R <= sum_i d_i =: B. The error resample - input is exactly (R - 1) y_0, so
|error| <= B |y_0|, and B is O(1 / steps) (each d_i is O(step^2)): the bound shrinks as the steps grow.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tracer.cli import main
from tracer.equations import STRUCTURAL_CHECKS
from tracer.equations.context import TraceFacts
from tracer.equations.evaluate import failing_steps
from tracer.inversion import default_resample_path, record_round_trip, resample_config
from tracer.models.analytic import GaussianOracle
from tracer.samplers import SAMPLERS, ddim_inversion
from tracer.samplers.config import SamplerConfig
from tracer.samplers.loop import run
from tracer.schedules import Schedule, make_schedule
from tracer.trace.reader import open_trace
from tracer.trace.sampling import record_sampling

STD = 0.5


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def schedule1000() -> Schedule:
    return make_schedule("linear", 1000)


def image_mean() -> torch.Tensor:
    return torch.linspace(-0.8, 0.8, 64, dtype=torch.float64).reshape(1, 8, 8)


def data(batch: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return image_mean() + STD * torch.randn(batch, 1, 8, 8, generator=generator, dtype=torch.float64)


def round_trip_bound(schedule: Schedule, timesteps: list[int], s: float) -> tuple[float, float]:
    """(1 - R, B) of the module docstring for an inversion over ``timesteps`` (ascending, from 0)."""
    gain, bound = 1.0, 0.0
    for lo, hi in zip(timesteps, timesteps[1:]):
        a, b = float(schedule.alpha_bar[lo]), float(schedule.alpha_bar[hi])
        v_a, v_b = a * s * s + 1 - a, b * s * s + 1 - b
        n = math.sqrt(a * b) * s * s + math.sqrt((1 - a) * (1 - b))
        gain *= n * n / (v_a * v_b)
        bound += s * s * (math.sqrt(a * (1 - b)) - math.sqrt((1 - a) * b)) ** 2 / (v_a * v_b)
    return 1.0 - gain, bound


# -- the plan ------------------------------------------------------------------------------------------


def test_the_plugin_is_registered_torch_free_and_ascends() -> None:
    assert SAMPLERS["ddim-inversion"] is ddim_inversion
    assert ddim_inversion.DIRECTION == "ascending"
    assert "ddim_inversion.step" in [eq.id for eq in ddim_inversion.equations()]


@pytest.mark.parametrize(("spacing", "first", "last", "updates"), [("leading", (0, 20), (960, 980), 49), ("trailing", (0, 19), (979, 999), 50),
                                                                      ("linspace", (0, 20), (979, 999), 49)])
def test_the_plan_climbs_ddims_timesteps_from_0_to_the_largest(spacing: str, first: tuple[int, int], last: tuple[int, int], updates: int) -> None:
    config = SamplerConfig("ddim-inversion", steps=50, spacing=spacing)
    pairs = config.plan(1000)
    assert pairs[0] == first and pairs[-1] == last and len(pairs) == updates
    assert all(t < t_next for t, t_next in pairs)
    assert all(a[1] == b[0] for a, b in zip(pairs, pairs[1:]))  # t_prev of step i is t of step i + 1
    resolved = config.resolved(1000)
    assert resolved["sampler"] == "ddim-inversion" and resolved["timesteps"][0] == 0 and resolved["timesteps"][-1] == last[1]


def test_the_resample_goes_back_over_the_same_timesteps_to_t_0() -> None:
    inversion = SamplerConfig("ddim-inversion", steps=10, spacing="trailing")
    back = resample_config(inversion, 1000)
    pairs, down = inversion.plan(1000), back.plan(1000)
    assert back.sampler == "ddim" and back.eta == 0.0
    assert down == [(hi, lo) for lo, hi in reversed(pairs)]  # the mirror: 999 -> 899 ... 99 -> 0


@pytest.mark.parametrize(("options", "fragment"), [({"steps": 1}, "at least --steps 2"), ({"spacing": "seed-report"}, "unknown spacing"),
                                                   ({"eta": 0.5}, "--eta does not apply"), ({"timesteps": (5, 10)}, "start at 0"),
                                                   ({"timesteps": (0, 10, 5)}, "strictly ascending")])
def test_bad_options_are_refused_in_one_line(options: dict[str, object], fragment: str) -> None:
    from tracer.config import ConfigError

    with pytest.raises(ConfigError, match=fragment):
        SamplerConfig("ddim-inversion", **options).plan(1000)  # type: ignore[arg-type]


# -- the round trip with the exact predictor ----------------------------------------------------------------


def test_round_trip_error_is_the_derived_one_and_shrinks_as_steps_grow(schedule1000: Schedule, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    oracle = GaussianOracle(schedule1000, image_mean(), STD)
    x0 = data()
    y0 = (x0 - math.sqrt(float(schedule1000.alpha_bar[0])) * image_mean()).abs().max().item()
    errors, bounds = [], []
    for steps in (10, 50, 200):
        config = SamplerConfig("ddim-inversion", steps=steps)
        out = tmp_path / f"inv{steps}.h5"
        result = record_round_trip(oracle, schedule1000, config, x0=x0, labels=None, out=out, progress=False)
        timesteps = list(config.resolve(1000).timesteps or ())
        deficit, bound = round_trip_bound(schedule1000, timesteps, STD)
        assert 0.0 <= deficit <= bound
        # the error is exactly (R - 1) y_0: compare element-wise with the derivation
        y = x0 - math.sqrt(float(schedule1000.alpha_bar[0])) * image_mean()
        torch.testing.assert_close(result.resampled - x0, -deficit * y, rtol=1e-6, atol=1e-9)
        assert result.max_error <= bound * y0 + 1e-9
        errors.append(result.max_error)
        bounds.append(bound)
        # every trace written passes noisescope check
        for path in (out, default_resample_path(out)):
            assert main(["check", str(path)]) == 0, capsys.readouterr().out
        capsys.readouterr()
    assert errors[0] > errors[1] > errors[2] and bounds[0] > bounds[1] > bounds[2]
    assert errors[2] < 0.05 and errors[1] < 0.2  # loose absolute bounds (measured: 0.044 and 0.17)
    assert bounds[0] / bounds[2] > 10  # O(1 / steps): 20 times the steps, at least 10 times smaller


def test_the_traces_name_each_other_and_record_the_round_trip(schedule50: Schedule, tmp_path: Path) -> None:
    oracle = GaussianOracle(schedule50, torch.tensor([0.5, -0.3]), 0.4)
    x0 = torch.tensor([[0.2, 0.1], [0.9, -0.5]], dtype=torch.float64)
    out, back = tmp_path / "inv.h5", tmp_path / "sub" / "back.h5"
    back.parent.mkdir()
    result = record_round_trip(oracle, schedule50, SamplerConfig("ddim-inversion", steps=10), x0=x0, labels=None, out=out,
                               out_resample=back, progress=False)
    with open_trace(out) as inv, open_trace(back) as res:
        assert inv.config["linked"] == {"role": "inversion", "trace": "sub/back.h5"}
        assert res.config["linked"] == {"role": "resample", "trace": "../inv.h5"}
        t, t_prev = inv.column("t"), inv.column("t_prev")
        assert list(t) == [0, 5, 10, 15, 20, 25, 30, 35, 40] and int(t_prev[-1]) == 45
        np.testing.assert_allclose(inv.scalars()["alpha_bar_prev"], np.asarray(schedule50.alpha_bar)[t_prev])
        np.testing.assert_allclose(inv.tensor("x_t", 0), x0.numpy(), rtol=1e-6)  # the input, recorded as x at t = 0
        np.testing.assert_allclose(inv.final("samples"), result.x_T.numpy(), rtol=1e-6)  # samples: the x_T found
        np.testing.assert_allclose(res.tensor("x_t", 0), result.x_T.numpy(), rtol=1e-6)
        assert list(res.column("t")) == list(t_prev[::-1]) and int(res.column("t_prev")[-1]) == 0
    assert result.steps == 9 and result.t_end == 45


def test_a_class_conditional_round_trip_passes_check(class_oracle50: GaussianOracle, schedule50: Schedule, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    x0 = torch.tensor([[0.6, 0.4], [-0.5, -0.2]])
    labels = torch.tensor([0, 1])
    out = tmp_path / "inv.h5"
    result = record_round_trip(class_oracle50, schedule50, SamplerConfig("ddim-inversion", steps=25, spacing="trailing"), x0=x0,
                               labels=labels, out=out, progress=False)
    assert result.max_error < 0.1
    assert main(["check", str(out)]) == 0 and main(["check", str(default_resample_path(out))]) == 0, capsys.readouterr().out


# -- check: a tampered inversion step fails there; identification; the structural checks ----------------


@pytest.fixture
def inversion_trace(schedule50: Schedule, oracle50: GaussianOracle, tmp_path: Path) -> Path:
    x0 = torch.tensor([[0.2, 0.1], [0.9, -0.5], [0.0, 0.0]])
    out = tmp_path / "inv.h5"
    record_round_trip(oracle50, schedule50, SamplerConfig("ddim-inversion", steps=10), x0=x0, labels=None, out=out, progress=False)
    return out


def test_a_tampered_inversion_step_fails_check_at_that_step(inversion_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(inversion_trace, "r+") as f:
        f["steps/x_t"][4] = np.asarray(f["steps/x_t"][4]) + 1e-3  # the output of step 3
    with open_trace(inversion_trace) as trace:
        failing = failing_steps(trace)
    assert failing["ddim_inversion.step"] == [3]
    assert main(["check", str(inversion_trace)]) == 1
    assert "ddim_inversion.step" in capsys.readouterr().out


def test_noise_in_an_inversion_step_fails_check(inversion_trace: Path) -> None:
    with h5py.File(inversion_trace, "r+") as f:
        f["steps/sigma"][2] = 0.1  # with zero noise recorded Eq. 12 still holds: the step must say sigma 0
    with open_trace(inversion_trace) as trace:
        assert failing_steps(trace)["ddim_inversion.step"] == [2]


def test_the_last_step_must_land_at_the_largest_listed_timestep(inversion_trace: Path) -> None:
    with h5py.File(inversion_trace, "r+") as f:
        f["steps/t_prev"][-1] = 44  # the plan's largest is 45
    with open_trace(inversion_trace) as trace:
        failing = failing_steps(trace)
    assert failing["chain.t_prev"] == [8]


def test_an_unnamed_ascending_trace_is_identified_as_the_inversion(schedule50: Schedule, oracle50: GaussianOracle, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = SamplerConfig("ddim-inversion", steps=10)
    x0 = torch.tensor([[0.2, 0.1], [0.9, -0.5]])
    path = tmp_path / "bare.h5"
    record_sampling(run(oracle50, schedule50, config, x0), path, schedule=schedule50, config={}, planned=9, labels=None)
    with open_trace(path) as trace:
        facts = TraceFacts.of(trace)
        assert facts.sampler == "ddim-inversion" and facts.sampler_source == "identified"
        assert failing_steps(trace) == {}
    assert main(["check", str(path)]) == 0, capsys.readouterr().out
    assert "identified as ddim-inversion" in capsys.readouterr().out


def test_structural_checks_cover_the_inversion(inversion_trace: Path) -> None:
    from tracer.equations.evaluate import checks_for

    with open_trace(inversion_trace) as trace:
        ids = {c.id for c in checks_for(trace)}
    assert {c.id for c in STRUCTURAL_CHECKS} - {"chain.x_t", "chain.sigma", "chain.flow"} <= ids  # sigma-space and flow traces only
    assert "ddim.step" not in ids and "ddim.sigma" not in ids
