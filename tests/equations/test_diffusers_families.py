"""diffusers' sigma-space and flow schedulers traced in the names of noisescope's families (issue 14, point 2):
EulerDiscrete, EulerAncestralDiscrete, HeunDiscrete, DPMSolverMultistep (dpmsolver++ 2M) and FlowMatchEulerDiscrete,
with each prediction type they implement, pass ``check`` with their family's step equation judged at every step; a
v-prediction model sampled as epsilon and a step that is off fail; what cannot be recorded is refused in one line.

A tiny UNet2DModel with random weights (conftest.py ``unet``), 8x8, batch 2, 7 steps; nothing is downloaded.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from tracer.check import check_trace, format_report  # noqa: E402
from tracer.equations import evaluate, failing_steps  # noqa: E402
from tracer.integrations.diffusers import TracedScheduler  # noqa: E402
from tracer.trace.reader import open_trace  # noqa: E402

SHAPE = (2, 1, 8, 8)
STEPS = 7

# scheduler class -> (family, the equations of its step that must be judged at every step, prediction types it implements)
FAMILIES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "EulerDiscreteScheduler": ("euler", ("euler.step", "sigma.denoised", "sigma.timestep"), ("epsilon", "v_prediction", "sample")),
    "EulerAncestralDiscreteScheduler": ("euler_ancestral", ("euler_ancestral.step", "euler_ancestral.sigmas", "sigma.denoised"),
                                        ("epsilon", "v_prediction")),
    "HeunDiscreteScheduler": ("heun", ("heun.step", "heun.predictor", "sigma.denoised"), ("epsilon", "v_prediction", "sample")),
    "DPMSolverMultistepScheduler": ("dpmpp_2m", ("dpmpp_2m.step", "dpmpp_2m.h", "sigma.denoised"), ("epsilon", "v_prediction", "sample")),
    "FlowMatchEulerDiscreteScheduler": ("flow_euler", ("flow_euler.step", "flow.x0", "flow.time"), ("velocity",)),
}
CASES = [(name, prediction) for name, (_, _, predictions) in FAMILIES.items() for prediction in predictions]


def make(name: str, prediction: str, **options: Any) -> Any:
    """The scheduler, with prediction_type where it has one (FlowMatchEulerDiscrete's output is always a velocity)."""
    if prediction != "velocity":
        options["prediction_type"] = prediction
    return getattr(diffusers, name)(**options)


def denoise(unet: Any, scheduler: Any, steps: int = STEPS, *, seed: int = 1, feed: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The usual diffusers loop (a pipeline's): set_timesteps, then model and step at every timestep; the generator is
    passed where the scheduler's step takes one. ``feed(i, x)`` replaces what call i is given (a caller's bug)."""
    inner = getattr(scheduler, "scheduler", scheduler)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=generator) * getattr(inner, "init_noise_sigma", 1.0)
    scheduler.set_timesteps(steps)
    takes_generator = "generator" in inspect.signature(inner.step).parameters
    for i, t in enumerate(scheduler.timesteps):
        model_input = inner.scale_model_input(x, t) if hasattr(inner, "scale_model_input") else x
        with torch.no_grad():
            model_output = unet(model_input, t).sample
        if feed is not None:
            x = feed(i, x)
        x = scheduler.step(model_output, t, x, **({"generator": generator} if takes_generator else {})).prev_sample
    return x


def judged_everywhere(trace: Any, ids: tuple[str, ...]) -> dict[str, bool]:
    """For each id: whether it applied and was judged at every row."""
    evaluations = {e.check.id: e for e in evaluate(trace)}
    return {i: i in evaluations and None not in evaluations[i].residuals for i in ids}


# -- every family, every prediction type: unchanged, and PASS with its step equation judged --------------------------------


@pytest.mark.parametrize(("name", "prediction"), CASES)
def test_each_family_is_unchanged_by_tracing_and_passes_check(unet: Any, tmp_path: Path, name: str, prediction: str) -> None:
    family, equations, _ = FAMILIES[name]
    untraced = denoise(unet, make(name, prediction))
    with TracedScheduler(make(name, prediction), tmp_path / "t.h5") as scheduler:
        traced = denoise(unet, scheduler)
    assert torch.equal(traced, untraced)  # recording changes nothing, random draws included
    with open_trace(tmp_path / "t.h5") as trace:
        assert trace.status == "complete" and trace.num_steps == STEPS  # one row per step (Heun: per two calls)
        assert trace.config["sampler"]["sampler"] == family
        report = check_trace(trace)
        assert report.verdict == "PASS", format_report(report)
        assert judged_everywhere(trace, (*equations, "chain.x_t")) == dict.fromkeys((*equations, "chain.x_t"), True)
        ids = {c.id for c in report.checks}
        if prediction in ("v_prediction", "sample"):  # the network's own output is recorded, and its conversion checked
            assert "prediction.conversion" in ids and "model_output" in trace.field_names()
        assert ("chain.flow" if family == "flow_euler" else "chain.sigma") in ids
        assert torch.equal(torch.from_numpy(trace.final("samples")), traced)  # the last level is 0 (t = 0): no rescale


@pytest.mark.parametrize("name", ["EulerDiscreteScheduler", "HeunDiscreteScheduler"])
def test_karras_levels_pass_check_with_the_networks_timestep_judged(unet: Any, tmp_path: Path, name: str) -> None:
    """use_karras_sigmas: fractional timesteps at t(sigma) with log sigma interpolated (as k-diffusion and noisescope do)."""
    untraced = denoise(unet, make(name, "epsilon", use_karras_sigmas=True))
    with TracedScheduler(make(name, "epsilon", use_karras_sigmas=True), tmp_path / "t.h5") as scheduler:
        traced = denoise(unet, scheduler)
    assert torch.equal(traced, untraced)
    with open_trace(tmp_path / "t.h5") as trace:
        assert trace.config["sampler"]["sigma_schedule"] == "karras" and trace.config["sampler"]["sigma_interpolation"] == "log"
        assert any(t % 1 for t in trace.scalars()["t_model"])  # fractional: the interpolation is what is checked
        report = check_trace(trace)
        assert report.verdict == "PASS", format_report(report)
        equations = (*FAMILIES[name][1], "sigma.timestep")
        assert judged_everywhere(trace, equations) == dict.fromkeys(equations, True)


def test_the_recorded_levels_and_timesteps_are_the_schedulers(unet: Any, tmp_path: Path) -> None:
    scheduler = diffusers.EulerDiscreteScheduler()  # linspace: fractional timesteps, sigma linear between the schedule's levels
    with TracedScheduler(scheduler, tmp_path / "t.h5") as traced:
        denoise(unet, traced)
    with open_trace(tmp_path / "t.h5") as trace:
        scalars = trace.scalars()
        assert scalars["t_model"].tolist() == [float(t) for t in scheduler.timesteps]
        assert any(t != round(t) for t in scalars["t_model"])  # the interpolation the check inverts is exercised
        assert scalars["sigma_t"].tolist() == [float(s) for s in scheduler.sigmas[:-1]]
        assert scalars["sigma_next"].tolist() == [float(s) for s in scheduler.sigmas[1:]]
        assert trace.config["sampler"]["sigmas"][-1] == 0.0
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
        assert torch.equal(torch.from_numpy(trace.tensor("x_t", 0)), z * scheduler.init_noise_sigma)  # x in sigma space, as stepped


def test_dpm_solver_samples_are_recorded_in_sigma_space(unet: Any, tmp_path: Path) -> None:
    scheduler = diffusers.DPMSolverMultistepScheduler()
    with TracedScheduler(scheduler, tmp_path / "t.h5") as traced:
        denoise(unet, traced)
    with open_trace(tmp_path / "t.h5") as trace:
        sigma_0 = float(scheduler.sigmas[0])
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))  # the VP start: x_t = z, x = sqrt(1 + sigma^2) z
        assert torch.allclose(torch.from_numpy(trace.tensor("x_t", 0)).double(), z.double() * math.sqrt(1 + sigma_0**2), rtol=1e-6)
        r = trace.scalars()["r"]
        assert r[0] == 0 and r[-1] == 0 and all(r[1:-1] > 0)  # first order at the first and the last step, second between
        assert not trace.tensor("x0_pred_prev", 0).any()


@pytest.mark.parametrize("steps", [STEPS, 15])  # below 15 steps diffusers' last step (to sigma_min) is first order, from 15 second
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_dpm_solver_with_final_sigma_min_leaves_noise(unet: Any, tmp_path: Path, steps: int, prediction: str) -> None:
    scheduler = diffusers.DPMSolverMultistepScheduler(final_sigmas_type="sigma_min", prediction_type=prediction)
    with TracedScheduler(scheduler, tmp_path / "t.h5") as traced:
        denoise(unet, traced, steps)
    alpha_bar_0 = float(scheduler.alphas_cumprod[0])
    sigma_min = math.sqrt((1 - alpha_bar_0) / alpha_bar_0)
    with open_trace(tmp_path / "t.h5") as trace:
        report = check_trace(trace)
        assert report.verdict == "NOISE LEFT", format_report(report)
        assert report.noise_left == pytest.approx(sigma_min, rel=1e-6)
        assert trace.scalars()["t_prev"][-1] == 0  # it ends at t = 0's level, not at the clean end
        assert (trace.scalars()["r"][-1] > 0) == (steps >= 15)
        assert judged_everywhere(trace, ("dpmpp_2m.step", "dpmpp_2m.h")) == {"dpmpp_2m.step": True, "dpmpp_2m.h": True}


def test_heun_is_one_row_per_step_with_its_corrector(unet: Any, tmp_path: Path) -> None:
    scheduler = diffusers.HeunDiscreteScheduler()
    with TracedScheduler(scheduler, tmp_path / "t.h5") as traced:
        denoise(unet, traced)
    assert len(scheduler.timesteps) == 2 * STEPS - 1  # diffusers: a predictor and a corrector call a step, the last uncorrected
    with open_trace(tmp_path / "t.h5") as trace:
        last = trace.num_steps - 1
        assert torch.equal(torch.from_numpy(trace.tensor("x_euler", last)), torch.from_numpy(trace.tensor("x_prev", last)))
        assert not trace.tensor("eps_2", last).any() and trace.tensor("eps_2", 0).any()


# -- wrong runs are not PASS ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "HeunDiscreteScheduler", "DDIMScheduler"])
def test_a_v_prediction_model_sampled_as_epsilon_fails_the_conversion(unet: Any, tmp_path: Path, name: str) -> None:
    with TracedScheduler(make(name, "epsilon"), tmp_path / "t.h5", model_prediction="v_prediction") as scheduler:
        denoise(unet, scheduler)
    with open_trace(tmp_path / "t.h5") as trace:
        report = check_trace(trace)
        assert report.verdict == "FAIL"
        assert {c.id: c.failing for c in report.failed} == {"prediction.conversion": list(range(STEPS))}
    with TracedScheduler(make(name, "v_prediction"), tmp_path / "v.h5", model_prediction="v_prediction") as scheduler:
        denoise(unet, scheduler)  # the same model sampled as what it is
    with open_trace(tmp_path / "v.h5") as trace:
        assert failing_steps(trace) == {}


def off_by(cls: type, factor: float) -> Any:
    """A subclass of ``cls`` whose step result is ``factor`` times the right one (a scheduler bug)."""

    @functools.wraps(cls.step)  # type: ignore[attr-defined]
    def step(self: Any, *args: Any, **kwargs: Any) -> Any:
        output = cls.step(self, *args, **kwargs)
        if isinstance(output, tuple):
            return (output[0] * factor, *output[1:])
        output.prev_sample = output.prev_sample * factor
        return output

    return type(f"Buggy{cls.__name__}", (cls,), {"step": step})()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_step_that_is_off_fails_its_equation(unet: Any, tmp_path: Path, name: str) -> None:
    family, equations, _ = FAMILIES[name]
    with TracedScheduler(off_by(getattr(diffusers, name), 1.001), tmp_path / "t.h5") as scheduler:
        denoise(unet, scheduler)
    with open_trace(tmp_path / "t.h5") as trace:
        failing = failing_steps(trace)
    assert failing[equations[0]] == list(range(STEPS))  # every step's result is off
    if family == "heun":  # and Heun's predictor call too (its result is x_euler)
        assert failing["heun.predictor"] == list(range(STEPS))


def test_a_loop_that_feeds_the_wrong_sample_fails_the_chain(unet: Any, tmp_path: Path) -> None:
    with TracedScheduler(diffusers.FlowMatchEulerDiscreteScheduler(), tmp_path / "t.h5") as scheduler:
        denoise(unet, scheduler, feed=lambda i, x: x * 1.01 if i == 3 else x)
    with open_trace(tmp_path / "t.h5") as trace:
        assert failing_steps(trace) == {"chain.x_t": [2]}  # step 2's output is not what step 3 was given


# -- what cannot be recorded -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "options", "option"), [
    ("DPMSolverMultistepScheduler", {"solver_order": 3}, "solver_order"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}, "algorithm_type"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, "algorithm_type"),
    ("DPMSolverMultistepScheduler", {"solver_type": "heun"}, "solver_type"),
    ("DPMSolverMultistepScheduler", {"thresholding": True}, "thresholding"),
    ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, "use_karras_sigmas"),  # its network t is rounded
    ("EulerDiscreteScheduler", {"use_exponential_sigmas": True}, "use_exponential_sigmas"),
    ("EulerDiscreteScheduler", {"timestep_type": "continuous"}, "timestep_type"),
    ("EulerAncestralDiscreteScheduler", {"prediction_type": "sample"}, "prediction_type"),
    ("HeunDiscreteScheduler", {"clip_sample": True}, "clip_sample"),
    ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}, "stochastic_sampling"),
])
def test_what_cannot_be_recorded_is_refused_in_one_line(tmp_path: Path, name: str, options: dict[str, Any], option: str) -> None:
    with pytest.raises(ValueError, match=f"{option}=") as error:
        TracedScheduler(getattr(diffusers, name)(**options), tmp_path / "t.h5")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "t.h5").exists()


def test_levels_with_a_step_of_size_zero_are_refused_before_the_trace_exists(unet: Any, tmp_path: Path) -> None:
    scheduler = TracedScheduler(diffusers.EulerDiscreteScheduler(final_sigmas_type="sigma_min"), tmp_path / "t.h5")
    with pytest.raises(ValueError, match="final_sigmas_type="), scheduler:  # linspace ends at t = 0: sigma_min twice
        denoise(unet, scheduler)
    assert not (tmp_path / "t.h5").exists()


def test_bad_input_mid_run_keeps_the_trace_written_so_far_readable(unet: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="s_churn"), TracedScheduler(diffusers.EulerDiscreteScheduler(), tmp_path / "t.h5") as scheduler:
        scheduler.set_timesteps(STEPS)
        x = torch.randn(SHAPE) * scheduler.init_noise_sigma
        for i, t in enumerate(scheduler.timesteps):
            with torch.no_grad():
                model_output = unet(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(model_output, t, x, s_churn=1.0 if i == 3 else 0.0).prev_sample
    with open_trace(tmp_path / "t.h5") as trace:
        assert trace.status == "failed" and trace.num_steps == 3
        assert failing_steps(trace) == {}  # the steps it recorded are right; the unfinished end is not judged


# -- other sigma-based schedulers: recorded in sigma space, no step equation ---------------------------------------------------


def test_another_sigma_based_scheduler_is_incomplete_never_failed(unet: Any, tmp_path: Path) -> None:
    untraced = denoise(unet, diffusers.LMSDiscreteScheduler())
    with TracedScheduler(diffusers.LMSDiscreteScheduler(), tmp_path / "t.h5") as scheduler:  # linspace: fractional timesteps
        traced = denoise(unet, scheduler)
    assert torch.equal(traced, untraced)
    with open_trace(tmp_path / "t.h5") as trace:
        report = check_trace(trace)
        assert report.verdict == "INCOMPLETE", format_report(report)
        assert [what for what, _ in report.unchecked] == ["the step update"]
        assert judged_everywhere(trace, ("sigma.denoised", "chain.sigma", "chain.x_t")) == dict.fromkeys(
            ("sigma.denoised", "chain.sigma", "chain.x_t"), True)


def test_a_generic_scheduler_with_two_calls_a_step_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="order=2"):
        TracedScheduler(diffusers.KDPM2DiscreteScheduler(), tmp_path / "t.h5")
    assert not (tmp_path / "t.h5").exists()


def test_an_unknown_model_prediction_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_prediction must be epsilon, v_prediction or sample, got 'velocity'"):
        TracedScheduler(diffusers.EulerDiscreteScheduler(), tmp_path / "t.h5", model_prediction="velocity")
    assert not (tmp_path / "t.h5").exists()
