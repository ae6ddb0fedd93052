"""Tracing k-diffusion (issue 14, point 3): KDiffusionRecorder records k-diffusion 0.1.1.post1's own ``sample_euler``,
``sample_heun``, ``sample_euler_ancestral`` and ``sample_dpmpp_2m`` runs, and ``noisescope check`` verifies them.

Each run is k-diffusion's (its sampling.py and external.py, loaded by tests/reference_samplers.py), around the exact
Gaussian predictor (eps and v) in k-diffusion's discrete-schedule denoisers. Beside check's verdict, the trace is
compared with noisescope's own sampler from the same x_T (and the same noise) by ``noisescope diff``: they agree.
A run that does not do what the recorder was told (another eta) fails check; what cannot be recorded is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.reference_samplers import load_k_diffusion
from tracer.check import check_trace
from tracer.diff import diff_traces
from tracer.integrations.k_diffusion import SAMPLERS, KDiffusionRecorder
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers import SamplerConfig
from tracer.schedules import Schedule, make_schedule
from tracer.trace.reader import open_trace

loaded = load_k_diffusion()
pytestmark = pytest.mark.skipif(loaded is None, reason="k-diffusion (with torchsde and torchdiffeq) is not installed: make venv installs it")
MEAN, STD, STEPS = torch.tensor([0.5, -0.3], dtype=torch.float64), 0.4, 8
OPTIONS: dict[str, dict[str, Any]] = {"euler_ancestral": {"eta": 0.7, "s_noise": 1.01}}


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return make_schedule("linear", 1000)


def denoiser_for(schedule: Schedule, prediction: str) -> Any:
    assert loaded is not None
    external = loaded[1]
    model = GaussianOracle(schedule, MEAN, STD, prediction=prediction)
    wrapper = external.DiscreteEpsDDPMDenoiser if prediction == "eps" else external.DiscreteVDDPMDenoiser
    return wrapper(model, torch.tensor(schedule.alpha_bar), quantize=False)


def levels(schedule: Schedule, sampler: str) -> torch.Tensor:
    resolved = SamplerConfig(sampler, steps=STEPS).resolve(schedule.T, schedule.alpha_bar)
    return torch.tensor(resolved.sigmas, dtype=torch.float64)


def k_run(schedule: Schedule, sampler: str, path: Path, prediction: str = "eps", told: dict[str, Any] | None = None) -> Path:
    """k-diffusion's sampler run on the recorded denoiser, with the recorder told ``told`` (default: the run's options)."""
    assert loaded is not None
    sampling = loaded[0]
    sigmas = levels(schedule, sampler)
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    options = OPTIONS.get(sampler, {})
    with KDiffusionRecorder(path, sampler, sigmas, **(told if told is not None else options)) as recorder:
        extra = {"noise_sampler": recorder.noise_sampler(z, torch.Generator().manual_seed(5))} if sampler == "euler_ancestral" else {}
        x = getattr(sampling, SAMPLERS[sampler])(recorder.wrap(denoiser_for(schedule, prediction)), z * sigmas[0], sigmas,
                                                 callback=recorder.callback, disable=True, **options, **extra)
        recorder.result(x)
    return path


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_a_recorded_k_diffusion_run_passes_check_and_equals_noisescopes(schedule: Schedule, tmp_path: Path, sampler: str,
                                                                         prediction: str) -> None:
    path = k_run(schedule, sampler, tmp_path / "k.h5", prediction)
    ours = tmp_path / "ours.h5"
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    record_run(GaussianOracle(schedule, MEAN, STD, prediction=prediction), schedule,
               SamplerConfig(sampler, sigmas=tuple(levels(schedule, sampler).tolist()), **OPTIONS.get(sampler, {})), x_T=z, labels=None,
               generator=torch.Generator().manual_seed(5), out=ours, progress=False)
    with open_trace(path) as trace:
        report = check_trace(trace)
        assert trace.num_steps == STEPS and trace.status == "complete"
        assert trace.config["source"]["function"] == SAMPLERS[sampler]
        with open_trace(ours) as own:
            result = diff_traces(trace, own)
    assert report.verdict == "PASS", [(c.id, c.worst) for c in report.failed]
    assert not report.unchecked
    assert result.lined_up_by == "step" and result.agree, result.parts


def test_a_run_other_than_the_one_declared_fails_check(schedule: Schedule, tmp_path: Path) -> None:
    """Euler ancestral run with eta 0.7, recorded as if eta were 0.3: sigma_up and sigma_down are not the run's."""
    path = k_run(schedule, "euler_ancestral", tmp_path / "k.h5", told={"eta": 0.3, "s_noise": 1.01})
    with open_trace(path) as trace:
        report = check_trace(trace)
    assert report.verdict == "FAIL"
    assert any(c.id.startswith("euler_ancestral.") for c in report.failed), [c.id for c in report.failed]


def test_what_cannot_be_recorded_is_refused(schedule: Schedule, tmp_path: Path) -> None:
    assert loaded is not None
    sampling, external = loaded
    sigmas = levels(schedule, "euler")
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with pytest.raises(ValueError, match="churn"):
        with KDiffusionRecorder(tmp_path / "churn.h5", "euler", sigmas) as recorder:
            sampling.sample_euler(recorder.wrap(denoiser_for(schedule, "eps")), z * sigmas[0], sigmas, callback=recorder.callback,
                                  disable=True, s_churn=2.0)
    rounded = external.DiscreteEpsDDPMDenoiser(GaussianOracle(schedule, MEAN, STD), torch.tensor(schedule.alpha_bar), quantize=True)
    with pytest.raises(ValueError, match="quantize"):
        KDiffusionRecorder(tmp_path / "q.h5", "euler", sigmas).wrap(rounded)
    with pytest.raises(ValueError, match="discrete-schedule"):
        KDiffusionRecorder(tmp_path / "other.h5", "euler", sigmas).wrap(lambda x, sigma: x)
    for bad in ([1.0, 0.5], [1.0, 2.0, 0.0], []):
        with pytest.raises(ValueError, match="sigmas"):
            KDiffusionRecorder(tmp_path / "s.h5", "euler", bad)
    with pytest.raises(ValueError, match="sampler"):
        KDiffusionRecorder(tmp_path / "s.h5", "lms", sigmas)


def test_a_run_stopped_midway_keeps_its_steps_and_is_failed(schedule: Schedule, tmp_path: Path) -> None:
    assert loaded is not None
    sampling = loaded[0]
    sigmas = levels(schedule, "euler")
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    path = tmp_path / "stopped.h5"

    def stop_at_4(info: dict[str, Any]) -> None:
        recorder.callback(info)
        if info["i"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), KDiffusionRecorder(path, "euler", sigmas) as recorder:
        sampling.sample_euler(recorder.wrap(denoiser_for(schedule, "eps")), z * sigmas[0], sigmas, callback=stop_at_4, disable=True)
    with open_trace(path) as trace:
        assert trace.status == "failed" and trace.num_steps == 4  # steps 0-3 ended when step 4 began
        report = check_trace(trace)
    assert report.status == "failed" and report.rows == 4 and report.passed  # the 4 steps kept are k-diffusion's, and hold
