"""eps, x0 and v prediction, zero terminal SNR and guidance rescale: closed forms, the exact Gaussian oracle, and check.

The oracle (tracer/models/analytic.py) predicts the exact E[eps | x_t], E[x0 | x_t] or v for Gaussian
data, so an x0 or v network sampled through its conversions must follow the eps network's trajectory
to float64 rounding, and land on the known output law.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tracer.check import check_trace
from tracer.config import ConfigError, ModelConfig, ScheduleConfig, check_prediction_schedule
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers import SamplerConfig, ddim, ddpm
from tracer.samplers.guidance import combine, predict, rescale
from tracer.samplers.prediction import eps_and_x0, output_from_eps, v_target
from tracer.schedules import make_schedule
from tracer.trace.reader import open_trace

PREDICTIONS = ("eps", "x0", "v")


def _x_T(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:  # noqa: N802
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("alpha_bar", [1e-4, 0.3, 0.9999])
def test_converting_the_exact_eps_into_x0_or_v_and_back_is_the_identity(prediction: str, alpha_bar: float) -> None:
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(64, generator=g, dtype=torch.float64), torch.randn(64, generator=g, dtype=torch.float64)
    x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * eps  # Eq. 4
    output = {"eps": eps, "x0": x0, "v": v_target(x0, eps, alpha_bar)}[prediction]
    eps_back, x0_back = eps_and_x0(output, x_t, alpha_bar, prediction)
    tol = 1e-12 / min(alpha_bar, 1 - alpha_bar)  # x0 from eps divides by sqrt(alpha_bar), eps from x0 by sqrt(1 - alpha_bar)
    torch.testing.assert_close(eps_back, eps, rtol=0, atol=tol)
    torch.testing.assert_close(x0_back, x0, rtol=0, atol=tol)
    torch.testing.assert_close(output_from_eps(eps, x_t, alpha_bar, prediction), output, rtol=0, atol=tol)


def test_v_is_defined_at_both_ends_of_the_schedule() -> None:
    x0, eps = torch.tensor([0.5, -2.0], dtype=torch.float64), torch.tensor([1.5, 0.25], dtype=torch.float64)
    # alpha_bar = 0: x_t = eps and v = -x0; alpha_bar = 1: x_t = x0 and v = eps
    assert eps_and_x0(v_target(x0, eps, 0.0), eps, 0.0, "v")[1].tolist() == x0.tolist()
    assert eps_and_x0(v_target(x0, eps, 1.0), x0, 1.0, "v")[0].tolist() == eps.tolist()


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_ddim_of_an_x0_or_v_oracle_follows_the_eps_oracle_and_lands_on_the_data_law(prediction: str) -> None:
    schedule = make_schedule("linear", 200)
    mu, std = torch.tensor([1.0, -0.5]), 0.5
    x_T = _x_T((4000, 2))  # noqa: N806
    eps_run = list(ddim.sample(GaussianOracle(schedule, mu, std), schedule, x_T, steps=100))
    run = list(ddim.sample(GaussianOracle(schedule, mu, std, prediction=prediction), schedule, x_T, steps=100))
    for a, b in zip(eps_run, run, strict=True):
        torch.testing.assert_close(b.eps, a.eps, rtol=0, atol=1e-9)
        torch.testing.assert_close(b.x0_pred, a.x0_pred, rtol=0, atol=1e-9)
        assert b.model_output is not None and a.model_output is None  # the output is recorded only when it is not eps
    out = run[-1].x_prev
    # DDIM eta 0 with the exact eps is the probability-flow map: N(0, I) goes to N(mu, std^2 I)
    torch.testing.assert_close(out.mean(0), mu.double(), rtol=0, atol=4 * std / math.sqrt(len(out)) + 0.01)
    torch.testing.assert_close(out.std(0), torch.full((2,), std, dtype=torch.float64), rtol=0, atol=0.03)


def test_zero_terminal_snr_schedule_is_affine_in_sqrt_alpha_bar() -> None:
    for name in ("linear", "cosine", "seed-report"):
        plain, rescaled = make_schedule(name), make_schedule(name, zero_terminal_snr=True)
        assert rescaled.alpha_bar[-1] == 0.0 and rescaled.beta[-1] == 1.0 and rescaled.zero_terminal_snr
        assert rescaled.alpha_bar[0] == pytest.approx(plain.alpha_bar[0], rel=1e-14)
        old, new = np.sqrt(plain.alpha_bar), np.sqrt(rescaled.alpha_bar)
        slope = (new - new[0]) [1:] / (old - old[0])[1:]  # Lin et al. 2023, Alg. 1: an affine map of sqrt(alpha_bar)
        assert np.allclose(slope, old[0] / (old[0] - old[-1]), rtol=1e-9)
        assert np.all(np.diff(rescaled.alpha_bar) < 0)  # still a noising schedule


def test_zero_terminal_snr_with_eps_prediction_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs --prediction v"):
        check_prediction_schedule(ModelConfig(prediction="eps"), ScheduleConfig(zero_terminal_snr=True))
    check_prediction_schedule(ModelConfig(prediction="v"), ScheduleConfig(zero_terminal_snr=True))
    schedule = make_schedule("linear", 50, zero_terminal_snr=True)
    with pytest.raises(ConfigError, match="zero terminal SNR"):
        ddpm.sample(GaussianOracle(schedule, torch.zeros(2)), schedule, _x_T((2, 2)))


def test_a_zero_snr_v_oracle_starts_from_pure_noise_and_converges_to_the_data_law() -> None:
    schedule = make_schedule("linear", 200, zero_terminal_snr=True)
    mu, std = torch.tensor([0.5, 1.0]), 0.3
    model, x_T = GaussianOracle(schedule, mu, std, prediction="v"), _x_T((20000, 2))  # noqa: N806
    errors = []
    for steps in (25, 50, 100, 200):
        records = list(ddim.sample(model, schedule, x_T, steps=steps, spacing="trailing"))
        assert records[0].t == 199 and records[0].alpha_bar_t == 0.0
        torch.testing.assert_close(records[0].x0_pred, mu.double().expand(20000, 2), rtol=0, atol=1e-12)  # E[x0 | pure noise] = mu
        out = records[-1].x_prev
        torch.testing.assert_close(out.mean(0), mu.double(), rtol=0, atol=0.01)
        errors.append(float((out.std(0) - std).abs().max()))
    # DDIM is first order: the error of the output's std halves as the steps double, down to sampling noise (~0.002)
    assert all(1.6 < a / b < 2.6 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.01, errors


def _class_oracle(schedule, prediction: str = "eps") -> GaussianOracle:  # type: ignore[no-untyped-def]
    means = torch.tensor([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.0]])
    return GaussianOracle(schedule, means, 0.3, per_class=True, prediction=prediction)


def test_guidance_rescale_zero_is_plain_guidance_and_one_matches_the_conditional_std() -> None:
    schedule = make_schedule("linear", 100)
    model = _class_oracle(schedule)
    x, labels = _x_T((6, 2), seed=3), torch.tensor([0, 1, 2, 0, 1, 2])
    plain = predict(model, x, 60, labels, 4.0)
    assert plain.cfg is None
    torch.testing.assert_close(predict(model, x, 60, labels, 4.0, 0.0).output, plain.output, rtol=0, atol=0)
    full = predict(model, x, 60, labels, 4.0, 1.0)
    assert full.cond is not None and full.cfg is not None
    torch.testing.assert_close(full.cfg, combine(full.cond, full.uncond, 4.0), rtol=0, atol=0)  # type: ignore[arg-type]
    torch.testing.assert_close(full.output.std(dim=1), full.cond.std(dim=1), rtol=1e-12, atol=0)  # phi = 1: the conditional std
    half = predict(model, x, 60, labels, 4.0, 0.5)
    torch.testing.assert_close(half.output, 0.5 * full.output + 0.5 * plain.output, rtol=1e-12, atol=1e-12)  # affine in phi
    torch.testing.assert_close(rescale(plain.output, plain.cond, 0.0), plain.output, rtol=0, atol=0)  # type: ignore[arg-type]


def _record(path: Path, model, schedule, config: SamplerConfig, labels=None):  # type: ignore[no-untyped-def]
    x_T = torch.randn((6, 2), generator=torch.Generator().manual_seed(0))  # noqa: N806
    record_run(model, schedule, config, x_T=x_T, labels=labels, generator=torch.Generator().manual_seed(1), out=path,
               extra_config={"schedule": {"name": schedule.name, "timesteps": schedule.T, "zero_terminal_snr": schedule.zero_terminal_snr}},
               progress=False)
    return path


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_every_trace_of_every_prediction_type_passes_check(tmp_path: Path, prediction: str, sampler: str) -> None:
    zero_snr = prediction == "v"
    schedule = make_schedule("linear", 40, zero_terminal_snr=zero_snr)
    options = {"steps": 10, "eta": 0.5, "spacing": "trailing"} if sampler == "ddim" else {}
    config = SamplerConfig(sampler, guidance=3.0, guidance_rescale=0.7, **options)
    path = _record(tmp_path / "t.h5", _class_oracle(schedule, prediction), schedule, config, torch.tensor([0, 1, 2, 0, 1, 2]))
    with open_trace(path) as trace:
        report = check_trace(trace)
        ran = {c.id for c in report.checks if c.checked}
        assert report.verdict == "PASS", (report.unchecked, [c.id for c in report.failed])
        assert {"guidance.combine", "guidance.rescale"} <= ran
        assert ("prediction.conversion" in ran) == (prediction != "eps") and ("x0_from_eps" in ran) == (prediction == "eps")
        assert ("schedule.zero_terminal_snr" in ran) == zero_snr
        assert trace.config["sampler"]["prediction"] == prediction and trace.config["sampler"]["guidance_rescale"] == 0.7


@pytest.mark.parametrize(("name", "equation"), [("x0_pred", "prediction.conversion"), ("eps", "prediction.conversion"),
                                                ("model_output_cfg", "guidance.combine"), ("model_output", "guidance.rescale")])
def test_a_tampered_conversion_or_rescale_fails_at_that_step(tmp_path: Path, name: str, equation: str) -> None:
    schedule = make_schedule("linear", 40)
    config = SamplerConfig("ddim", steps=8, guidance=3.0, guidance_rescale=0.7)
    path = _record(tmp_path / "t.h5", _class_oracle(schedule, "v"), schedule, config, torch.tensor([0, 1, 2, 0, 1, 2]))
    with h5py.File(path, "r+") as f:
        f[f"steps/{name}"][3, 0, 0] += 0.01
    with open_trace(path) as trace:
        report = check_trace(trace)
    failed = {c.id: c.failing for c in report.failed}
    assert report.verdict == "FAIL" and failed.get(equation) == [3], failed


def test_a_tampered_zero_snr_schedule_fails(tmp_path: Path) -> None:
    schedule = make_schedule("linear", 40, zero_terminal_snr=True)
    path = _record(tmp_path / "t.h5", GaussianOracle(schedule, torch.zeros(2), 0.5, prediction="v"), schedule, SamplerConfig("ddim", steps=5))
    with open_trace(path) as trace:
        assert check_trace(trace).verdict == "PASS"
    with h5py.File(path, "r+") as f:  # the plain schedule's alpha_bar, not the rescaled one: every other check still holds
        plain = make_schedule("linear", 40)
        for key in ("beta", "alpha", "alpha_bar"):
            f[f"schedule/{key}"][:-1] = getattr(plain, key)[:-1]
    with open_trace(path) as trace:
        assert "schedule.zero_terminal_snr" in {c.id for c in check_trace(trace).failed}


# -- against diffusers' implementations of the same two rescales ----------------------------------------


def test_zero_terminal_snr_matches_diffusers() -> None:
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr as reference

    for name in ("linear", "cosine", "seed-report"):
        plain = make_schedule(name)
        expected = reference(torch.tensor(plain.beta, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(make_schedule(name, zero_terminal_snr=True).beta, expected, rtol=1e-12, atol=1e-15)


def test_guidance_rescale_matches_diffusers() -> None:
    try:
        from diffusers.guiders.guider_utils import rescale_noise_cfg
    except ImportError:  # older diffusers keep it beside the Stable Diffusion pipeline
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    cfg = combine(cond, uncond, 7.5)
    for phi in (0.0, 0.3, 0.7, 1.0):
        torch.testing.assert_close(rescale(cfg, cond, phi), rescale_noise_cfg(cfg, cond, guidance_rescale=phi), rtol=1e-12, atol=1e-12)


def test_inspect_says_the_schedule_has_zero_terminal_snr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tracer.cli import main

    schedule = make_schedule("linear", 40, zero_terminal_snr=True)
    path = _record(tmp_path / "t.h5", GaussianOracle(schedule, torch.zeros(2), 0.5, prediction="v"), schedule, SamplerConfig("ddim", steps=5))
    assert main(["inspect", str(path)]) == 0
    assert "linear, T = 40, zero terminal SNR" in capsys.readouterr().out
    assert main(["inspect", str(path), "--json"]) == 0
    assert '"zero_terminal_snr": true' in capsys.readouterr().out
