"""The sigma-space samplers step for step against the reference implementations: k-diffusion 0.1.1.post1's
``sample_euler``, ``sample_heun``, ``sample_euler_ancestral``, ``sample_dpmpp_2m`` (with its DiscreteEpsDDPMDenoiser
around the same network), and diffusers' EulerDiscreteScheduler, HeunDiscreteScheduler,
EulerAncestralDiscreteScheduler and DPMSolverMultistepScheduler configured alike. Same network, same z, same noise:
the same states, to float rounding (float64 runs against k-diffusion, float32 against diffusers, whose schedulers
keep their tables in float32).

Where a reference takes another convention the test pins the difference (docs/samplers.md says which noisescope takes):
diffusers' DPMSolverMultistepScheduler rounds t(sigma) to an integer for the network while stepping with the unrounded
sigma; its Euler, Heun and Euler ancestral schedulers start at sqrt(1 + sigma_0^2) z with ``leading`` spacing and at
sigma_0 z otherwise; k-diffusion draws a churn z at every step, also where gamma is 0; diffusers' Euler churns inside
step(), after the network was evaluated at the unchurned x_t and sigma_t.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from tracer.models.analytic import GaussianOracle
from tracer.models.mlp import MLP
from tracer.samplers import SamplerConfig, karras
from tracer.samplers.loop import run
from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule, make_schedule

from tests.reference_samplers import load_k_diffusion

MEAN, STD = torch.tensor([0.5, -0.3]), 0.4
loaded = load_k_diffusion()
needs_k = pytest.mark.skipif(loaded is None, reason="k-diffusion (with torchsde and torchdiffeq) is not installed: make venv installs it")


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return make_schedule("linear", 1000)


def networks(schedule: Schedule) -> dict[str, torch.nn.Module]:
    """The exact Gaussian predictor (float64 in, float64 out), and a tiny MLP with seeded random weights (float32) whose
    sinusoidal time embedding takes the fractional t."""
    torch.manual_seed(0)
    return {"oracle": GaussianOracle(schedule, MEAN.double(), STD), "mlp": MLP(2, (32, 32)).eval()}


def ours(model: Any, schedule: Schedule, name: str, z: torch.Tensor, seed: int = 5, **options: Any) -> list[StepRecord]:
    return list(run(model, schedule, SamplerConfig(name, **options), z, generator=torch.Generator().manual_seed(seed)))


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


# -- k-diffusion ---------------------------------------------------------------------------------------------------

K_CASES: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "euler": ("euler", "sample_euler", {}, {}),
    "euler churn": ("euler", "sample_euler", {"s_churn": 1.5, "s_noise": 1.003}, {"s_churn": 1.5, "s_noise": 1.003}),
    "heun": ("heun", "sample_heun", {}, {}),
    "heun churn": ("heun", "sample_heun", {"s_churn": 4.0}, {"s_churn": 4.0}),
    "euler_ancestral": ("euler_ancestral", "sample_euler_ancestral", {"eta": 0.8, "s_noise": 1.01}, {"eta": 0.8, "s_noise": 1.01}),
    "dpmpp_2m": ("dpmpp_2m", "sample_dpmpp_2m", {}, {}),
    "dpmpp_2m exponential": ("dpmpp_2m", "sample_dpmpp_2m", {"sigma_schedule": "exponential"}, {}),
}


@needs_k
@pytest.mark.parametrize("network", ["oracle", "mlp"])
@pytest.mark.parametrize("case", list(K_CASES))
def test_states_equal_k_diffusions(schedule: Schedule, case: str, network: str) -> None:
    assert loaded is not None
    sampling, external = loaded
    name, function, options, k_options = K_CASES[case]
    model = networks(schedule)[network]
    dtype = torch.float64 if network == "oracle" else torch.float32
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=dtype)
    records = ours(model, schedule, name, z, steps=12, **options)
    sigmas = torch.tensor([r.sigma_t for r in records] + [records[-1].sigma_next], dtype=torch.float64)
    denoiser = external.DiscreteEpsDDPMDenoiser(model, torch.tensor(schedule.alpha_bar), quantize=False)
    seen: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    if name == "euler_ancestral":  # the same z, handed to k-diffusion's noise sampler in the order it asks
        drawn = iter([r.noise for r in records if r.sigma > 0])
        extra["noise_sampler"] = lambda sigma, sigma_next: next(drawn)
    torch.manual_seed(5)  # k-diffusion's churn draws torch.randn_like from the global generator: our generator's seed
    out = getattr(sampling, function)(denoiser, z * sigmas[0].to(dtype), sigmas.to(dtype), callback=seen.append, disable=True,
                                      **k_options, **extra)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert len(seen) == len(records)
    for record, state in zip(records, seen):
        x = record.x_hat if record.x_hat is not None else record.x_t  # k-diffusion's callback x is after churn
        scale = 1.0 + float(x.abs().max())
        assert diff(x, state["x"]) <= tol * scale and diff(record.x0_pred, state["denoised"]) <= tol * scale, record.index
        assert float(state["sigma_hat"]) == pytest.approx(record.sigma_hat or record.sigma_t, rel=tol)
    assert diff(records[-1].x_prev, out) <= tol * (1.0 + float(out.abs().max()))


@needs_k
def test_noise_levels_and_timesteps_equal_k_diffusions(schedule: Schedule) -> None:
    assert loaded is not None
    sampling, external = loaded
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # k-diffusion's linspace takes the default dtype
    try:
        resolved = SamplerConfig("euler", steps=20, rho=5.0).resolve(schedule.T, schedule.alpha_bar)
        k = sampling.get_sigmas_karras(20, resolved.sigma_min, resolved.sigma_max, rho=5.0)
        assert torch.allclose(torch.tensor(resolved.sigmas), k, rtol=1e-13, atol=0)
        resolved = SamplerConfig("euler", steps=20, sigma_schedule="exponential").resolve(schedule.T, schedule.alpha_bar)
        k = sampling.get_sigmas_exponential(20, resolved.sigma_min, resolved.sigma_max)
        assert torch.allclose(torch.tensor(resolved.sigmas), k, rtol=1e-13, atol=0)
    finally:
        torch.set_default_dtype(default)
    denoiser = external.DiscreteEpsDDPMDenoiser(torch.nn.Identity(), torch.tensor(schedule.alpha_bar), quantize=False)
    assert float(denoiser.sigma_min) == resolved.sigma_min and float(denoiser.sigma_max) == resolved.sigma_max
    log_sigmas = [math.log(s) for s in karras.schedule_sigmas(schedule.alpha_bar.tolist())]
    for sigma in torch.tensor(resolved.sigmas[:-1], dtype=torch.float64):
        assert karras.sigma_to_t(float(sigma), log_sigmas) == pytest.approx(float(denoiser.sigma_to_t(sigma)), abs=1e-9)


@needs_k
def test_k_diffusion_draws_a_churn_z_at_every_step_noisescope_only_where_gamma_is_above_0(schedule: Schedule) -> None:
    """With S_tmin above the lowest levels, the steps below it draw nothing here and a z each in k-diffusion: from the first
    such step on, the same seed no longer gives the same noise (the pinned difference)."""
    assert loaded is not None
    sampling, external = loaded
    model = networks(schedule)["oracle"]
    z = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    records = ours(model, schedule, "euler", z, steps=8, s_churn=2.0, s_tmax=1.0)  # churn only at sigma <= 1: the last steps
    assert records[0].sigma_hat == records[0].sigma_t and not records[0].noise.any() and records[-1].noise.any()
    sigmas = torch.tensor([r.sigma_t for r in records] + [0.0], dtype=torch.float64)
    denoiser = external.DiscreteEpsDDPMDenoiser(model, torch.tensor(schedule.alpha_bar), quantize=False)
    torch.manual_seed(5)
    out = sampling.sample_euler(denoiser, z * sigmas[0], sigmas, disable=True, s_churn=2.0, s_tmax=1.0)
    assert diff(records[-1].x_prev, out) > 1e-3


# -- diffusers --------------------------------------------------------------------------------------------------------


@torch.no_grad()
def diffusers_loop(scheduler: Any, model: Callable[..., torch.Tensor], z: torch.Tensor, generator: torch.Generator | None = None,
                   scale_input: bool = True) -> list[torch.Tensor]:
    """diffusers' sampling loop: the state after every step() call."""
    x = z * scheduler.init_noise_sigma
    states = []
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t) if scale_input else x
        output = model(x_in, t.reshape(1).expand(x.shape[0]).to(torch.float64))
        x = (scheduler.step(output, t, x, generator=generator) if generator is not None else scheduler.step(output, t, x)).prev_sample
        states.append(x)
    return states


DIFFUSERS = {  # name: (scheduler, its config, noisescope's options besides the levels)
    "euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, {}),
    "heun": ("HeunDiscreteScheduler", {"use_karras_sigmas": True}, {}),
    # this diffusers' EulerAncestralDiscreteScheduler has no karras levels: its trailing timesteps, integers, where
    # t(sigma) is exact, are noisescope's schedule levels with trailing spacing
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}, {"sigma_schedule": "schedule", "spacing": "trailing"}),
}


@pytest.mark.parametrize("network", ["oracle", "mlp"])
@pytest.mark.parametrize("name", list(DIFFUSERS))
def test_states_equal_diffusers_schedulers(schedule: Schedule, name: str, network: str) -> None:
    import diffusers

    class_name, config, options = DIFFUSERS[name]
    scheduler = getattr(diffusers, class_name)(num_train_timesteps=schedule.T, trained_betas=schedule.beta.tolist(), **config)
    scheduler.set_timesteps(10)
    levels = torch.unique_consecutive(scheduler.sigmas).double().tolist()  # Heun lists each inner level twice
    model = networks(schedule)[network]
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    records = ours(model, schedule, name, z, seed=7, sigmas=tuple(levels))
    # diffusers' levels are noisescope's plan of the same options on diffusers' float32 alphas_cumprod (whose
    # 1 - alpha_bar_0 cancels to ~1e-4 relative: the float64 plan's sigma_min differs from it by that much)
    alpha_bar32 = scheduler.alphas_cumprod.double().numpy()
    plan = SamplerConfig(name, steps=10, **options).resolve(schedule.T, alpha_bar32).sigmas
    assert torch.allclose(torch.tensor(levels, dtype=torch.float64), torch.tensor(plan, dtype=torch.float64), rtol=2e-6, atol=0)
    states = diffusers_loop(scheduler, model, z, torch.Generator().manual_seed(7) if name != "heun" else None)
    if name == "heun":  # two calls a step: the predictor's x_euler, then the corrected state; one call at the last step
        expected = [s for r in records[:-1] for s in (r.x_euler, r.x_prev)] + [records[-1].x_prev]
    else:
        expected = [r.x_prev for r in records]
    assert len(states) == len(expected)
    worst = max(diff(a, b) / (1.0 + float(b.abs().max())) for a, b in zip(expected, states))
    assert worst < 5e-5, worst


def test_states_equal_diffusers_dpm_solver_multistep(schedule: Schedule) -> None:
    """DPMSolverMultistepScheduler steps the VP variable x / sqrt(1 + sigma^2) from x_T = z (noisescope's start="vp");
    its default timesteps are integers, where t(sigma) is exact."""
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=schedule.T, trained_betas=schedule.beta.tolist(),
                                            algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero")
    scheduler.set_timesteps(10)
    model = networks(schedule)["oracle"]
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    records = ours(model, schedule, "dpmpp_2m", z, sigmas=tuple(scheduler.sigmas.double().tolist()), start="vp")
    assert [r.t for r in records] == scheduler.timesteps.tolist()
    states = diffusers_loop(scheduler, model, z, scale_input=False)
    expected = [r.x_prev / math.sqrt(1.0 + r.sigma_next**2) for r in records]
    worst = max(diff(a, b) / (1.0 + float(b.abs().max())) for a, b in zip(expected, states))
    assert worst < 5e-5, worst


def test_diffusers_dpm_solver_rounds_the_networks_timestep_of_a_karras_level(schedule: Schedule) -> None:
    """With use_karras_sigmas diffusers' DPMSolverMultistepScheduler calls the network at round(t(sigma)) but steps with
    sigma; noisescope calls it at t(sigma) itself (the pinned difference)."""
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=schedule.T, trained_betas=schedule.beta.tolist(),
                                            algorithm_type="dpmsolver++", use_karras_sigmas=True, final_sigmas_type="zero")
    scheduler.set_timesteps(10)
    resolved = SamplerConfig("dpmpp_2m", steps=10).resolve(schedule.T, schedule.alpha_bar)
    assert resolved.timesteps is not None
    assert [float(t) for t in scheduler.timesteps] == [round(t) for t in resolved.timesteps]
    assert any(abs(t - round(t)) > 0.1 for t in resolved.timesteps)


def test_diffusers_euler_starts_at_sqrt_1_plus_sigma_squared_with_leading_spacing(schedule: Schedule) -> None:
    """noisescope's start="vp" is diffusers' leading spacing's init_noise_sigma; start="sigma" its linspace and trailing one."""
    from diffusers import EulerDiscreteScheduler

    for spacing, start in (("leading", "vp"), ("linspace", "sigma"), ("trailing", "sigma")):
        scheduler = EulerDiscreteScheduler(num_train_timesteps=schedule.T, trained_betas=schedule.beta.tolist(), timestep_spacing=spacing)
        scheduler.set_timesteps(10)
        sigma_0 = float(scheduler.sigmas.max())
        resolved = SamplerConfig("euler", sigmas=tuple(scheduler.sigmas.double().tolist()), start=start).resolve(schedule.T, schedule.alpha_bar)
        assert karras.start_scale(resolved) == pytest.approx(float(scheduler.init_noise_sigma), rel=1e-6), spacing
        assert sigma_0 == pytest.approx(resolved.sigmas[0], rel=1e-12)


def test_diffusers_euler_churns_after_the_network_was_evaluated_at_the_unchurned_state(schedule: Schedule) -> None:
    """diffusers' EulerDiscreteScheduler draws the churn z inside step(), once the network has seen x_t at sigma_t, and
    steps x_hat with that output; Karras et al. (Alg. 2), k-diffusion and noisescope evaluate the network at x_hat and
    sigma_hat (the pinned difference: the same z, the same x_hat, another x_prev)."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(num_train_timesteps=schedule.T, trained_betas=schedule.beta.tolist(), use_karras_sigmas=True)
    scheduler.set_timesteps(10)
    model = networks(schedule)["oracle"]
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    records = ours(model, schedule, "euler", z, seed=7, sigmas=tuple(scheduler.sigmas.double().tolist()), s_churn=2.0)
    first = records[0]
    assert first.x_hat is not None and first.sigma_hat is not None and first.sigma_hat > first.sigma_t
    drawn = torch.randn(z.shape, generator=torch.Generator().manual_seed(7))
    assert diff(first.noise, drawn) == 0  # the churn z is the first draw of the seed's generator here and there
    x, t = z * scheduler.init_noise_sigma, scheduler.timesteps[0]
    output = model(scheduler.scale_model_input(x, t), t.reshape(1).expand(16).to(torch.float64))  # at x_t and sigma_t
    stepped = scheduler.step(output, t, x, s_churn=2.0, generator=torch.Generator().manual_seed(7)).prev_sample
    by_hand = first.x_hat + (first.sigma_next - first.sigma_hat) * output  # x_hat stepped with the unchurned evaluation
    scale = 1.0 + float(stepped.abs().max())
    assert diff(stepped, by_hand) <= 5e-5 * scale
    assert diff(stepped, first.x_prev) > 1e-3 * scale  # noisescope's step, with the network at x_hat and sigma_hat
