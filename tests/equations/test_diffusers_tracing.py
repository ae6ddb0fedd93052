"""Tracing diffusers (issue 5, points 4 and 5): TracedScheduler and PipelineRecorder, and the demonstration that
DDIMScheduler's "previous" timestep is not the next one it visits with linspace (or trailing with a step count that
does not divide 1000) spacing, caught by ``noisescope check`` at exactly those steps.

A tiny UNet2DModel with random weights is built (conftest.py ``unet``); nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from tracer.cli import main  # noqa: E402
from tracer.equations import evaluate, failing_steps  # noqa: E402
from tracer.integrations.diffusers import INSTALL_HINT, PipelineRecorder, TracedScheduler, require_diffusers  # noqa: E402
from tracer.check import check_trace  # noqa: E402
from tracer.trace.reader import open_trace  # noqa: E402

SHAPE = (2, 1, 8, 8)


def denoise(unet: Any, scheduler: Any, steps: int, *, seed: int = 1, **step_kwargs: Any) -> torch.Tensor:
    """The usual diffusers loop: set_timesteps, then model and step at every timestep."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # steps without a generator draw from the global stream
    x = torch.randn(SHAPE, generator=generator) * scheduler.init_noise_sigma
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        with torch.no_grad():
            model_output = unet(scheduler.scale_model_input(x, t), t).sample
        kwargs = {k: (generator if v == "generator" else v) for k, v in step_kwargs.items()}
        x = scheduler.step(model_output, t, x, **kwargs).prev_sample
    return x


def steps_moving_elsewhere(scheduler: Any, steps: int) -> list[int]:
    """Steps where DDIMScheduler's previous alpha_bar (of t - T // steps, per its step()) is not that of the next timestep."""
    scheduler.set_timesteps(steps)
    ts = [int(t) for t in scheduler.timesteps]
    alpha_bar = [float(a) for a in scheduler.alphas_cumprod]
    final = float(scheduler.final_alpha_cumprod)
    stride = scheduler.config.num_train_timesteps // steps
    used = [alpha_bar[t - stride] if t - stride >= 0 else final for t in ts]
    visited_next = [alpha_bar[t] for t in ts[1:]] + [final]  # after the last step: the clean end
    return [i for i in range(steps) if used[i] != visited_next[i]]


# -- the demonstration -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spacing", "steps", "fails"), [
    ("linspace", 10, True), ("trailing", 7, True), ("leading", 10, False), ("leading", 7, False), ("trailing", 10, False),
])
def test_ddim_fails_check_exactly_where_its_previous_alpha_bar_is_not_the_next(
    unet: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], spacing: str, steps: int, fails: bool,
) -> None:
    expected = steps_moving_elsewhere(diffusers.DDIMScheduler(timestep_spacing=spacing), steps)
    assert bool(expected) == fails  # the bug exists for linspace and trailing-7, not for leading or trailing-10
    path = tmp_path / f"ddim-{spacing}-{steps}.h5"
    with TracedScheduler(diffusers.DDIMScheduler(timestep_spacing=spacing), path) as scheduler:
        denoise(unet, scheduler, steps, eta=0.0)
    code = main(["check", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    failing = {c["id"]: c["failing"] for c in report["checks"] if c["failing"]}
    assert code == (1 if fails else 0)
    assert failing == ({"chain.t_prev": expected} if fails else {})  # each step's own math is right: the chain is not
    assert sorted({s for steps_ in failing.values() for s in steps_}) == expected


@pytest.mark.parametrize(("make", "steps", "kwargs"), [
    (lambda: diffusers.DDIMScheduler(), 10, {"eta": 0.5, "generator": "generator"}),
    (lambda: diffusers.DDIMScheduler(timestep_spacing="trailing", set_alpha_to_one=False), 10, {"eta": 1.0}),
    (lambda: diffusers.DDIMScheduler(clip_sample=False), 20, {}),
    (lambda: diffusers.DDPMScheduler(), 25, {"generator": "generator"}),
    (lambda: diffusers.DDPMScheduler(variance_type="fixed_large", timestep_spacing="trailing"), 10, {}),
], ids=["ddim-eta0.5", "ddim-eta1-alpha_bar_0", "ddim-noclip", "ddpm", "ddpm-beta-trailing"])  # the sigma-space families: test_diffusers_families.py
def test_traced_runs_are_unchanged_and_pass_check(unet: Any, tmp_path: Path, make: Callable[[], Any], steps: int, kwargs: dict[str, Any]) -> None:
    untraced = denoise(unet, make(), steps, **kwargs)
    with TracedScheduler(make(), tmp_path / "t.h5") as scheduler:
        traced = denoise(unet, scheduler, steps, **kwargs)
    assert torch.equal(traced, untraced)  # recording changes nothing, random draws included
    with open_trace(tmp_path / "t.h5") as trace:
        assert trace.status == "complete" and trace.num_steps == steps
        assert failing_steps(trace) == {}
        evaluations = {e.check.id: e for e in evaluate(trace)}
        assert "chain.x_t" in evaluations and "x0_from_eps" in evaluations
        step_eq = {"ddim": "ddim.step", "ddpm": "ddpm.step"}[str(trace.attr("sampler"))]
        assert None not in evaluations[step_eq].residuals  # the step's equation was checked at every step, with the recorded noise
        report = check_trace(trace)
        # set_alpha_to_one=False ends at alpha_bar_0, not the clean end: noise left (sqrt(1 - alpha_bar_0) eps)
        ends_at_0 = dict(scheduler.scheduler.config).get("set_alpha_to_one") is False and step_eq == "ddim.step"
        assert report.verdict == ("NOISE LEFT" if ends_at_0 else "PASS") and report.unchecked == ()
        noise = torch.stack([torch.from_numpy(trace.tensor("noise", i)) for i in range(steps)])
        assert bool((noise != 0).any()) == (kwargs.get("eta", 0) > 0 or "DDPM" in str(trace.config["integration"]["scheduler"]))


def test_the_trace_holds_what_the_scheduler_used(unet: Any, tmp_path: Path) -> None:
    scheduler = diffusers.DDIMScheduler(timestep_spacing="linspace")
    with TracedScheduler(scheduler, tmp_path / "t.h5") as traced:
        out = denoise(unet, traced, 10, eta=0.0)
    with open_trace(tmp_path / "t.h5") as trace:
        scalars = trace.scalars()
        assert scalars["t"].tolist() == [int(t) for t in scheduler.timesteps]
        assert scalars["t_prev"].tolist() == [int(t) - 100 if int(t) >= 100 else -1 for t in scheduler.timesteps]  # its own arithmetic
        assert scalars["alpha_bar_prev"][0] == float(scheduler.alphas_cumprod[899])
        x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
        assert torch.equal(torch.from_numpy(trace.tensor("x_t", 0)), x0)
        assert torch.equal(torch.from_numpy(trace.final("samples")), out)
        assert trace.config["integration"]["library"] == "diffusers" and trace.config["sampler"]["spacing"] == "linspace"
        assert trace.schedule is not None and trace.schedule.T == 1000


def test_float16_traces_pass_with_their_tolerance(unet: Any, tmp_path: Path) -> None:
    with TracedScheduler(diffusers.DDIMScheduler(), tmp_path / "t.h5", tensor_dtype="float16") as scheduler:
        denoise(unet, scheduler, 10, eta=0.5)
    with open_trace(tmp_path / "t.h5") as trace:
        assert trace.tensor_dtype == "float16" and failing_steps(trace) == {}


def test_v_prediction_records_the_model_output_and_checks_the_structure(unet: Any, tmp_path: Path) -> None:
    with TracedScheduler(diffusers.DDIMScheduler(prediction_type="v_prediction"), tmp_path / "t.h5") as scheduler:
        denoise(unet, scheduler, 5)
    with open_trace(tmp_path / "t.h5") as trace:
        assert "model_output" in trace.field_names() and "eps" not in trace.field_names()
        ids = {e.check.id for e in evaluate(trace)}
        assert {"chain.t_prev", "chain.x_t", "schedule.alpha_bar_prev"} <= ids and "ddim.step" not in ids
        assert failing_steps(trace) == {}


# -- behaving like the scheduler -----------------------------------------------------------------------------------


def test_it_behaves_like_the_wrapped_scheduler(tmp_path: Path) -> None:
    inner = diffusers.DDIMScheduler()
    traced = TracedScheduler(inner, tmp_path / "t.h5")
    traced.set_timesteps(4)
    assert traced.timesteps is inner.timesteps and inner.num_inference_steps == 4
    assert traced.config is inner.config and traced.init_noise_sigma == inner.init_noise_sigma and traced.order == inner.order
    x = torch.randn(SHAPE)
    assert torch.equal(traced.scale_model_input(x, traced.timesteps[0]), x)
    traced.eta_for_tests = 3  # attributes set on the wrapper land on the scheduler
    assert inner.eta_for_tests == 3
    result = traced.step(torch.zeros(SHAPE), traced.timesteps[0], x, return_dict=False)
    expected = inner.step(torch.zeros(SHAPE), inner.timesteps[0], x, return_dict=False)
    assert isinstance(result, tuple) and all(torch.equal(a, b) for a, b in zip(result, expected, strict=True))
    traced.close()


def test_the_trace_is_failed_on_an_exception_and_absent_without_steps(unet: Any, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="stop"), TracedScheduler(diffusers.DDIMScheduler(), tmp_path / "t.h5") as scheduler:
        scheduler.set_timesteps(10)
        x = torch.randn(SHAPE)
        for t in scheduler.timesteps[:3]:
            x = scheduler.step(torch.zeros(SHAPE), t, x).prev_sample
        raise RuntimeError("stop")
    with open_trace(tmp_path / "t.h5") as trace:
        assert trace.status == "failed" and trace.num_steps == 3 and trace.planned() == 10
        assert failing_steps(trace) == {}  # what was recorded is right; the unfinished end is not judged
    with TracedScheduler(diffusers.DDIMScheduler(), tmp_path / "none.h5"):
        pass
    assert not (tmp_path / "none.h5").exists()
    with pytest.raises(FileExistsError):
        TracedScheduler(diffusers.DDIMScheduler(), tmp_path / "t.h5")


def test_schedulers_without_pred_original_sample_are_refused(tmp_path: Path) -> None:
    scheduler = TracedScheduler(diffusers.DEISMultistepScheduler(), tmp_path / "t.h5")
    scheduler.set_timesteps(5)
    with pytest.raises(TypeError, match="pred_original_sample"):
        scheduler.step(torch.zeros(SHAPE), scheduler.timesteps[0], torch.randn(SHAPE))
    scheduler.close()
    assert not (tmp_path / "t.h5").exists()
    with pytest.raises(ValueError, match="not supported"):
        TracedScheduler(object(), tmp_path / "u.h5")


def test_a_missing_diffusers_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ModuleNotFoundError
    with pytest.raises(ModuleNotFoundError, match="noisescope\\[diffusers\\]") as error:
        require_diffusers()
    assert str(error.value) == INSTALL_HINT
    with pytest.raises(ModuleNotFoundError, match="pip install"):
        TracedScheduler(None, tmp_path / "t.h5")


# -- in pipelines ----------------------------------------------------------------------------------------------------


def test_a_diffusers_pipeline_runs_with_a_traced_scheduler(unet: Any, tmp_path: Path) -> None:
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler())
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=12, output_type="np").images
    pipe.scheduler = TracedScheduler(pipe.scheduler, tmp_path / "ddpm.h5")
    with pipe.scheduler:
        images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=12, output_type="np").images
    assert (images == expected).all()
    with open_trace(tmp_path / "ddpm.h5") as trace:
        assert trace.num_steps == 12 and failing_steps(trace) == {}


def pipeline_loop(unet: Any, scheduler: Any, latents: torch.Tensor, steps: int, callback: Any) -> torch.Tensor:
    """What a diffusers pipeline does around ``callback_on_step_end`` (e.g. StableDiffusionPipeline.__call__)."""

    class Pipe:
        pass

    pipe = Pipe()
    pipe.scheduler = scheduler  # type: ignore[attr-defined]
    scheduler.set_timesteps(steps)
    latents = latents * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        with torch.no_grad():
            noise_pred = unet(scheduler.scale_model_input(latents, t), t).sample
        latents = scheduler.step(noise_pred, t, latents).prev_sample
        callback_outputs = callback(pipe, i, t, {"latents": latents})
        latents = callback_outputs.pop("latents", latents)
    return latents


@pytest.mark.parametrize("with_x_T", [True, False])
def test_the_pipeline_callback_records_the_latents_and_catches_the_linspace_chain(unet: Any, tmp_path: Path, with_x_T: bool) -> None:  # noqa: N803
    scheduler = diffusers.DDIMScheduler(timestep_spacing="linspace")
    expected = steps_moving_elsewhere(diffusers.DDIMScheduler(timestep_spacing="linspace"), 10)
    latents = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    with PipelineRecorder(tmp_path / "cb.h5", x_T=latents if with_x_T else None) as recorder:
        out = pipeline_loop(unet, scheduler, latents, 10, recorder)
    first = 0 if with_x_T else 1  # without x_T the latents step 0 started from are not known
    with open_trace(tmp_path / "cb.h5") as trace:
        assert trace.num_steps == 10 - first and trace.config["sampler"]["first_step"] == first
        assert trace.column("t").tolist() == [int(t) for t in scheduler.timesteps][first:]
        assert torch.equal(torch.from_numpy(trace.final("samples")), out)
        if with_x_T:
            assert torch.equal(torch.from_numpy(trace.tensor("x_t", 0)), latents)
        failing = failing_steps(trace)
    assert failing == {"chain.t_prev": [i - first for i in expected if i >= first]}
