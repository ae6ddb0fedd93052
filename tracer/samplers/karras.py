"""Sampling in sigma space (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"):
what the Euler, Heun, Euler ancestral and DPM-Solver++(2M) plug-ins share.

A network trained on a discrete VP schedule (Ho et al. 2020) sees x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps.
Divided by sqrt(alpha_bar), that is the variance-exploding variable of Karras et al. (Sec. 2, Eq. 1 with s(t) = 1):

    x = x0 + sigma eps,    sigma^2 = (1 - alpha_bar) / alpha_bar,    alpha_bar = 1 / (1 + sigma^2)

so the network is evaluated on x / sqrt(1 + sigma^2) (= x_t) at the timestep of sigma, and its output
gives the denoiser D(x; sigma) = x0_pred (Karras et al. 2022, Table 1, "VP" column; k-diffusion's
DiscreteEpsDDPMDenoiser):

    eps network:  x0_pred = x - sigma eps
    x0 network:   x0_pred = f,                                    eps = (x - x0_pred) / sigma
    v network:    x0_pred = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) v,   eps = (x - x0_pred) / sigma

The probability-flow ODE in sigma is dx/dsigma = (x - D(x; sigma)) / sigma = eps (Eq. 3 with sigma(t) = t).

Which timestep a noise level is (``sigma_to_t``): log sigma interpolated linearly between the
schedule's levels sigma_s = sqrt((1 - alpha_bar_s) / alpha_bar_s), s = 0..T-1 (k-diffusion's
DiscreteSchedule.sigma_to_t, diffusers' EulerDiscreteScheduler._sigma_to_t). The result is fractional
between schedule indices and is passed to the network as a float64 [B] tensor: noisescope's networks embed
float(t) (sinusoidal embeddings), so a fractional t is the embedding between its neighbours; the exact
Gaussian predictor (tracer/models/analytic.py) reads it back with ``t_to_sigma``, the same interpolation.
A noise level outside the schedule's range [sigma_0, sigma_{T-1}] has no timestep: it is refused.

Noise levels of a run (``Options.sigma_schedule``), N steps, ending at 0 (or at sigma_min on request):

    karras:       sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho   (Eq. 5)
    exponential:  sigma_i = exp(log sigma_max + i / (N - 1) (log sigma_min - log sigma_max))
    schedule:     sigma_i = the schedule's own sigma at DDIM's timesteps (leading, trailing or linspace spacing)

with sigma_min = sigma_0 and sigma_max = sigma_{T-1} of the schedule unless given.

The run starts at x = sigma_0 z from the loop's x_T = z ~ N(0, I) (k-diffusion; ``start="sigma"``), or at
x = sqrt(1 + sigma_0^2) z (``start="vp"``), where the network's first input x / sqrt(1 + sigma_0^2) is z
itself, as DDPM's and DDIM's x_T: the same seed then gives all four the same first network input.

Churn (Karras et al. 2022, Alg. 2, lines 4-6): before the evaluation, a step may raise its noise level
to sigma_hat = sigma_t (1 + gamma), gamma = min(S_churn / N, sqrt(2) - 1) where S_tmin <= sigma_t <= S_tmax,
adding fresh noise: x_hat = x_t + sqrt(sigma_hat^2 - sigma_t^2) S_noise z.

Torch-free: the functions work on torch tensors and NumPy arrays alike.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tracer.config import ConfigError
from tracer.samplers.base import check_literals, check_steps, option
from tracer.samplers.timesteps import ddim_timesteps

SigmaSchedule = Literal["karras", "exponential", "schedule"]
FinalSigma = Literal["zero", "sigma_min"]
Start = Literal["sigma", "vp"]
Spacing = Literal["leading", "trailing", "linspace"]
DEFAULT_STEPS = 50
KARRAS = "Karras et al. 2022"


# -- noise levels and timesteps --------------------------------------------------------------------------------


def schedule_sigmas(alpha_bar: Sequence[float]) -> list[float]:
    """sigma_s = sqrt((1 - alpha_bar_s) / alpha_bar_s) for every schedule index s (float64)."""
    return [math.sqrt((1.0 - float(a)) / float(a)) if float(a) > 0 else math.inf for a in alpha_bar]


def alpha_bar_of_sigma(sigma: float) -> float:
    """alpha_bar = 1 / (1 + sigma^2): the VP alpha_bar of a noise level (sigma = 0: alpha_bar = 1, the clean end)."""
    return 1.0 / (1.0 + sigma * sigma)


def sigma_to_t(sigma: float, log_sigmas: Sequence[float]) -> float:
    """t(sigma): log sigma interpolated linearly between the schedule's log sigma_s (k-diffusion's DiscreteSchedule.sigma_to_t).

    ``log_sigmas`` ascend with s; the result is fractional between indices, clamped to [0, T-1].
    """
    log_sigma = math.log(sigma)
    low = min(max(bisect.bisect_right(log_sigmas, log_sigma) - 1, 0), len(log_sigmas) - 2)
    w = (log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1])
    return low + min(max(w, 0.0), 1.0)


def t_to_sigma(t: float, log_sigmas: Sequence[float]) -> float:
    """sigma(t) = exp((1 - w) log sigma_floor(t) + w log sigma_ceil(t)), w = t - floor(t): the inverse of ``sigma_to_t``."""
    low = min(int(math.floor(t)), len(log_sigmas) - 1)
    high = min(low + 1, len(log_sigmas) - 1)
    w = t - low
    return math.exp((1.0 - w) * log_sigmas[low] + w * log_sigmas[high])


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i = 0..N-1  (Karras et al. 2022, Eq. 5)."""
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    ramp = [i / (n - 1) if n > 1 else 0.0 for i in range(n)]
    return [(hi + r * (lo - hi)) ** rho for r in ramp]


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float) -> list[float]:
    """sigma_i = exp(log sigma_max + i / (N - 1) (log sigma_min - log sigma_max)): equal steps in log sigma (k-diffusion)."""
    a, b = math.log(sigma_max), math.log(sigma_min)
    return [math.exp(a + (i / (n - 1) if n > 1 else 0.0) * (b - a)) for i in range(n)]


# -- the options every sigma-space sampler shares ------------------------------------------------------------------


def _check_positive(name: str, value: object, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value!r}")


def _check_nonnegative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class SigmaOptions:
    """The noise levels of a sigma-space run; ``steps`` None is min(50, T), ``sigmas`` an explicit descending list instead."""

    steps: int | None = option(None, "steps, 1..T (default 50, or T if smaller)")
    sigma_schedule: str = option("karras", "the noise levels: karras (Karras et al. 2022, Eq. 5), exponential (equal steps in "
                                 "log sigma) or schedule (the training schedule's sigmas at DDIM's timesteps of --spacing)",
                                 choices=SigmaSchedule)
    rho: float = option(7.0, "karras: the exponent rho > 0 of Eq. 5 (default 7)")
    sigma_min: float | None = option(None, "the smallest noise level before the end (default: the schedule's sigma_0)")
    sigma_max: float | None = option(None, "the first noise level (default: the schedule's sigma_{T-1})")
    spacing: str = option("leading", "schedule: which timesteps (leading, trailing or linspace, as DDIM's)", choices=Spacing)
    final_sigma: str = option("zero", "where the last step lands: zero (the clean sample) or sigma_min (noise of that std is "
                              "left; check says so)", choices=FinalSigma)
    start: str = option("sigma", "the first x from x_T = z: sigma (x = sigma_0 z, k-diffusion) or vp (x = sqrt(1 + sigma_0^2) z: "
                        "the network's first input is z, as DDPM's and DDIM's)", choices=Start)
    sigmas: tuple[float, ...] | None = dataclasses.field(default=None, metadata={"help": "explicit noise levels, descending, the "
                                                                                 "last the end (0 or not)", "cli": False})
    timesteps: tuple[float, ...] | None = dataclasses.field(default=None, metadata={"help": "resolved: t(sigma_i) of each level above 0",
                                                                                    "cli": False})

    def __post_init__(self) -> None:
        check_literals(self)
        check_steps(self.steps)
        _check_positive("rho", self.rho, allow_none=False)
        _check_positive("sigma_min", self.sigma_min)
        _check_positive("sigma_max", self.sigma_max)
        if self.sigma_min is not None and self.sigma_max is not None and self.sigma_min >= self.sigma_max:
            raise ConfigError(f"--sigma-min must be below --sigma-max, got {self.sigma_min} >= {self.sigma_max}")
        if self.sigmas is not None:
            object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", tuple(float(t) for t in self.timesteps))


@dataclass(frozen=True)
class ChurnOptions(SigmaOptions):
    """Sigma-space options with Karras et al.'s churn (Alg. 2): S_churn 0 (the default) is the deterministic Alg. 1."""

    s_churn: float = option(0.0, "S_churn >= 0: how much noise to add back before each step (Alg. 2; 0: deterministic)")
    s_tmin: float = option(0.0, "S_tmin: churn only where sigma_t >= S_tmin")
    s_tmax: float | None = option(None, "S_tmax: churn only where sigma_t <= S_tmax (default: no bound)")
    s_noise: float = option(1.0, "S_noise: the std of the churn noise, relative (Alg. 2, line 5)")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_nonnegative("s_churn", self.s_churn)
        _check_nonnegative("s_tmin", self.s_tmin)
        _check_nonnegative("s_noise", self.s_noise)
        if self.s_tmax is not None and (isinstance(self.s_tmax, bool) or not isinstance(self.s_tmax, (int, float))
                                        or math.isnan(self.s_tmax) or self.s_tmax < self.s_tmin):
            raise ConfigError(f"--s-tmax must be >= --s-tmin, got {self.s_tmax!r}")


def check_sigmas(sigmas: Sequence[float], low: float, high: float) -> None:
    """Raise unless ``sigmas`` has two or more levels, descends strictly, ends at 0 or a level, and stays in [low, high]."""
    if len(sigmas) < 2:
        raise ConfigError(f"a sigma-space run needs at least two noise levels (one step), got {list(sigmas)}")
    if any(not math.isfinite(s) for s in sigmas) or any(a <= b for a, b in zip(sigmas, sigmas[1:])):
        raise ConfigError(f"noise levels must be finite and strictly descending, got {list(sigmas)}")
    inside = sigmas[:-1] if sigmas[-1] == 0 else sigmas
    # float32 rounding of the ends (k-diffusion's get_sigmas_* compute in float32 by default) counts as inside: t(sigma) is
    # clamped to [0, T - 1] there, as k-diffusion's sigma_to_t clamps it
    out = [s for s in inside if not low * (1 - 1e-6) <= s <= high * (1 + 1e-6)]
    if out:
        raise ConfigError(f"noise level {out[0]:.6g} is outside the schedule's range [{low:.6g}, {high:.6g}]: "
                          "the network has no timestep for it")


def resolve_sigmas(options: SigmaOptions, T: int, alpha_bar: Any) -> SigmaOptions:  # noqa: N803
    """``options`` with ``steps``, ``sigma_min``, ``sigma_max``, the noise levels ``sigmas`` (the last is the end) and the
    network's ``timesteps`` filled in for this schedule."""
    if alpha_bar is None:
        raise ConfigError("a sigma-space sampler needs the schedule's alpha_bar to place its noise levels")
    levels = schedule_sigmas(alpha_bar)
    if len(levels) < 2 or not math.isfinite(levels[-1]) or levels[0] <= 0:
        raise ConfigError("a sigma-space sampler needs a schedule with 0 < alpha_bar < 1 everywhere: sigma_max is infinite "
                          "where alpha_bar = 0 (zero terminal SNR)")
    log_sigmas = [math.log(s) for s in levels]
    low, high = levels[0], levels[-1]
    sigma_min = options.sigma_min if options.sigma_min is not None else low
    sigma_max = options.sigma_max if options.sigma_max is not None else high
    if sigma_min >= sigma_max:
        raise ConfigError(f"--sigma-min must be below --sigma-max, got {sigma_min:.6g} >= {sigma_max:.6g}")
    if options.sigmas is not None:
        sigmas = list(options.sigmas)
        if options.steps is not None and options.steps != len(sigmas) - 1:
            raise ConfigError("give either steps or sigmas, not both")
    else:
        steps = options.steps if options.steps is not None else min(DEFAULT_STEPS, T)
        if not 1 <= steps <= T:
            raise ConfigError(f"--steps must lie in [1, {T}] for this model's T={T}, got {steps}")
        ending = options.final_sigma == "sigma_min"  # then sigma_min is the end, not the last visited level
        if options.sigma_schedule == "karras":
            sigmas = karras_sigmas(steps + ending, sigma_min, sigma_max, options.rho)
        elif options.sigma_schedule == "exponential":
            sigmas = exponential_sigmas(steps + ending, sigma_min, sigma_max)
        else:
            if options.sigma_min is not None or options.sigma_max is not None:
                raise ConfigError("--sigma-min and --sigma-max place karras and exponential levels; the schedule's own levels "
                                  "are its sigmas at DDIM's timesteps (--spacing)")
            sigmas = [levels[t] for t in ddim_timesteps(T, steps, options.spacing)]
            if ending and sigmas[-1] == sigma_min:
                raise ConfigError(f"--final-sigma sigma_min: the {options.spacing} timesteps already end at t = 0 (sigma_min); "
                                  "choose trailing spacing or --final-sigma zero")
            if ending:
                sigmas.append(sigma_min)
        if not ending:
            sigmas.append(0.0)
    check_sigmas(sigmas, low, high)
    timesteps = tuple(sigma_to_t(s, log_sigmas) for s in sigmas if s > 0)
    return dataclasses.replace(options, steps=len(sigmas) - 1, sigma_min=sigma_min, sigma_max=sigma_max,
                               sigmas=tuple(sigmas), timesteps=timesteps)


def plan(resolved: SigmaOptions, T: int) -> list[tuple[int, int]]:  # noqa: N803
    """(t, t_prev) of every step: the nearest schedule indices of t(sigma_i) and t(sigma_{i+1}); -1 where sigma_{i+1} = 0."""
    assert resolved.timesteps is not None and resolved.sigmas is not None, "plan() takes resolve()'s options"
    ts = [round(t) for t in resolved.timesteps]  # t(sigma) of every level above 0
    steps = len(resolved.sigmas) - 1
    return [(ts[i], ts[i + 1] if i + 1 < len(ts) else -1) for i in range(steps)]


def start_scale(resolved: SigmaOptions) -> float:
    """The factor c of the first x = c z: sigma_0 (``sigma``, k-diffusion) or sqrt(1 + sigma_0^2) (``vp``)."""
    assert resolved.sigmas is not None
    s0 = resolved.sigmas[0]
    return s0 if resolved.start == "sigma" else math.sqrt(1.0 + s0 * s0)


# -- the denoiser and churn ------------------------------------------------------------------------------------


def denoise(output: Any, x: Any, sigma: float, prediction: str) -> tuple[Any, Any]:
    """(eps, x0_pred) at (x, sigma) from the network's output (Karras et al. 2022, Table 1, VP preconditioning):
    eps: x0_pred = x - sigma eps;  x0: eps = (x - x0_pred) / sigma;
    v: x0_pred = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) v, eps = (x - x0_pred) / sigma."""
    if prediction == "eps":
        return output, x - sigma * output
    if prediction == "x0":
        x0 = output
    elif prediction == "v":
        x0 = x * (1.0 / (1.0 + sigma * sigma)) - (sigma / math.sqrt(1.0 + sigma * sigma)) * output
    else:
        raise ConfigError(f"unknown prediction type {prediction!r}")
    return (x - x0) / sigma, x0


def churn_gamma(sigma_t: float, steps: int, s_churn: float, s_tmin: float, s_tmax: float | None) -> float:
    """gamma_i = min(S_churn / N, sqrt(2) - 1) where S_tmin <= sigma_i <= S_tmax (None: no bound), else 0
    (Karras et al. 2022, Alg. 2, line 4)."""
    inside = s_tmin <= sigma_t and (s_tmax is None or sigma_t <= s_tmax)
    return min(s_churn / steps, math.sqrt(2.0) - 1.0) if inside else 0.0


def churn(x_t: Any, sigma_t: float, sigma_hat: float, s_noise: float, noise: Any) -> Any:
    """x_hat = x_t + sqrt(sigma_hat^2 - sigma_t^2) S_noise z  (Karras et al. 2022, Alg. 2, lines 5-6)."""
    return x_t + math.sqrt(sigma_hat**2 - sigma_t**2) * s_noise * noise


def churned(resolved: Any, step: Any, x: Any, draw: Any) -> tuple[float, Any, Any, float]:
    """(sigma_hat, x_hat, z, std of the noise added) of a step with churn; no noise drawn where gamma is 0."""
    gamma = churn_gamma(step.sigma_t, step.steps, resolved.s_churn, resolved.s_tmin, resolved.s_tmax)
    if gamma == 0.0:
        return step.sigma_t, x, None, 0.0
    sigma_hat = step.sigma_t * (gamma + 1.0)
    z = draw()
    return sigma_hat, churn(x, step.sigma_t, sigma_hat, resolved.s_noise, z), z, math.sqrt(sigma_hat**2 - step.sigma_t**2) * resolved.s_noise


def euler_step(x: Any, x0_pred: Any, sigma: float, sigma_next: float) -> Any:
    """x_{i+1} = x + (sigma_{i+1} - sigma) d,  d = (x - x0_pred) / sigma  (Karras et al. 2022, Alg. 2, lines 7-8)."""
    d = (x - x0_pred) / sigma
    return x + d * (sigma_next - sigma)


def churn_fields(resolved: Any, sigma_hat: float, x_hat: Any) -> dict[str, Any]:
    """What a step with churn records besides its noise: sigma_hat and x_hat, where the options turn churn on."""
    return {"sigma_hat": sigma_hat, "x_hat": x_hat} if resolved.s_churn > 0 else {}


# -- the equations every sigma-space sampler shares (tracer/equations/registry.py lists them) --------------------


def _hat(v: Any) -> str:
    return str(v.n("sigma_hat", v.n("sigma_t", r"\hat\sigma_i")))


def _next(v: Any) -> str:
    return str(v.n("sigma_next", r"\sigma_{i+1}"))


def values_euler(v: Any) -> str:
    nxt, hat = _next(v), _hat(v)
    return rf"x_{{i+1}} = \hat x_i + ({nxt} - {hat})\,\frac{{\hat x_i - \hat x_0}}{{{hat}}}"


def values_heun(v: Any) -> str:
    nxt, hat = _next(v), _hat(v)
    return (rf"x_{{i+1}} = \hat x_i + ({nxt} - {hat})\,\tfrac12\Big(\frac{{\hat x_i - \hat x_0}}{{{hat}}}"
            rf" + \frac{{x^{{\mathrm{{Euler}}}}_{{i+1}} - \hat x_0^{{(2)}}}}{{{nxt}}}\Big)")


def values_ancestral_sigmas(v: Any) -> str:
    up, down = v.n("sigma_up", r"\sigma_{\uparrow}"), v.n("sigma_down", r"\sigma_{\downarrow}")
    s, nxt = v.n("sigma_t", r"\sigma_i"), _next(v)
    return rf"\sigma_{{\uparrow}} = {up},\ \sigma_{{\downarrow}} = {down}\ (\sigma_i = {s},\ \sigma_{{i+1}} = {nxt})"


def values_ancestral(v: Any) -> str:
    s, down, noise = v.n("sigma_t", r"\sigma_i"), v.n("sigma_down", r"\sigma_{\downarrow}"), v.n("sigma", r"S\sigma_{\uparrow}")
    return rf"x_{{i+1}} = x_i + ({down} - {s})\,\frac{{x_i - \hat x_0}}{{{s}}} + {noise}\,z"


def values_dpmpp_h(v: Any) -> str:
    h, r = v.n("h", "h_i"), v.n("r", "r_i")
    return rf"h_i = {h},\ r_i = {r}"


def values_dpmpp(v: Any) -> str:
    s, nxt, r, h = v.get("sigma_t"), v.get("sigma_next"), v.get("r"), v.get("h")
    ratio = v.num(nxt / s) if s and nxt is not None else r"\frac{\sigma_{i+1}}{\sigma_i}"
    factor = v.num(-math.expm1(-h)) if h is not None else r"(1 - e^{-h_i})"
    if r:
        a, b = v.num(1 + 1 / (2 * r)), v.num(1 / (2 * r))
        combined = rf"\big({a}\,\hat x_0^{{(i)}} - {b}\,\hat x_0^{{(i-1)}}\big)"
    else:
        combined = r"\hat x_0^{(i)}"
    return rf"x_{{i+1}} = {ratio}\,x_i + {factor}\,{combined}"


def _v_denoised(v: Any) -> str:
    return rf"\hat x_0 = \hat x_i - {_hat(v)}\,\epsilon_\theta"


def _v_alpha_bar(v: Any) -> str:
    s2, a, b = v.n("sigma_t", r"\sigma_i^2", lambda s: s * s), v.n("alpha_bar_t", r"\bar\alpha_t"), v.n("alpha_bar_prev", r"\bar\alpha_{t_{prev}}")
    return rf"\bar\alpha_t = \frac{{1}}{{1 + {s2}}} = {a},\ \bar\alpha_{{t_{{\mathrm{{prev}}}}}} = {b}"


def _v_timestep(v: Any) -> str:
    t_model = v.n("t_model", r"t(\hat\sigma_i)")
    return rf"t(\hat\sigma_i) = {t_model},\quad t = {v.t()}"


def _v_churn(v: Any) -> str:
    std = v.n("sigma", r"S_{noise}\sqrt{\hat\sigma_i^2-\sigma_i^2}")
    return rf"\hat\sigma_i = {_hat(v)},\quad \hat x_i = x_i + {std}\,z"


def _sigma_space(*names: str) -> Any:
    def applies(facts: Any) -> bool:
        return bool(facts.kind == "sampling" and facts.space == "sigma" and facts.has(*names))

    return applies


def equations() -> tuple[Any, ...]:
    """The equations of every sigma-space trace: the noise level's alpha_bar and timestep, the denoiser, churn."""
    from tracer.equations import checks
    from tracer.equations.equation import Equation

    return (
        Equation(
            "sigma.alpha_bar", "alpha_bar of a noise level", f"{KARRAS}, Sec. 2 and Table 1 (VP: sigma^2 = (1 - alpha_bar) / alpha_bar)",
            r"\bar\alpha_t = \frac{1}{1 + \sigma_i^2},\quad \bar\alpha_{t_{\mathrm{prev}}} = \frac{1}{1 + \sigma_{i+1}^2}",
            "tracer.samplers.karras.alpha_bar_of_sigma", ("sigma_t", "sigma_next", "alpha_bar_t", "alpha_bar_prev"),
            precision="scalar", check=checks.sigma_alpha_bar, applies_to=_sigma_space("sigma_t", "sigma_next"), values=_v_alpha_bar,
        ),
        Equation(
            "sigma.timestep", "The network's timestep of a noise level",
            f"{KARRAS}, Sec. 2 (a discrete schedule's levels); k-diffusion DiscreteSchedule.sigma_to_t",
            r"t(\sigma) = s + \frac{\log\sigma - \log\sigma_s}{\log\sigma_{s+1} - \log\sigma_s},\quad \sigma_s \le \sigma \le \sigma_{s+1},"
            r"\ \sigma_s = \sqrt{(1-\bar\alpha_s)/\bar\alpha_s}",
            "tracer.samplers.karras.sigma_to_t", ("t_model", "sigma_t", "sigma_hat", "t", "t_prev"),
            precision="scalar", check=checks.sigma_timestep, applies_to=_sigma_space("t_model", "sigma_t", "sigma_next"), values=_v_timestep,
        ),
        Equation(
            "sigma.denoised", "The denoiser in sigma space", f"{KARRAS}, Table 1 (VP preconditioning) and Eq. 3",
            r"\hat x_0 = D(\hat x_i; \hat\sigma_i) = \hat x_i - \hat\sigma_i\,\epsilon_\theta\Big(\frac{\hat x_i}{\sqrt{1+\hat\sigma_i^2}},"
            r" t(\hat\sigma_i)\Big)",
            "tracer.samplers.karras.denoise", ("x_t", "x_hat", "eps", "x0_pred", "x_euler", "eps_2", "x0_pred_2"),
            check=checks.sigma_denoised, applies_to=_sigma_space("x_t", "eps", "x0_pred", "sigma_t"), values=_v_denoised,
        ),
        Equation(
            "sigma.churn", "Churn: noise added back before the step", f"{KARRAS}, Alg. 2, lines 4-6",
            r"\hat\sigma_i = \sigma_i(1 + \gamma_i),\ \gamma_i = \min\big(\tfrac{S_{\mathrm{churn}}}{N}, \sqrt2 - 1\big)"
            r"\ [S_{\mathrm{tmin}} \le \sigma_i \le S_{\mathrm{tmax}}],\quad"
            r"\hat x_i = x_i + \sqrt{\hat\sigma_i^2 - \sigma_i^2}\,S_{\mathrm{noise}}\,z",
            "tracer.samplers.karras.churn", ("x_t", "x_hat", "noise", "sigma_hat", "sigma"),
            check=checks.sigma_churn, applies_to=_sigma_space("x_t", "x_hat", "noise", "sigma_hat", "sigma_t"), values=_v_churn,
        ),
    )
