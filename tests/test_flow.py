"""Flow matching (tracer/samplers/flow.py; flow_euler, flow_heun): the time grid and its shift, closed forms with the
exact Gaussian velocity, step-for-step agreement with diffusers' FlowMatchEulerDiscreteScheduler, `noisescope check` on
flow traces (passing, and failing where a step is damaged), training with --objective flow on every data set, and bad
input refused in one line.

Closed form: for data N(mu, s^2 I) on the path x_t = (1 - t) x0 + t eps the exact velocity is
v*(x, t) = E[eps - x0 | x_t = x] = (t - (1 - t) s^2) (x - (1 - t) mu) / V_t - mu, V_t = (1 - t)^2 s^2 + t^2
(tracer/models/analytic.py, GaussianVelocity), and the ODE dx/dt = v* is linear: x(t) - (1 - t) mu = sqrt(V_t) x(1),
so x(0) = mu + s z from x(1) = z. Every sampler with many steps lands on it.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tracer.check import check_trace
from tracer.cli import main
from tracer.config import ConfigError, ModelConfig
from tracer.models.analytic import GaussianOracle, GaussianVelocity
from tracer.recording import record_run
from tracer.samplers import SAMPLERS, SamplerConfig, flow
from tracer.samplers.loop import run
from tracer.schedules import flow_alpha_bar, make_schedule
from tracer.trace.reader import open_trace

from tests.equations.traces import edit

MEAN, STD = torch.tensor([0.5, -0.3], dtype=torch.float64), 0.4
FLOW = make_schedule("flow")


def endpoint(name: str, steps: int, z: torch.Tensor, shift: float = 1.0) -> torch.Tensor:
    records = list(run(GaussianVelocity(MEAN, STD), FLOW, SamplerConfig(name, steps=steps, shift=shift), z))
    assert len(records) == steps
    return records[-1].x_prev


# -- the path, the schedule and the grid --------------------------------------------------------------------------


def test_the_flow_schedule_is_the_paths_snr_at_its_times() -> None:
    t = (np.arange(FLOW.T) + 1) / FLOW.T
    expected = (1 - t) ** 2 / ((1 - t) ** 2 + t**2)
    assert np.allclose(FLOW.alpha_bar, expected, rtol=1e-12, atol=1e-15)
    assert FLOW.alpha_bar[-1] == 0.0 and FLOW.beta[-1] == 1.0
    snr = (1 - t[:-1]) ** 2 / t[:-1] ** 2  # the SNR of x_t = (1 - t) x0 + t eps
    assert np.allclose(FLOW.alpha_bar[:-1] / (1 - FLOW.alpha_bar[:-1]), snr, rtol=1e-9)


def test_the_grid_is_uniform_then_shifted_as_sd3() -> None:
    times = SamplerConfig("flow_euler", steps=4, shift=3.0).resolve(FLOW.T, FLOW.alpha_bar).times
    uniform = [1.0, 0.75, 0.5, 0.25, 0.0]
    assert times == pytest.approx([3 * u / (1 + 2 * u) for u in uniform], abs=1e-15)
    assert SamplerConfig("flow_euler", steps=4).resolve(FLOW.T).times == pytest.approx(uniform)
    assert times[0] == 1.0 and times[-1] == 0.0  # the shift keeps both ends


def test_records_carry_the_time_its_noise_level_and_the_schedule_index() -> None:
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    records = list(run(GaussianVelocity(MEAN, STD), FLOW, SamplerConfig("flow_euler", steps=5, shift=2.0), z))
    times = SamplerConfig("flow_euler", steps=5, shift=2.0).resolve(FLOW.T).times
    for i, r in enumerate(records):
        assert (r.t_flow, r.t_flow_next) == (times[i], times[i + 1])
        assert r.alpha_bar_t == flow_alpha_bar(times[i]) and r.alpha_bar_prev == flow_alpha_bar(times[i + 1])
        assert r.t_model == times[i] * FLOW.T
        assert r.t == flow.schedule_index(times[i], FLOW.T)
    assert records[0].t == FLOW.T - 1 and records[0].alpha_bar_t == 0.0 and records[-1].t_prev == -1
    assert torch.equal(records[0].x_t, z)  # t = 1 is pure noise: x_T itself, as DDPM's and DDIM's start
    first = records[0]  # x0_pred = x - t v, eps = x + (1 - t) v
    assert torch.allclose(first.x0_pred, first.x_t - first.model_output) and torch.equal(first.eps, first.x_t)


# -- closed forms with the exact velocity ---------------------------------------------------------------------------


def test_the_exact_velocity_is_the_conditional_expectation() -> None:
    """v*(x, t) against a Monte Carlo regression: E[eps - x0 | x_t] from many (x0, eps) pairs, in 1-D bins of x_t."""
    gen = torch.Generator().manual_seed(3)
    n, t = 400_000, 0.6
    x0 = 0.7 + 0.5 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    eps = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    x_t = (1 - t) * x0 + t * eps
    oracle = GaussianVelocity(torch.tensor([0.7], dtype=torch.float64), 0.5)
    centre = torch.tensor([[0.0], [0.3], [0.6]], dtype=torch.float64)
    exact = oracle(centre, torch.full((3,), t * 1000.0))
    for c, v in zip(centre[:, 0], exact[:, 0], strict=True):
        near = (x_t[:, 0] - c).abs() < 0.01
        assert float((eps - x0)[near].mean()) == pytest.approx(float(v), abs=0.03)


@pytest.mark.parametrize("name", ["flow_euler", "flow_heun"])
def test_with_many_steps_the_sampler_lands_on_the_data_law(name: str) -> None:
    z = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = endpoint(name, 200, z, shift=3.0)
    assert torch.allclose(x.mean(0), MEAN, atol=0.01)
    assert torch.allclose(x.std(0), torch.full((2,), STD, dtype=torch.float64), atol=0.01)
    assert float((x - (MEAN + STD * z)).abs().max()) < (0.05 if name == "flow_euler" else 1e-4)  # the ODE's own map (Euler: first order)


def test_heuns_error_falls_faster_than_eulers() -> None:
    z = torch.randn(2_000, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact = MEAN + STD * z

    def error(name: str, steps: int) -> float:
        return float((endpoint(name, steps, z) - exact).abs().max())

    euler = [error("flow_euler", n) for n in (10, 20, 40)]
    heun = [error("flow_heun", n) for n in (10, 20, 40)]
    for coarse, fine in zip(euler, euler[1:]):
        assert 1.7 < coarse / fine < 2.3  # first order: half the error at twice the steps
    for coarse, fine in zip(heun, heun[1:]):
        assert coarse / fine > 3.3  # second order: a quarter
    assert all(h < e / 10 for h, e in zip(heun, euler))


def test_guidance_works_on_the_velocity_and_scale_1_is_the_conditional() -> None:
    means = torch.tensor([[0.5, -0.3], [-0.5, 0.2]], dtype=torch.float64)
    oracle = GaussianVelocity(means, STD, per_class=True)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([0, 1, 0, 1])
    guided = list(run(oracle, FLOW, SamplerConfig("flow_euler", steps=6, guidance=1.0), z, labels=labels))
    plain = list(run(oracle, FLOW, SamplerConfig("flow_euler", steps=6), z, labels=labels))
    assert torch.allclose(guided[-1].x_prev, plain[-1].x_prev, atol=1e-6)
    step = list(run(oracle, FLOW, SamplerConfig("flow_euler", steps=6, guidance=3.0), z, labels=labels))[2]
    assert step.model_output_cond is not None and step.model_output_uncond is not None
    mixed = step.model_output_uncond + 3.0 * (step.model_output_cond - step.model_output_uncond)
    assert torch.allclose(step.model_output, mixed, atol=1e-6)


# -- against diffusers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_step_for_step_agreement_with_diffusers_flow_match_euler(shift: float) -> None:
    """FlowMatchEulerDiscreteScheduler given noisescope's unshifted grid as ``sigmas`` (it applies the shift itself and
    appends the final 0): the same times, the same network times (sigma * 1000), the same states to float32 rounding."""
    diffusers = pytest.importorskip("diffusers")
    steps = 12
    oracle = GaussianVelocity(MEAN, STD, T=1000)
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(5))
    records = list(run(oracle, FLOW, SamplerConfig("flow_euler", steps=steps, shift=shift), z))
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    scheduler.set_timesteps(sigmas=[1.0 - i / steps for i in range(steps)])
    times = [r.t_flow for r in records] + [0.0]
    assert np.allclose(scheduler.sigmas.numpy(), times, atol=1e-6, rtol=0)
    x, diffs = z.clone(), []
    for i, timestep in enumerate(scheduler.timesteps):
        assert float(timestep) == pytest.approx(records[i].t_model, rel=1e-6)
        assert torch.allclose(x, records[i].x_t, atol=1e-5)
        v = oracle(x, timestep.expand(x.shape[0]))
        x = scheduler.step(v, timestep, x).prev_sample
        diffs.append(float((x - records[i].x_prev).abs().max()))
    assert max(diffs) < 2e-6, diffs


def test_diffusers_default_grid_differs_from_noisescopes_at_the_low_end() -> None:
    """diffusers' own ``set_timesteps(N)`` spaces N times from 1 down to shift(1/1000), shifts them again, and appends 0: the
    last step runs from shift(shift(1/1000)) to 0. noisescope spaces N + 1 times from 1 to 0 and shifts once (SD3's grid);
    the first time and the end agree."""
    diffusers = pytest.importorskip("diffusers")
    steps, shift, T = 10, 3.0, 1000  # noqa: N806
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=shift)
    scheduler.set_timesteps(steps)
    low = flow.shift_time(1 / T, shift)
    theirs = [flow.shift_time(u, shift) for u in np.linspace(1.0, low, steps)] + [0.0]
    assert np.allclose(scheduler.sigmas.numpy(), theirs, atol=1e-6)
    ours = flow.flow_times(steps, shift)
    assert ours[0] == theirs[0] == 1.0 and ours[-1] == theirs[-1] == 0.0
    assert ours[-2] == pytest.approx(flow.shift_time(0.1, shift)) and theirs[-2] == pytest.approx(flow.shift_time(low, shift), rel=1e-5)


# -- noisescope check on flow traces -------------------------------------------------------------------------------------


def record_flow(path: Path, name: str, **options: object) -> Path:
    means = torch.tensor([[0.5, -0.3], [-0.5, 0.2]], dtype=torch.float64)
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    record_run(GaussianVelocity(means, STD, per_class=True), FLOW, SamplerConfig(name, steps=8, guidance=2.0, **options), x_T=z,
               labels=torch.tensor([0, 1, 0, 1, 0, 1]), generator=None, out=path, overwrite=True, progress=False)
    return path


@pytest.mark.parametrize("name", ["flow_euler", "flow_heun"])
def test_a_flow_trace_passes_check_at_every_step(tmp_path: Path, name: str) -> None:
    with open_trace(record_flow(tmp_path / f"{name}.h5", name, shift=3.0)) as trace:
        report = check_trace(trace)
    assert report.verdict == "PASS", [(c.id, c.failing_steps) for c in report.failed]
    ids = {c.id for c in report.checks if c.checked}
    assert {"flow.time", "flow.x0", "chain.flow", f"{name}.step", "guidance.combine"} <= ids
    assert not ids & {"prediction.conversion", "x0_from_eps", "schedule.alpha_bar_t", "sigma.alpha_bar"}


@pytest.mark.parametrize(("name", "field", "step", "fails"), [
    ("flow_euler", "x_t", 3, {"flow_euler.step", "flow.x0"}),
    ("flow_euler", "model_output", 2, {"flow_euler.step", "flow.x0"}),
    ("flow_heun", "x_euler", 4, {"flow_heun.predictor", "flow.x0"}),
    ("flow_heun", "eps_2", 5, {"flow_heun.step", "flow.x0"}),
])
def test_a_damaged_flow_trace_fails_at_the_damaged_step(tmp_path: Path, name: str, field: str, step: int, fails: set[str]) -> None:
    path = record_flow(tmp_path / f"{name}.h5", name)
    edit(path, field, step, 0.01)
    with open_trace(path) as trace:
        report = check_trace(trace)
    assert report.verdict == "FAIL"
    failed = {c.id: c.failing for c in report.failed}
    assert fails <= set(failed), failed
    assert all(s in (step - 1, step) for steps in failed.values() for s in steps)


def test_a_damaged_time_fails_flow_time_and_the_chain(tmp_path: Path) -> None:
    from tests.equations.traces import set_scalar

    path = record_flow(tmp_path / "euler.h5", "flow_euler")
    set_scalar(path, "t_flow", 3, 0.5)
    with open_trace(path) as trace:
        failed = {c.id for c in check_trace(trace).failed}
    assert {"flow.time", "chain.flow"} <= failed


# -- the samplers refuse what they cannot run ------------------------------------------------------------------------------


def test_a_flow_sampler_refuses_a_diffusion_network_and_back() -> None:
    z = torch.randn(2, 2)
    diffusion = GaussianOracle(make_schedule("linear", 100), MEAN, STD)
    with pytest.raises(ConfigError, match="flow-matching network"):
        run(diffusion, make_schedule("linear", 100), SamplerConfig("flow_euler", steps=3), z)
    for config in (SamplerConfig("ddim", steps=3), SamplerConfig("ddpm"), SamplerConfig("euler", steps=3)):
        with pytest.raises(ConfigError, match="--objective flow"):
            run(GaussianVelocity(MEAN, STD), FLOW, config, z)


@pytest.mark.parametrize(("options", "message"), [
    ({"shift": 0.0}, "--shift must be a finite number > 0"), ({"shift": -2.0}, "--shift"), ({"shift": math.inf}, "--shift"),
    ({"steps": 0}, "--steps must be at least 1"),
])
def test_bad_flow_options_are_one_line(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SamplerConfig("flow_heun", **options)


def test_the_objective_is_validated_with_its_prediction() -> None:
    assert ModelConfig(objective="flow", prediction="v").objective == "flow"
    with pytest.raises(ConfigError, match="velocity network"):
        ModelConfig(objective="flow")
    with pytest.raises(ConfigError, match="unknown objective"):
        ModelConfig(objective="score", prediction="v")


def test_both_flow_samplers_are_registered_on_the_flow_path() -> None:
    for name in ("flow_euler", "flow_heun"):
        assert getattr(SAMPLERS[name], "SPACE", "vp") == "flow"


# -- the command line: train on every data set, sample, check; bad input --------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    path.write_bytes(bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(">u1").tobytes())


def _data_dir(tmp_path: Path, name: str) -> str:
    """A few random images in the data set's own file format (nothing is downloaded)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / name
    folder.mkdir()
    if name == "cifar10":
        for i in range(1, 6):
            rows = np.concatenate([rng.integers(0, 10, (4, 1)), rng.integers(0, 256, (4, 3 * 32 * 32))], axis=1).astype(np.uint8)
            (folder / f"data_batch_{i}.bin").write_bytes(rows.tobytes())
    else:
        _write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (16, 28, 28)))
        _write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, (16,)))
    return f"{name}:{folder}"


@pytest.mark.parametrize("dataset", ["digits", "moons", "gaussians8", "swissroll", "checkerboard", "mnist", "fashion-mnist", "cifar10"])
def test_train_flow_and_sample_it_on_every_data_set(tmp_path: Path, dataset: str) -> None:
    spec = _data_dir(tmp_path, dataset) if dataset in ("mnist", "fashion-mnist", "cifar10") else dataset
    out = tmp_path / "run"
    channels = "8,8" if dataset in ("moons", "gaussians8", "swissroll", "checkerboard") else "8,8,8"
    assert main(["train", "--dataset", spec, "--objective", "flow", "--steps", "3", "--batch", "8", "--channels", channels,
                 "--snapshot-every", "0", "--out", str(out), "--quiet"]) == 0
    for sampler in ("flow_euler", "flow_heun"):
        trace = out / f"{sampler}.h5"
        assert main(["sample", "--checkpoint", str(out), "--sampler", sampler, "--steps", "3", "--shift", "3", "--batch", "2",
                     "--out", str(trace), "--quiet"]) == 0
        assert main(["check", str(trace)]) == 0
    assert main(["check", str(out / "train.h5")]) == 0
    with open_trace(out / "train.h5") as trace:
        ids = {c.id for c in check_trace(trace).checks if c.checked}
    assert {"flow.forward", "flow.loss"} <= ids and not ids & {"forward.q_sample", "loss.eps", "loss.target"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A flow run and a diffusion run on moons, a few steps each."""
    root = tmp_path_factory.mktemp("flow-runs")
    for name, extra in (("flow", ["--objective", "flow"]), ("diffusion", ["--timesteps", "50"])):
        assert main(["train", "--dataset", "moons", "--steps", "3", "--channels", "8,8", "--snapshot-every", "0", *extra,
                     "--out", str(root / name), "--quiet"]) == 0
    return root / "flow", root / "diffusion"


@pytest.mark.parametrize(("which", "args", "message"), [
    ("flow", ["--sampler", "ddim"], "--sampler ddim samples a diffusion network"),
    ("flow", ["--sampler", "euler"], "--objective flow"),
    ("diffusion", ["--sampler", "flow_euler"], "--sampler flow_euler samples a flow-matching network"),
    ("diffusion", ["--sampler", "flow_heun"], "flow-matching network"),
    ("flow", ["--sampler", "flow_euler", "--shift", "0"], "--shift must be a finite number > 0"),
    ("flow", ["--sampler", "flow_heun", "--shift", "-1"], "--shift must be a finite number > 0"),
    ("flow", ["--sampler", "flow_euler", "--steps", "0"], "--steps must be at least 1"),
    ("flow", ["--sampler", "flow_euler", "--eta", "1"], "--eta does not apply to --sampler flow_euler"),
])
def test_sample_bad_flow_input_is_one_line_exit_2_nothing_written(runs: tuple[Path, Path], tmp_path: Path, which: str,
                                                                   args: list[str], message: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = runs[0] if which == "flow" else runs[1]
    out = tmp_path / "x.h5"
    assert main(["sample", "--checkpoint", str(run_dir), *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--objective", "flow", "--prediction", "eps"], "--prediction eps does not apply"),
    (["--objective", "flow", "--prediction", "x0"], "--prediction x0 does not apply"),
    (["--objective", "flow", "--schedule", "cosine"], "drop --schedule cosine"),
    (["--objective", "flow", "--zero-terminal-snr"], "the flow path already ends at pure noise"),
    (["--schedule", "flow"], "the flow schedule is the path of --objective flow"),
    (["--objective", "score"], "invalid choice"),
])
def test_train_bad_flow_combinations_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = None
    try:
        code = main(["train", "--dataset", "moons", "--steps", "2", *args, "--out", str(out), "--quiet"])
    except SystemExit as stop:  # argparse's own refusal of an unknown choice
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err.splitlines()[-1], err
    assert not out.exists()
