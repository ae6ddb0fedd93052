"""DDPM and DDIM: update maths as invariants and cross-checks, config dispatch, seeds, bad input."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tracer.config import ConfigError
from tracer.samplers.config import SamplerConfig
from tracer.models.analytic import GaussianOracle
from tracer.samplers import ddim, ddpm, initial_noise, planned_steps, sample
from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule, make_schedule

TENSORS = ("x_t", "eps", "x0_pred", "noise", "x_prev", "eps_cond", "eps_uncond", "x0_pred_raw")


class ConstantEps:
    """A noise predictor that predicts the same eps for every input."""

    num_classes = 0
    null_label = None

    def __init__(self, eps: torch.Tensor) -> None:
        self.eps = eps

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.eps.expand_as(x).clone()


def _x_T(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:  # noqa: N802
    return initial_noise(shape, torch.Generator().manual_seed(seed), dtype=torch.float64)


def _check_chaining(records: list[StepRecord], schedule: Schedule, x_T: torch.Tensor) -> None:  # noqa: N803
    assert [r.index for r in records] == list(range(len(records)))
    assert torch.equal(records[0].x_t, x_T)
    for a, b in zip(records, records[1:]):
        assert a.t_prev == b.t and torch.equal(a.x_prev, b.x_t)
    for r in records:
        assert r.alpha_bar_t == schedule.alpha_bar_at(r.t) and r.alpha_bar_prev == schedule.alpha_bar_at(r.t_prev)
        assert r.alpha_t == pytest.approx(r.alpha_bar_t / r.alpha_bar_prev, rel=1e-12)
        assert r.beta_t == pytest.approx(1.0 - r.alpha_t, rel=1e-9, abs=1e-15)
        if r.sigma == 0:
            assert torch.count_nonzero(r.noise) == 0


# -- DDIM -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddim_eta0_constant_eps_keeps_x0_pred_fixed(schedule50: Schedule, spacing: str) -> None:
    # x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev) c, so the next x0_pred = (x_prev - sqrt(1 - ab_prev) c)/sqrt(ab_prev) = x0
    c = torch.tensor([0.3, -1.2], dtype=torch.float64)
    x_T = _x_T((8, 2))  # noqa: N806
    records = list(ddim.sample(ConstantEps(c), schedule50, x_T, steps=7, spacing=spacing))
    _check_chaining(records, schedule50, x_T)
    for r in records:
        assert r.sigma == 0 and r.x0_pred_raw is None
        torch.testing.assert_close(r.x0_pred, records[0].x0_pred, rtol=1e-12, atol=1e-12)
    assert records[-1].t_prev == -1
    torch.testing.assert_close(records[-1].x_prev, records[0].x0_pred, rtol=1e-12, atol=1e-12)  # alpha_bar_prev = 1 at the end


def test_ddim_clipping_clamps_x0_but_keeps_the_predicted_eps_in_the_direction(schedule50: Schedule) -> None:
    c = torch.tensor([0.3, -1.2], dtype=torch.float64)
    x_T = 3 * _x_T((64, 2))  # noqa: N806 - wide enough that x0_pred leaves [-1, 1]
    records = list(ddim.sample(ConstantEps(c), schedule50, x_T, steps=5, clip=True, final_alpha_bar="alpha_bar_0"))
    assert any(bool((r.x0_pred_raw.abs() > 1).any()) for r in records if r.x0_pred_raw is not None)
    for r in records:
        assert r.x0_pred_raw is not None
        torch.testing.assert_close(r.x0_pred, r.x0_pred_raw.clamp(-1, 1), rtol=0, atol=0)
        expected = math.sqrt(r.alpha_bar_prev) * r.x0_pred + math.sqrt(1 - r.alpha_bar_prev) * c  # Eq. 12, eta = 0
        torch.testing.assert_close(r.x_prev, expected, rtol=1e-12, atol=1e-12)
    last = records[-1]
    assert last.t_prev == 0 and last.alpha_bar_prev == schedule50.alpha_bar[0]


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_eta1_all_steps_equals_ddpm_beta_tilde(oracle50: GaussianOracle, schedule50: Schedule, clip: bool) -> None:
    # Eq. 16 with eta = 1 and t_prev = t - 1: sigma^2 = beta_tilde_t, and the Eq. 12 mean equals the posterior mean (Eq. 7)
    x_T = _x_T((32, 2))  # noqa: N806
    a = list(ddpm.sample(oracle50, schedule50, x_T, variance="beta_tilde", clip=clip, generator=torch.Generator().manual_seed(5)))
    b = list(ddim.sample(oracle50, schedule50, x_T, steps=50, eta=1.0, clip=clip, generator=torch.Generator().manual_seed(5)))
    assert len(a) == len(b) == 50
    for ra, rb in zip(a, b):
        assert (ra.t, ra.t_prev) == (rb.t, rb.t_prev)
        assert rb.sigma == pytest.approx(ra.sigma, rel=1e-10, abs=1e-15)
        assert torch.equal(ra.noise, rb.noise)  # the same draws in the same order
        if not clip:  # with clipping the two differ by design: DDIM's direction keeps the raw eps
            torch.testing.assert_close(rb.x_prev, ra.x_prev, rtol=1e-9, atol=1e-9)
    if clip:  # one step fed the DDPM record's inputs and noise: identical while x0_pred stayed inside [-1, 1]
        r = a[10]
        assert r.x0_pred_raw is not None and bool((r.x0_pred_raw.abs() < 1).all())
        x_prev = ddim.ddim_step(r.x0_pred, r.eps, r.alpha_bar_prev, ddim.ddim_sigma(r.alpha_bar_t, r.alpha_bar_prev, 1.0), r.noise)
        torch.testing.assert_close(x_prev, r.x_prev, rtol=1e-9, atol=1e-9)


# -- DDPM -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm_steps_scalars_and_noise(oracle50: GaussianOracle, schedule50: Schedule, variance: str) -> None:
    x_T = _x_T((16, 2))  # noqa: N806
    records = list(ddpm.sample(oracle50, schedule50, x_T, variance=variance, generator=torch.Generator().manual_seed(0)))
    _check_chaining(records, schedule50, x_T)
    assert [r.t for r in records] == list(range(49, -1, -1)) and records[-1].t_prev == -1
    for r in records:
        assert r.alpha_t == pytest.approx(schedule50.alpha[r.t], rel=1e-12)
        assert r.beta_t == pytest.approx(schedule50.beta[r.t], rel=1e-9)
        beta_tilde = (1 - r.alpha_bar_prev) / (1 - r.alpha_bar_t) * r.beta_t
        expected_var = 0.0 if r.t == 0 else (r.beta_t if variance == "beta" else beta_tilde)
        assert r.sigma**2 == pytest.approx(expected_var, rel=1e-12, abs=0)
        assert r.x0_pred_raw is not None  # clipping is on by default
        torch.testing.assert_close(r.x0_pred, r.x0_pred_raw.clamp(-1, 1), rtol=0, atol=0)
        # x_t is recovered from x0_pred_raw and eps (Eq. 4 read backwards)
        x_t = math.sqrt(r.alpha_bar_t) * r.x0_pred_raw + math.sqrt(1 - r.alpha_bar_t) * r.eps
        torch.testing.assert_close(x_t, r.x_t, rtol=1e-10, atol=1e-10)
    last = records[-1]
    torch.testing.assert_close(last.x_prev, last.x0_pred, rtol=1e-12, atol=1e-12)  # the t=0 posterior mean is x0_pred
    assert torch.count_nonzero(last.noise) == 0


def test_ddpm_without_clipping_records_no_raw_x0(oracle50: GaussianOracle, schedule50: Schedule) -> None:
    records = list(ddpm.sample(oracle50, schedule50, _x_T((4, 2)), clip=False, generator=torch.Generator().manual_seed(0)))
    assert all(r.x0_pred_raw is None for r in records)


# -- seeds ------------------------------------------------------------------------------------------


def _run(model: GaussianOracle, schedule: Schedule, config: SamplerConfig, seed: int) -> list[StepRecord]:
    g = torch.Generator().manual_seed(seed)
    x_T = initial_noise((8, 2), g)  # noqa: N806
    return list(sample(model, schedule, config, x_T, None, g))


@pytest.mark.parametrize("config", [SamplerConfig(sampler="ddpm"), SamplerConfig(sampler="ddim", steps=10, eta=0.5)])
def test_same_seed_bit_identical_different_seed_different(oracle50: GaussianOracle, schedule50: Schedule, config: SamplerConfig) -> None:
    a, b, c = (_run(oracle50, schedule50, config, seed) for seed in (3, 3, 4))
    for ra, rb in zip(a, b, strict=True):
        for field in dataclasses.fields(StepRecord):
            va, vb = getattr(ra, field.name), getattr(rb, field.name)
            assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb
    assert not torch.equal(a[0].x_t, c[0].x_t)
    assert not torch.equal(a[0].noise, c[0].noise)


# -- run.py: config dispatch and the seed-report preset ---------------------------------------------


def test_ddpm_and_ddim_start_from_the_same_x_T(oracle50: GaussianOracle, schedule50: Schedule) -> None:  # noqa: N802
    x_T = initial_noise((4, 2), torch.Generator().manual_seed(0))  # noqa: N806
    assert x_T.dtype == torch.float32 and x_T.shape == (4, 2)
    for config in (SamplerConfig(sampler="ddpm"), SamplerConfig(sampler="ddim", steps=5)):
        first = next(iter(sample(oracle50, schedule50, config, x_T)))
        assert torch.equal(first.x_t, x_T) and first.x_t.dtype == torch.float32


@pytest.mark.parametrize(
    "config",
    [
        SamplerConfig(sampler="ddpm"),
        SamplerConfig(sampler="ddim"),
        SamplerConfig(sampler="ddim", steps=7, spacing="trailing"),
        SamplerConfig(sampler="ddim", steps=7, preset="seed-report"),
        SamplerConfig(sampler="ddpm", preset="seed-report"),
    ],
)
def test_planned_steps_is_the_number_of_records(config: SamplerConfig) -> None:
    schedule = make_schedule("seed-report", 60)
    model = GaussianOracle(schedule, torch.zeros(2), 0.5)
    records = list(sample(model, schedule, config, _x_T((2, 2))))
    assert len(records) == planned_steps(schedule, config)
    if config.preset == "seed-report" and config.sampler == "ddim":
        assert len(records) == 8  # c = 60 // 7 = 8: 1, 9, ..., 57


def test_seed_report_ddim_preset() -> None:
    schedule = make_schedule("seed-report")  # T = 300
    model = GaussianOracle(schedule, torch.tensor([0.9, -0.9]), 0.3)
    x_T = 2 * _x_T((64, 2))  # noqa: N806
    records = list(sample(model, schedule, SamplerConfig(sampler="ddim", steps=10, preset="seed-report"), x_T))
    assert [r.t for r in records] == [271, 241, 211, 181, 151, 121, 91, 61, 31, 1]
    last = records[-1]
    assert last.t_prev == 0 and last.alpha_bar_prev == pytest.approx(0.999, rel=1e-12)
    for r in records:
        assert r.sigma == 0 and r.x0_pred_raw is not None
        torch.testing.assert_close(r.x0_pred, r.x0_pred_raw.clamp(-1, 1), rtol=0, atol=0)
        direction = math.sqrt(1 - r.alpha_bar_prev) * r.eps  # raw eps, even where x0_pred was clipped
        torch.testing.assert_close(r.x_prev, math.sqrt(r.alpha_bar_prev) * r.x0_pred + direction, rtol=1e-12, atol=1e-12)
    assert math.sqrt(1 - last.alpha_bar_prev) == pytest.approx(0.0316, abs=1e-4)  # the eps left in the output


def test_seed_report_ddpm_preset_clips_with_beta_tilde(oracle50: GaussianOracle, schedule50: Schedule) -> None:
    config = SamplerConfig(sampler="ddpm", preset="seed-report")
    records = list(sample(oracle50, schedule50, config, _x_T((4, 2)), None, torch.Generator().manual_seed(0)))
    r = records[5]
    assert r.x0_pred_raw is not None
    assert r.sigma**2 == pytest.approx((1 - r.alpha_bar_prev) / (1 - r.alpha_bar_t) * r.beta_t, rel=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sampler": "ddim", "eta": 0.5, "preset": "seed-report"},
        {"sampler": "ddim", "clip": False, "preset": "seed-report"},
        {"sampler": "ddim", "spacing": "trailing", "preset": "seed-report"},
        {"sampler": "ddpm", "variance": "beta", "preset": "seed-report"},
        {"sampler": "ddim", "steps": 51},
    ],
)
def test_configs_that_contradict_the_preset_or_T_raise(oracle50: GaussianOracle, schedule50: Schedule, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        sample(oracle50, schedule50, SamplerConfig(**kwargs), _x_T((2, 2)))  # type: ignore[arg-type]


def test_an_option_of_another_sampler_is_refused() -> None:
    with pytest.raises(ConfigError, match="--eta does not apply to --sampler ddpm"):
        SamplerConfig("ddpm", eta=0.5)
    with pytest.raises(ConfigError, match="--variance does not apply to --sampler ddim"):
        SamplerConfig("ddim", variance="beta")


# -- bad input, raised when the sampler is called (before any step) ---------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 10, "spacing": "uniform"}, "unknown spacing"),
        ({"steps": 0}, "steps"),
        ({"steps": 51}, "steps"),
        ({"steps": 10, "eta": -0.1}, "eta"),
        ({"steps": 10, "eta": 1.5}, "eta"),
        ({"steps": 10, "eta": float("nan")}, "eta"),
        ({"steps": 10, "final_alpha_bar": "zero"}, "final alpha_bar"),
        ({"steps": 10, "timesteps": [9, 5, 0]}, "either steps or timesteps"),
        ({"timesteps": [9, 9, 0]}, "descending"),
    ],
)
def test_ddim_bad_input_raises(oracle50: GaussianOracle, schedule50: Schedule, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ddim.sample(oracle50, schedule50, _x_T((2, 2)), **kwargs)  # type: ignore[arg-type]


def test_ddpm_bad_variance_raises(oracle50: GaussianOracle, schedule50: Schedule) -> None:
    with pytest.raises(ConfigError, match="unknown variance"):
        ddpm.sample(oracle50, schedule50, _x_T((2, 2)), variance="fixed_large")


@pytest.mark.parametrize("kwargs", [{"eta": 1.1}, {"eta": -0.5}, {"steps": 0}, {"spacing": "uniform"}, {"guidance": -1.0}, {"guidance": float("nan")}])
def test_sampler_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SamplerConfig(sampler="ddim", **kwargs)  # type: ignore[arg-type]
