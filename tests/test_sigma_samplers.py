"""The sigma-space samplers (tracer/samplers/karras.py; euler, heun, euler_ancestral, dpmpp_2m): their noise levels,
closed forms with the exact Gaussian predictor, `noisescope check` on their traces (passing, and failing where a step
is damaged), the NOISE LEFT verdict, and bad options refused by the command line.

Closed form: for data N(mu, s^2 I) the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma with the exact
denoiser D = mu + s^2 / (s^2 + sigma^2) (x - mu) has the solution x(sigma) - mu = sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_0^2)
(x(sigma_0) - mu): every deterministic sampler with many steps lands on it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tracer.check import check_trace
from tracer.cli import main
from tracer.config import ConfigError
from tracer.equations.context import TraceFacts
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers import SAMPLERS, SamplerConfig, karras
from tracer.samplers.loop import run
from tracer.schedules import Schedule, make_schedule
from tracer.trace.reader import open_trace

from tests.equations.traces import edit, set_scalar

SIGMA_SAMPLERS = ("euler", "heun", "euler_ancestral", "dpmpp_2m")
MEAN, STD = torch.tensor([0.5, -0.3], dtype=torch.float64), 0.4


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return make_schedule("linear", 1000)


@pytest.fixture(scope="module")
def oracle(schedule: Schedule) -> GaussianOracle:
    return GaussianOracle(schedule, MEAN, STD)


def sample(oracle: GaussianOracle, schedule: Schedule, name: str, z: torch.Tensor, seed: int = 1, **options: object) -> list:
    return list(run(oracle, schedule, SamplerConfig(name, **options), z, generator=torch.Generator().manual_seed(seed)))


def test_every_sigma_sampler_is_registered_in_sigma_space() -> None:
    for name in SIGMA_SAMPLERS:
        assert getattr(SAMPLERS[name], "SPACE", "vp") == "sigma"


# -- noise levels and timesteps -------------------------------------------------------------------------------


def test_karras_levels_follow_eq_5_and_end_at_zero(schedule: Schedule) -> None:
    resolved = SamplerConfig("euler", steps=8, rho=3.0).resolve(schedule.T, schedule.alpha_bar)
    levels = karras.schedule_sigmas(schedule.alpha_bar.tolist())
    assert resolved.sigma_min == levels[0] and resolved.sigma_max == levels[-1]
    sigmas = np.array(resolved.sigmas)
    assert sigmas[-1] == 0.0 and len(sigmas) == 9
    roots = sigmas[:-1] ** (1 / 3.0)  # Eq. 5: sigma^(1/rho) is linear in i
    assert np.allclose(np.diff(roots), np.diff(roots)[0], rtol=1e-12, atol=0)
    assert math.isclose(sigmas[0], levels[-1], rel_tol=1e-12) and math.isclose(sigmas[-2], levels[0], rel_tol=1e-12)


def test_exponential_levels_are_equal_steps_in_log_sigma(schedule: Schedule) -> None:
    sigmas = np.array(SamplerConfig("dpmpp_2m", steps=6, sigma_schedule="exponential").resolve(schedule.T, schedule.alpha_bar).sigmas)
    assert np.allclose(np.diff(np.log(sigmas[:-1])), np.diff(np.log(sigmas[:-1]))[0], rtol=1e-12, atol=0)


def test_schedule_levels_are_the_schedules_own_at_ddims_timesteps(schedule: Schedule) -> None:
    resolved = SamplerConfig("heun", steps=10, sigma_schedule="schedule", spacing="trailing").resolve(schedule.T, schedule.alpha_bar)
    from tracer.samplers.timesteps import ddim_timesteps

    ts = ddim_timesteps(schedule.T, 10, "trailing")
    assert resolved.timesteps == pytest.approx([float(t) for t in ts], abs=1e-9)
    a = schedule.alpha_bar[ts]
    assert np.allclose(resolved.sigmas[:-1], np.sqrt((1 - a) / a), rtol=1e-14)


def test_timesteps_interpolate_log_sigma_and_round_trip(schedule: Schedule) -> None:
    log_sigmas = [math.log(s) for s in karras.schedule_sigmas(schedule.alpha_bar.tolist())]
    for t in (0.0, 3.25, 417.5, 998.999, 999.0):
        sigma = karras.t_to_sigma(t, log_sigmas)
        assert karras.sigma_to_t(sigma, log_sigmas) == pytest.approx(t, abs=1e-9)
    # halfway in log sigma between two indices is halfway in t
    mid = math.exp(0.5 * (log_sigmas[10] + log_sigmas[11]))
    assert karras.sigma_to_t(mid, log_sigmas) == pytest.approx(10.5, abs=1e-12)


def test_the_network_gets_the_timestep_of_the_noise_level_and_its_scaled_input(schedule: Schedule) -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    class Spy(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
            seen.append((x.clone(), t.clone()))
            return torch.zeros_like(x)

    z = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    records = list(run(Spy(), schedule, SamplerConfig("euler", steps=4), z))
    for (x_in, t), record in zip(seen, records):
        assert t.dtype == torch.float64 and torch.all(t == record.t_model)
        assert torch.allclose(x_in, record.x_t / math.sqrt(1 + record.sigma_t**2), rtol=1e-14, atol=0)
        assert record.t == round(record.t_model) and record.alpha_bar_t == pytest.approx(1 / (1 + record.sigma_t**2), rel=1e-15)
    assert not float(records[0].t_model).is_integer()  # karras levels fall between schedule indices


def test_start_sigma_and_start_vp_from_the_same_z(oracle: GaussianOracle, schedule: Schedule) -> None:
    z = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for start, scale in (("sigma", lambda s: s), ("vp", lambda s: math.sqrt(1 + s * s))):
        first = sample(oracle, schedule, "euler", z, steps=3, start=start)[0]
        assert torch.allclose(first.x_t, z * scale(first.sigma_t), rtol=1e-15, atol=0)
    # start vp: the network's first input is z itself, as DDIM's x_T
    vp = sample(oracle, schedule, "euler", z, steps=3, start="vp", sigma_schedule="schedule", spacing="trailing")[0]
    assert torch.allclose(vp.x_t * math.sqrt(vp.alpha_bar_t), z, rtol=1e-14, atol=0)


# -- closed forms with the exact predictor ----------------------------------------------------------------------


def exact_flow(x_start: torch.Tensor, sigma_start: float, sigma: float) -> torch.Tensor:
    return MEAN + math.sqrt(STD**2 + sigma**2) / math.sqrt(STD**2 + sigma_start**2) * (x_start - MEAN)


def flow_error(oracle: GaussianOracle, schedule: Schedule, name: str, steps: int, z: torch.Tensor) -> float:
    """max |x - exact| at the last level above 0 (the step to 0 is one Euler step by every sampler's convention)."""
    records = sample(oracle, schedule, name, z, steps=steps, sigma_schedule="exponential")
    last = records[-1]
    return float((last.x_t - exact_flow(records[0].x_t, records[0].sigma_t, last.sigma_t)).abs().max())


def test_deterministic_samplers_follow_the_exact_ode_and_heun_converges_faster(oracle: GaussianOracle, schedule: Schedule) -> None:
    z = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    errors = {name: [flow_error(oracle, schedule, name, n, z) for n in (10, 20, 40)] for name in ("euler", "heun", "dpmpp_2m")}
    euler, heun, dpm = errors["euler"], errors["heun"], errors["dpmpp_2m"]
    assert euler[0] / euler[1] == pytest.approx(2.0, rel=0.25) and euler[1] / euler[2] == pytest.approx(2.0, rel=0.25)  # first order
    assert heun[0] / heun[1] > 3.0 and heun[1] / heun[2] > 3.5  # second order
    assert dpm[1] / dpm[2] > 3.0  # second order (multistep)
    assert heun[2] < euler[2] / 5 and dpm[2] < euler[2] / 5


def test_with_many_steps_every_deterministic_sampler_lands_on_the_data_law(oracle: GaussianOracle, schedule: Schedule) -> None:
    """From x = sigma_max z the exact flow gives N(mu, s^2 sigma_max^2 / (s^2 + sigma_max^2)): N(mu, s^2) but for a 4e-6 relative shrink."""
    z = torch.randn(8000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for name in ("euler", "heun", "dpmpp_2m"):
        records = sample(oracle, schedule, name, z, steps=200)
        x, sigma_max = records[-1].x_prev, records[0].sigma_t
        law_std = STD * sigma_max / math.sqrt(STD**2 + sigma_max**2)
        # 8000 samples: the mean's standard error is 0.4 / sqrt(8000) = 0.0045 per coordinate, the std's 0.0032
        assert torch.allclose(x.mean(0), MEAN, atol=0.02), name
        assert torch.allclose(x.std(0), torch.full((2,), law_std, dtype=torch.float64), atol=0.015), name


def test_euler_ancestral_with_eta_1_samples_the_data_law_to_first_order(oracle: GaussianOracle, schedule: Schedule) -> None:
    """The mean lands on mu; the std falls short of s by an error that halves when the steps double (a first-order method)."""
    z = torch.randn(20000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    deficits = []
    for steps in (50, 100, 200):
        x = sample(oracle, schedule, "euler_ancestral", z, steps=steps, start="vp")[-1].x_prev
        assert torch.allclose(x.mean(0), MEAN, atol=0.015)  # standard error 0.4 / sqrt(20000) = 0.003
        deficits.append(STD - float(x.std(0).mean()))
    assert deficits[0] / deficits[1] == pytest.approx(2.0, rel=0.3) and deficits[1] / deficits[2] == pytest.approx(2.0, rel=0.3)


def test_euler_ancestral_with_eta_0_is_euler_and_draws_nothing(oracle: GaussianOracle, schedule: Schedule) -> None:
    z = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ancestral, euler = sample(oracle, schedule, "euler_ancestral", z, steps=6, eta=0.0), sample(oracle, schedule, "euler", z, steps=6)
    assert torch.equal(ancestral[-1].x_prev, euler[-1].x_prev)
    assert all(r.sigma == 0 and not r.noise.any() for r in ancestral)


def test_euler_with_an_eps_network_is_ddim_with_eta_0_on_the_same_levels(oracle: GaussianOracle, schedule: Schedule) -> None:
    """Song et al. 2021, Eq. 14: DDIM is the Euler method in sigma space. Same timesteps, same first network input."""
    z = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    euler = sample(oracle, schedule, "euler", z, steps=10, sigma_schedule="schedule", spacing="trailing", start="vp")
    ddim = list(run(oracle, schedule, SamplerConfig("ddim", steps=10, spacing="trailing"), z))
    for e, d in zip(euler, ddim):
        assert e.t == d.t and torch.allclose(e.x_t * math.sqrt(e.alpha_bar_t), d.x_t, rtol=0, atol=1e-12)
    assert torch.allclose(euler[-1].x_prev, ddim[-1].x_prev, rtol=0, atol=1e-12)


def test_dpmpp_2m_records_what_it_combined(oracle: GaussianOracle, schedule: Schedule) -> None:
    z = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    records = sample(oracle, schedule, "dpmpp_2m", z, steps=5)
    assert not records[0].x0_pred_prev.any() and records[0].r == 0
    for previous, record in zip(records, records[1:]):
        assert torch.equal(record.x0_pred_prev, previous.x0_pred)
        assert record.h == pytest.approx(math.log(record.sigma_t / record.sigma_next)) if record.sigma_next else record.h == math.inf
    assert records[-1].r == 0 and records[2].r == pytest.approx(records[1].h / records[2].h)


def test_heun_calls_the_network_twice_but_at_the_last_step(schedule: Schedule, oracle: GaussianOracle) -> None:
    calls = []

    def counting(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        calls.append(float(t[0]))
        return oracle(x, t, labels)

    z = torch.randn(2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    records = list(run(counting, schedule, SamplerConfig("heun", steps=5), z))
    assert len(calls) == 2 * 5 - 1
    assert not records[-1].eps_2.any() and torch.equal(records[-1].x_euler, records[-1].x_prev)


# -- check: every trace passes, a damaged step fails -----------------------------------------------------------


CASES = {
    "euler": ({}, "x_t", "euler.step"),
    "euler churn": ({"s_churn": 2.0, "s_tmin": 0.05, "s_tmax": 50.0}, "x_hat", "sigma.churn"),
    "heun": ({}, "x_euler", "heun.predictor"),
    "heun churn": ({"s_churn": 1.0, "s_noise": 1.003}, "x0_pred_2", "sigma.denoised"),
    "euler_ancestral": ({"eta": 0.7}, "noise", "euler_ancestral.step"),
    "dpmpp_2m": ({}, "x0_pred_prev", "dpmpp_2m.step"),
    "dpmpp_2m schedule": ({"sigma_schedule": "schedule", "spacing": "trailing"}, "x_t", "dpmpp_2m.step"),
}


def record(path: Path, name: str, prediction: str = "eps", guidance: float | None = None, **options: object) -> Path:
    schedule = make_schedule("linear", 100)
    model = GaussianOracle(schedule, torch.tensor([[0.6, 0.4], [-0.5, -0.2]]), 0.3, per_class=True, prediction=prediction)
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(4, 2, generator=generator)
    labels = torch.tensor([0, 1, 0, 1]) if guidance is not None else None
    record_run(model, schedule, SamplerConfig(name, steps=8, guidance=guidance, **options), x_T=z, labels=labels, generator=generator,
               out=path, overwrite=True, progress=False)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_a_trace_passes_check_and_a_damaged_step_fails(tmp_path: Path, case: str) -> None:
    options, damaged, failing = CASES[case]
    name = case.split()[0]
    path = record(tmp_path / "t.h5", name, **options)
    with open_trace(path) as trace:
        report = check_trace(trace)
        assert report.verdict == "PASS", [(c.id, c.failing) for c in report.failed] or report.unchecked
        ids = {c.id for c in report.checks}
        assert {"sigma.alpha_bar", "sigma.timestep", "sigma.denoised", "chain.sigma", SAMPLERS[name].STEP_EQUATION} <= ids
        assert "x0_from_eps" not in ids and "schedule.alpha_bar_t" not in ids
        assert ("sigma.churn" in ids) == ("s_churn" in options)
    edit(path, damaged, 3, 0.05)
    with open_trace(path) as trace:
        report = check_trace(trace)
        assert report.verdict == "FAIL"
        assert 3 in next(c for c in report.checks if c.id == failing).failing


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_x0_and_v_networks_with_guidance_pass_check_in_sigma_space(tmp_path: Path, prediction: str) -> None:
    for name in ("heun", "dpmpp_2m"):
        path = record(tmp_path / f"{name}.h5", name, prediction=prediction, guidance=2.0)
        with open_trace(path) as trace:
            report = check_trace(trace)
            assert report.verdict == "PASS", [(c.id, c.failing) for c in report.failed] or report.unchecked
            assert {"prediction.conversion", "guidance.combine"} <= {c.id for c in report.checks}
        edit(path, "model_output", 2, 0.05)
        with open_trace(path) as trace:
            assert 2 in next(c for c in check_trace(trace).checks if c.id == "prediction.conversion").failing


def test_a_damaged_noise_level_fails_its_checks(tmp_path: Path) -> None:
    path = record(tmp_path / "t.h5", "euler")
    set_scalar(path, "sigma_t", 4, 0.5)
    with open_trace(path) as trace:
        failed = {c.id for c in check_trace(trace).failed}
    assert {"chain.sigma", "sigma.alpha_bar", "sigma.timestep"} <= failed


def test_a_run_that_ends_above_sigma_0_is_not_a_pass_but_says_how_much_noise_is_left(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = record(tmp_path / "t.h5", "euler", final_sigma="sigma_min")
    with open_trace(path) as trace:
        facts = TraceFacts.of(trace)
        report = check_trace(trace)
    assert facts.final_sigma and facts.final_sigma > 0
    assert not report.failed and report.verdict == "NOISE LEFT" and report.exit_code == 4
    assert report.noise_left == pytest.approx(facts.final_sigma)
    assert main(["check", str(path)]) == 4
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("NOISE LEFT: ") and f"{facts.final_sigma:.6g}" in last


# -- bad options: one line, exit 2, nothing written ---------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sigma-cli") / "run"
    assert main(["train", "--dataset", "moons", "--steps", "5", "--timesteps", "50", "--channels", "16,16",
                 "--snapshot-every", "0", "--out", str(out), "--quiet"]) == 0
    return out


BAD = {
    "rho 0": (["--sampler", "euler", "--rho", "0"], "--rho must be a finite number > 0"),
    "rho negative": (["--sampler", "heun", "--rho", "-7"], "--rho must be a finite number > 0"),
    "negative churn": (["--sampler", "euler", "--s-churn", "-1"], "--s-churn must be >= 0"),
    "sigma_min above sigma_max": (["--sampler", "dpmpp_2m", "--sigma-min", "2", "--sigma-max", "1"], "--sigma-min must be below --sigma-max"),
    "sigma_min above the schedule's sigma_max": (["--sampler", "euler", "--sigma-min", "1e6"], "--sigma-min must be below --sigma-max"),
    "sigma_max outside the schedule": (["--sampler", "euler", "--sigma-max", "1e6"], "outside the schedule's range"),
    "steps 0": (["--sampler", "euler_ancestral", "--steps", "0"], "--steps must be at least 1"),
    "eta above 1": (["--sampler", "euler_ancestral", "--eta", "1.5"], "--eta must lie in [0, 1]"),
    "unknown sigma schedule": (["--sampler", "heun", "--sigma-schedule", "cosine"], "unknown sigma schedule 'cosine'"),
    "churn with dpmpp_2m": (["--sampler", "dpmpp_2m", "--s-churn", "1"], "--s-churn does not apply to --sampler dpmpp_2m"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_sigma_options_are_refused_in_one_line(run_dir: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_cli_bad_input import refused

    args, fragment = BAD[case]
    out = tmp_path / "t.h5"
    refused(capsys, main(["sample", "--checkpoint", str(run_dir), *args, "--out", str(out)]), fragment)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_the_cli_samples_each_sigma_sampler_into_a_trace_that_passes(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in SIGMA_SAMPLERS:
        out = tmp_path / f"{name}.h5"
        assert main(["sample", "--checkpoint", str(run_dir), "--sampler", name, "--steps", "5", "--batch", "3", "--out", str(out), "--quiet"]) == 0
        assert main(["check", str(out)]) == 0, capsys.readouterr().out


def test_options_are_checked_once_in_their_dataclass() -> None:
    with pytest.raises(ConfigError, match="--s-tmax must be >= --s-tmin"):
        SamplerConfig("heun", s_tmin=2.0, s_tmax=1.0)
    with pytest.raises(ConfigError, match="needs the schedule's alpha_bar"):
        SamplerConfig("euler").resolve(100)
    zero_snr = make_schedule("linear", 100, zero_terminal_snr=True)
    with pytest.raises(ConfigError, match="zero terminal SNR"):
        SamplerConfig("euler").resolve(100, zero_snr.alpha_bar)
