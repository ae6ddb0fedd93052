"""Independent float64 NumPy checks of the equations, over the tensors a trace recorded.

Each function recomputes one equation's right-hand side from the recorded inputs of a
step (or of a worked example of the loss) and compares it with the recorded left-hand
side; it never calls the torch implementation. It returns a ``Residual`` (max |lhs - rhs|
and the scale of the terms), or None where the equation does not apply or an input was
not recorded (a live trace's last row has no output yet).

Conventions (docs/equations.md): step i's output is x_prev[i] when recorded, else x_t of
step i + 1, or ``samples`` after the last step; the noise z is the step's recorded
``noise``; where clipping is on, x0_pred_raw is the unclipped prediction when recorded.

- schedule_alpha, schedule_alpha_bar: Ho et al. 2020, Sec. 2 (alpha_t = 1 - beta_t, alpha_bar_t = prod alpha_s)
- forward_closed_form: Ho et al. 2020, Eq. 4;  eps_loss: Eq. 14 (L_simple)
- x0_from_eps: Ho et al. 2020, Eq. 15 (Song et al. 2021, Eq. 12);  x0_clip: clipping to the data range
- guidance_combine: Ho and Salimans 2022, Eq. 6;  guidance_rescale: Lin et al. 2023, Sec. 3.4
- prediction_conversion: eps and x0 from an x0 or v output, Salimans and Ho 2022, App. D;  target_loss: Sec. 4
- zero_terminal_snr: Lin et al. 2023, Alg. 1
- ddpm_posterior_mean, ddpm_posterior_sigma, ddpm_step: Ho et al. 2020, Eq. 7 and Alg. 2
- ddim_sigma, ddim_step: Song et al. 2021, Eq. 16 and Eq. 12
- sigma space (x = x0 + sigma eps, Karras et al. 2022): sigma_alpha_bar, sigma_timestep (Table 1 and the schedule's
  log sigma interpolation), sigma_denoised (Table 1, VP preconditioning), sigma_churn (Alg. 2, lines 4-6),
  euler_step (Alg. 2, lines 7-8), heun_predictor and heun_step (Alg. 2, lines 7-11), ancestral_sigmas and
  ancestral_step (k-diffusion's get_ancestral_step), dpmpp_h and dpmpp_2m_step (Lu et al. 2022, Alg. 2)
"""

from __future__ import annotations

import math

import numpy as np

from tracer.equations.context import Residual, TraceView


def _sqrt(x: float) -> float:
    """sqrt of a quantity that is >= 0 in exact arithmetic (guards rounding just below 0)."""
    return math.sqrt(max(x, 0.0))


def _max(a: np.ndarray) -> float:
    return float(np.max(a)) if a.size else 0.0


def _where(lhs: np.ndarray, rhs: np.ndarray) -> tuple[float, str]:
    """max |lhs - rhs|, and where it is with both sides' values there (for people)."""
    diff = np.abs(lhs - rhs)
    if not diff.size:
        return 0.0, ""
    k = np.unravel_index(int(np.argmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape)
    where = ", ".join(map(str, k))
    return float(np.max(diff)), f"at [{where}]: lhs {float(lhs[k]):.7g}, rhs {float(rhs[k]):.7g}"


def _residual(lhs: np.ndarray, rhs: np.ndarray, *terms: np.ndarray) -> Residual:
    """max |lhs - rhs|, with scale max(|lhs| + sum |term|) over elements."""
    scale = np.abs(lhs)
    for term in terms:
        scale = scale + np.abs(term)
    value, detail = _where(lhs, rhs)
    return Residual(value, _max(scale), detail=detail)


def _scalar_residual(value: float, expected: float, name: str = "recorded") -> Residual:
    return Residual(abs(value - expected), max(abs(value), abs(expected)), detail=f"{name} {value:.9g}, equation {expected:.9g}")


def _step_indices(view: TraceView, i: int) -> list[int]:
    """The schedule indices a step (or a worked example) reads: t, and t_prev when it is not the clean end."""
    indices = [int(view.scalars["t"][i])]
    if "t_prev" in view.scalars and int(view.scalars["t_prev"][i]) >= 0:
        indices.append(int(view.scalars["t_prev"][i]))
    return indices


# -- the schedule: alpha_t = 1 - beta_t, alpha_bar_t = prod_{s <= t} alpha_s --------------------------


def schedule_alpha(view: TraceView, i: int) -> Residual | None:
    schedule = view.schedule
    if "alpha" not in schedule or "beta" not in schedule:
        return None
    return max(
        (_scalar_residual(float(schedule["alpha"][t]), 1.0 - float(schedule["beta"][t]), f"alpha[{t}]") for t in _step_indices(view, i)),
        key=lambda r: r.value,
    )


def schedule_alpha_bar(view: TraceView, i: int) -> Residual | None:
    schedule = view.schedule
    if "alpha" not in schedule or "alpha_bar" not in schedule:
        return None
    residuals = []
    for t in _step_indices(view, i):
        product = float(np.prod(schedule["alpha"][: t + 1]))  # the running product, recomputed
        residuals.append(_scalar_residual(float(schedule["alpha_bar"][t]), product, f"alpha_bar[{t}]"))
    return max(residuals, key=lambda r: r.value)


# -- training: the forward closed form and the epsilon loss, on the worked examples ----------------------


def forward_closed_form(view: TraceView, i: int) -> Residual | None:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps  (Eq. 4)."""
    if not view.has("x0", "eps", "x_t") or "alpha_bar" not in view.schedule:
        return None
    alpha_bar_t = view.alpha_bar_at(int(view.scalars["t"][i]))
    x0, eps, x_t = view.tensor("x0", i), view.tensor("eps", i), view.tensor("x_t", i)
    a, b = math.sqrt(alpha_bar_t) * x0, _sqrt(1.0 - alpha_bar_t) * eps
    return _residual(x_t, a + b, a, b)


def eps_loss(view: TraceView, i: int) -> Residual | None:
    """L = mean over elements of (eps - eps_theta(x_t, t))^2  (Eq. 14, L_simple, per example)."""
    if not view.has("eps", "eps_pred", "loss"):
        return None
    eps, eps_pred = view.tensor("eps", i), view.tensor("eps_pred", i)
    loss = float(view.scalars["loss"][i])
    expected = float(np.mean((eps_pred - eps) ** 2))
    scale = float(np.mean((np.abs(eps_pred) + np.abs(eps)) ** 2))
    return Residual(abs(loss - expected), max(scale, abs(loss)), detail=f"loss {loss:.9g}, equation {expected:.9g}")


# -- sampling -------------------------------------------------------------------------------------------


def _x0_from_eps(view: TraceView, i: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    alpha_bar_t = view.scalar("alpha_bar_t", i)
    x_t, eps = view.tensor("x_t", i), view.tensor("eps", i)
    root, root_1m = math.sqrt(alpha_bar_t), _sqrt(1.0 - alpha_bar_t)
    with np.errstate(divide="ignore", invalid="ignore"):  # alpha_bar_t = 0: x0 is undefined, the residual inf fails
        x0 = (x_t - root_1m * eps) / root
        scale = _max((np.abs(x_t) + root_1m * np.abs(eps)) / root)
    return x0, x_t, scale, alpha_bar_t


def x0_from_eps(view: TraceView, i: int) -> Residual | None:
    """x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)  (Eq. 15); clipped when the trace clips
    and did not record x0_pred_raw."""
    if not view.has("x_t", "eps", "x0_pred"):
        return None
    facts = view.facts
    x0, _, scale, _ = _x0_from_eps(view, i)
    if view.has("x0_pred_raw"):
        lhs = view.tensor("x0_pred_raw", i)
    elif facts.thresholding:
        return None  # dynamic thresholding is another library's transform: not an equation registered here
    else:
        lhs = view.tensor("x0_pred", i)
        if facts.clip:
            x0 = np.clip(x0, -facts.clip_range, facts.clip_range)
    value, detail = _where(lhs, x0)
    return Residual(value, max(scale, _max(np.abs(lhs))), detail=detail)


def x0_clip(view: TraceView, i: int) -> Residual | None:
    """x0_pred = clip(x0_pred_raw, -1, 1)."""
    if not view.has("x0_pred", "x0_pred_raw"):
        return None
    r = view.facts.clip_range
    x0_pred = view.tensor("x0_pred", i)
    clipped = np.clip(view.tensor("x0_pred_raw", i), -r, r)
    return _residual(x0_pred, clipped, clipped)


def _posterior(view: TraceView, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(output, mu term of x0_pred, mu term of x_t, sigma z) of a DDPM step, or None when not recorded."""
    if not view.has("x_t", "x0_pred", "noise", "sigma"):
        return None
    out = view.output(i)
    if out is None:
        return None
    alpha_bar_t, alpha_bar_prev = view.scalar("alpha_bar_t", i), view.scalar("alpha_bar_prev", i)
    alpha_t = alpha_bar_t / alpha_bar_prev  # the step's alpha (Sec. 2 with the step's alpha_bars)
    beta_t = 1.0 - alpha_t
    coef_x0 = math.sqrt(alpha_bar_prev) * beta_t / (1.0 - alpha_bar_t)  # Eq. 7
    coef_xt = _sqrt(alpha_t) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)
    noise_term = view.scalar("sigma", i) * view.tensor("noise", i)
    return out, coef_x0 * view.tensor("x0_pred", i), coef_xt * view.tensor("x_t", i), noise_term


def ddpm_posterior_mean(view: TraceView, i: int) -> Residual | None:
    """mu = sqrt(alpha_bar_prev) beta_t / (1 - alpha_bar_t) x0 + sqrt(alpha_t) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t
    (Eq. 7). mu is not recorded: it is the step's output minus sigma z."""
    parts = _posterior(view, i)
    if parts is None:
        return None
    out, a, b, noise_term = parts
    return _residual(out - noise_term, a + b, noise_term, a, b)


def ddpm_step(view: TraceView, i: int) -> Residual | None:
    """x_{t-1} = mu + sigma z  (Alg. 2, line 4)."""
    parts = _posterior(view, i)
    if parts is None:
        return None
    out, a, b, noise_term = parts
    return _residual(out, a + b + noise_term, a, b, noise_term)


def ddpm_posterior_sigma(view: TraceView, i: int) -> Residual | None:
    """sigma_t = sqrt(beta_tilde_t) = sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t) beta_t), or sqrt(beta_t);
    0 at t = 0, where Alg. 2 adds no noise."""
    variance = view.facts.variance
    if variance not in ("beta_tilde", "beta"):
        return None
    alpha_bar_t, alpha_bar_prev = view.scalar("alpha_bar_t", i), view.scalar("alpha_bar_prev", i)
    beta_t = 1.0 - alpha_bar_t / alpha_bar_prev
    if int(view.scalars["t"][i]) == 0:
        expected = 0.0
    elif variance == "beta":
        expected = _sqrt(beta_t)
    else:
        expected = _sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t) * beta_t)
    return _scalar_residual(view.scalar("sigma", i), expected, "sigma")


def ddim_sigma(view: TraceView, i: int) -> Residual | None:
    """sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)  (Eq. 16)."""
    eta = view.scalar("eta", i) if "eta" in view.scalars else view.facts.eta
    if eta is None:
        return None
    alpha_bar_t, alpha_bar_prev = view.scalar("alpha_bar_t", i), view.scalar("alpha_bar_prev", i)
    expected = eta * _sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)) * _sqrt(1.0 - alpha_bar_t / alpha_bar_prev)
    return _scalar_residual(view.scalar("sigma", i), expected, "sigma")


def ddim_step(view: TraceView, i: int) -> Residual | None:
    """x_prev = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z  (Eq. 12)."""
    if not view.has("x0_pred", "eps", "noise", "sigma"):
        return None
    out = view.output(i)
    if out is None:
        return None
    alpha_bar_prev, sigma = view.scalar("alpha_bar_prev", i), view.scalar("sigma", i)
    a = math.sqrt(alpha_bar_prev) * view.tensor("x0_pred", i)
    b = _sqrt(1.0 - alpha_bar_prev - sigma**2) * view.tensor("eps", i)
    c = sigma * view.tensor("noise", i)
    return _residual(out, a + b + c, a, b, c)


# -- what the network predicts: eps, x0 or v (Salimans and Ho 2022, App. D) -----------------------------


def _output_pairs(view: TraceView, i: int) -> list[tuple[str, str]]:
    """(output name, eps name) pairs a step records: the output the update used, and with guidance the two branches."""
    pairs = [("model_output", "eps")]
    if view.has("model_output_cond", "eps_cond"):
        pairs.append(("model_output_cond", "eps_cond"))
    if view.has("model_output_uncond", "eps_uncond"):
        pairs.append(("model_output_uncond", "eps_uncond"))
    return pairs


def _x0_raw(view: TraceView, i: int) -> np.ndarray | None:
    """The unclipped x0 prediction: x0_pred_raw when recorded, else x0_pred where no clipping happened (None otherwise)."""
    if view.has("x0_pred_raw"):
        return view.tensor("x0_pred_raw", i)
    if view.facts.clip or view.facts.thresholding:
        return None
    return view.tensor("x0_pred", i)


def _worst(residuals: list[Residual]) -> Residual:
    """The residual furthest from passing: the largest relative to its scale (a non-finite one first)."""
    return max(residuals, key=lambda r: r.value / max(r.floor, r.scale, 1e-300) if math.isfinite(r.value) else math.inf)


def _network_input(view: TraceView, i: int) -> tuple[float, np.ndarray]:
    """(alpha_bar, x_t) of the network's first call at step i: the recorded ones in VP; in sigma space
    alpha_bar = 1 / (1 + sigma^2) and x_t = x / sqrt(1 + sigma^2) at the point it was evaluated (x_hat, sigma_hat with churn)."""
    if view.facts.space != "sigma":
        return view.scalar("alpha_bar_t", i), view.tensor("x_t", i)
    x, sigma = _evaluated_at(view, i)
    a = 1.0 / (1.0 + sigma * sigma)
    return a, x * math.sqrt(a)


def prediction_conversion(view: TraceView, i: int) -> Residual | None:
    """eps and x0 from the network's output: for v, x0 = sqrt(a) x_t - sqrt(1 - a) v and eps = sqrt(1 - a) x_t + sqrt(a) v;
    for x0, eps = (x_t - sqrt(a) x0) / sqrt(1 - a)  (Salimans and Ho 2022, App. D; a = alpha_bar_t)."""
    prediction = view.facts.prediction
    if prediction not in ("x0", "v") or not view.has("model_output", "x_t", "eps", "x0_pred"):
        return None
    a, x_t = _network_input(view, i)
    root, root_1m = math.sqrt(a), _sqrt(1.0 - a)
    residuals = []
    for output_name, eps_name in _output_pairs(view, i):
        out, eps = view.tensor(output_name, i), view.tensor(eps_name, i)
        if prediction == "v":
            eps_expected = root_1m * x_t + root * out
            residuals.append(_residual(eps, eps_expected, root_1m * x_t, root * out))
        else:
            with np.errstate(divide="ignore", invalid="ignore"):  # alpha_bar_t = 1: undefined, the residual fails
                a_term, b_term = x_t / root_1m, root * out / root_1m
            residuals.append(_residual(eps, a_term - b_term, a_term, b_term))
    x0 = _x0_raw(view, i)
    if x0 is not None:
        out = view.tensor("model_output", i)
        if prediction == "v":
            a_term, b_term = root * x_t, root_1m * out
            residuals.append(_residual(x0, a_term - b_term, a_term, b_term))
        else:
            residuals.append(_residual(x0, out, out))
    return _worst(residuals)


# -- guidance in the network's output space, and its rescale (Lin et al. 2023, Sec. 3.4) -----------------------


def guidance_names(prediction: str, rescaled: bool) -> tuple[str, str, str]:
    """(conditional, unconditional, guided before any rescale) as a trace records them for this prediction type."""
    if prediction == "eps":
        return "eps_cond", "eps_uncond", "model_output_cfg" if rescaled else "eps"
    return "model_output_cond", "model_output_uncond", "model_output_cfg" if rescaled else "model_output"


def guidance_combine(view: TraceView, i: int) -> Residual | None:
    """out = out_uncond + s (out_cond - out_uncond)  (Ho and Salimans 2022, Eq. 6), in the network's output space
    (eps for an eps network), before any rescale."""
    s = view.facts.guidance
    cond_name, uncond_name, guided_name = guidance_names(view.facts.prediction, view.facts.guidance_rescale > 0)
    if s is None or not view.has(cond_name, uncond_name, guided_name):
        return None
    guided, cond, uncond = view.tensor(guided_name, i), view.tensor(cond_name, i), view.tensor(uncond_name, i)
    return _residual(guided, uncond + s * (cond - uncond), uncond, s * cond, s * uncond)


def guidance_rescale(view: TraceView, i: int) -> Residual | None:
    """out = phi cfg std(cond) / std(cfg) + (1 - phi) cfg, std over each sample  (Lin et al. 2023, Sec. 3.4)."""
    phi = view.facts.guidance_rescale
    cond_name, _, cfg_name = guidance_names(view.facts.prediction, True)
    out_name = "eps" if view.facts.prediction == "eps" else "model_output"
    if not phi or not view.has(cond_name, cfg_name, out_name):
        return None
    cond, cfg, out = view.tensor(cond_name, i), view.tensor(cfg_name, i), view.tensor(out_name, i)
    axes = tuple(range(1, cfg.ndim))
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant guided sample: std 0, undefined, fails
        factor = np.std(cond, axis=axes, ddof=1, keepdims=True) / np.std(cfg, axis=axes, ddof=1, keepdims=True)
    rescaled = phi * cfg * factor
    kept = (1.0 - phi) * cfg
    return _residual(out, rescaled + kept, rescaled, kept)


# -- zero terminal SNR (Lin et al. 2023, Alg. 1) -------------------------------------------------------------


def zero_terminal_snr(view: TraceView, i: int) -> Residual | None:
    """sqrt(alpha_bar'_t) = (sqrt(alpha_bar_t) - sqrt(alpha_bar_{T-1})) sqrt(alpha_bar_0) / (sqrt(alpha_bar_0) - sqrt(alpha_bar_{T-1}))
    against the schedule the config names, recomputed; and alpha_bar'_{T-1} = 0 exactly."""
    from tracer.schedules import SCHEDULE_NAMES, make_schedule

    stored = view.schedule.get("alpha_bar")
    name = view.facts.schedule_name
    if stored is None or name not in SCHEDULE_NAMES:
        return None
    try:
        original = np.sqrt(make_schedule(str(name), len(stored)).alpha_bar)
    except ValueError:
        return None
    first, last = original[0], original[-1]
    residuals = [_scalar_residual(float(stored[-1]), 0.0, f"alpha_bar[{len(stored) - 1}]")]
    for t in _step_indices(view, i):
        expected = ((original[t] - last) * first / (first - last)) ** 2
        residuals.append(_scalar_residual(float(stored[t]), float(expected), f"alpha_bar[{t}]"))
    return _worst(residuals)


# -- training an x0 or v network: the loss to its own target -----------------------------------------------


def target_loss(view: TraceView, i: int) -> Residual | None:
    """L = mean (f_theta - y)^2 with y = x0, or y = v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0 (Salimans and Ho 2022,
    Sec. 4); the recorded target is compared with y too."""
    prediction = view.facts.prediction
    if not view.has("model_output", "target", "x0", "eps", "loss"):
        return None
    x0, eps = view.tensor("x0", i), view.tensor("eps", i)
    if prediction == "x0":
        y = x0
    else:
        a = view.alpha_bar_at(int(view.scalars["t"][i]))
        y = math.sqrt(a) * eps - _sqrt(1.0 - a) * x0
    out, target = view.tensor("model_output", i), view.tensor("target", i)
    loss = float(view.scalars["loss"][i])
    expected = float(np.mean((out - y) ** 2))
    scale = float(np.mean((np.abs(out) + np.abs(y)) ** 2))
    return _worst([_residual(target, y, np.abs(x0) + np.abs(eps)),
                   Residual(abs(loss - expected), max(scale, abs(loss)), detail=f"loss {loss:.9g}, equation {expected:.9g}")])


# -- sigma space (Karras et al. 2022; tracer/samplers/karras.py): x = x0 + sigma eps ----------------------------


def _evaluated_at(view: TraceView, i: int) -> tuple[np.ndarray, float]:
    """(x, sigma) where a sigma-space step's first evaluation ran: x_hat and sigma_hat with churn, else x_t and sigma_t."""
    if view.has("x_hat", "sigma_hat"):
        return view.tensor("x_hat", i), view.scalar("sigma_hat", i)
    return view.tensor("x_t", i), view.scalar("sigma_t", i)


def _log_sigmas(view: TraceView) -> np.ndarray:
    alpha_bar = np.asarray(view.schedule["alpha_bar"], dtype=np.float64)
    return 0.5 * (np.log1p(-alpha_bar) - np.log(alpha_bar))  # log sqrt((1 - alpha_bar) / alpha_bar)


def schedule_timestep(view: TraceView, sigma: float) -> float:
    """t(sigma): where log sigma falls on the schedule's log sigmas, linearly interpolated (np.interp; clamped at the ends);
    where the config says ``sigma_interpolation = "linear"`` (diffusers' schedulers place a fractional timestep's sigma
    linearly between the schedule's levels), where sigma itself falls between the levels."""
    log_sigmas = _log_sigmas(view)
    steps = np.arange(len(log_sigmas), dtype=np.float64)
    if view.facts.option("sigma_interpolation") == "linear":
        return float(np.interp(sigma, np.exp(log_sigmas), steps))
    return float(np.interp(math.log(sigma), log_sigmas, steps))


def sigma_alpha_bar(view: TraceView, i: int) -> Residual | None:
    """alpha_bar_t = 1 / (1 + sigma_t^2), alpha_bar_prev = 1 / (1 + sigma_next^2)  (Karras et al. 2022, Table 1, VP)."""
    if "alpha_bar_t" not in view.scalars or "alpha_bar_prev" not in view.scalars:
        return None
    residuals = []
    for name, level in (("alpha_bar_t", "sigma_t"), ("alpha_bar_prev", "sigma_next")):
        sigma = view.scalar(level, i)
        residuals.append(_scalar_residual(view.scalar(name, i), 1.0 / (1.0 + sigma * sigma), name))
    return max(residuals, key=lambda r: r.value)


def sigma_timestep(view: TraceView, i: int) -> Residual | None:
    """t_model = t(sigma_hat) (log sigma interpolated over the schedule); t and t_prev its nearest indices (-1 at sigma 0)."""
    if "alpha_bar" not in view.schedule:
        return None
    sigma_eval = view.scalar("sigma_hat", i) if "sigma_hat" in view.scalars else view.scalar("sigma_t", i)
    expected = schedule_timestep(view, sigma_eval)
    t_model = view.scalar("t_model", i)
    residual = Residual(abs(t_model - expected), max(abs(expected), 1.0), 1.0, f"t_model {t_model:.9g}, t(sigma) {expected:.9g}")
    nearest = round(schedule_timestep(view, view.scalar("sigma_t", i)))
    sigma_next = view.scalar("sigma_next", i)
    nearest_next = -1 if sigma_next == 0 else round(schedule_timestep(view, sigma_next))
    t, t_prev = int(view.scalars["t"][i]), int(view.scalars["t_prev"][i])
    if (t, t_prev) != (nearest, nearest_next):
        return Residual(math.inf, 0.0, 1.0, f"t {t}, t_prev {t_prev}; the nearest indices of t(sigma_t), t(sigma_next) are "
                        f"{nearest}, {nearest_next}")
    return residual


def _denoised(x: np.ndarray, sigma: float, eps: np.ndarray, x0: np.ndarray) -> Residual:
    term = sigma * eps
    return _residual(x0, x - term, x, term)


def sigma_denoised(view: TraceView, i: int) -> Residual | None:
    """x0_pred = x_hat - sigma_hat eps at the step's evaluation, and x0_pred_2 = x_euler - sigma_next eps_2 at Heun's
    corrector (where it ran: sigma_next > 0)."""
    x, sigma = _evaluated_at(view, i)
    residuals = [_denoised(x, sigma, view.tensor("eps", i), view.tensor("x0_pred", i))]
    if view.has("x_euler", "eps_2", "x0_pred_2") and view.scalar("sigma_next", i) > 0:
        residuals.append(_denoised(view.tensor("x_euler", i), view.scalar("sigma_next", i), view.tensor("eps_2", i),
                                   view.tensor("x0_pred_2", i)))
    return _worst(residuals)


def sigma_churn(view: TraceView, i: int) -> Residual | None:
    """sigma_hat = sigma_t (1 + gamma), gamma = min(S_churn / N, sqrt 2 - 1) where S_tmin <= sigma_t <= S_tmax, else 0;
    x_hat = x_t + sqrt(sigma_hat^2 - sigma_t^2) S_noise z, and the step's noise std sigma = sqrt(sigma_hat^2 - sigma_t^2) S_noise
    (Karras et al. 2022, Alg. 2, lines 4-6)."""
    facts = view.facts
    s_churn, s_noise = facts.option("s_churn"), facts.option("s_noise", 1.0)
    s_tmin, s_tmax = facts.option("s_tmin", 0.0), facts.option("s_tmax")
    s_tmax = math.inf if s_tmax is None else s_tmax
    sigmas = facts.option("sigmas")
    if not all(isinstance(v, (int, float)) for v in (s_churn, s_noise, s_tmin, s_tmax)) or not sigmas:
        return None
    sigma_t, sigma_hat = view.scalar("sigma_t", i), view.scalar("sigma_hat", i)
    gamma = min(s_churn / (len(sigmas) - 1), math.sqrt(2.0) - 1.0) if s_tmin <= sigma_t <= s_tmax else 0.0
    std = math.sqrt(max(sigma_hat**2 - sigma_t**2, 0.0)) * s_noise
    x_t, x_hat, z = view.tensor("x_t", i), view.tensor("x_hat", i), view.tensor("noise", i)
    term = std * z
    return _worst([
        _scalar_residual(sigma_hat, sigma_t * (1.0 + gamma), "sigma_hat"),
        _scalar_residual(view.scalar("sigma", i), std, "sigma"),
        _residual(x_hat, x_t + term, x_t, term),
    ])


def _euler(x: np.ndarray, x0: np.ndarray, sigma: float, sigma_next: float) -> tuple[np.ndarray, np.ndarray]:
    """(x + (sigma_next - sigma) d, the step term) with d = (x - x0) / sigma."""
    term = (sigma_next - sigma) / sigma * (x - x0)
    return x + term, term


def euler_step(view: TraceView, i: int) -> Residual | None:
    """x_{i+1} = x_hat + (sigma_next - sigma_hat) (x_hat - x0_pred) / sigma_hat  (Karras et al. 2022, Alg. 2, lines 7-8)."""
    out = view.output(i)
    if out is None:
        return None
    x, sigma = _evaluated_at(view, i)
    rhs, term = _euler(x, view.tensor("x0_pred", i), sigma, view.scalar("sigma_next", i))
    return _residual(out, rhs, x, term)


def heun_predictor(view: TraceView, i: int) -> Residual | None:
    """x_euler = x_hat + (sigma_next - sigma_hat) (x_hat - x0_pred) / sigma_hat  (Alg. 2, lines 7-8)."""
    x, sigma = _evaluated_at(view, i)
    rhs, term = _euler(x, view.tensor("x0_pred", i), sigma, view.scalar("sigma_next", i))
    return _residual(view.tensor("x_euler", i), rhs, x, term)


def heun_step(view: TraceView, i: int) -> Residual | None:
    """x_{i+1} = x_hat + (sigma_next - sigma_hat) (d + d') / 2, d' = (x_euler - x0_pred_2) / sigma_next; the Euler step
    where sigma_next = 0  (Karras et al. 2022, Alg. 2, lines 9-11)."""
    out = view.output(i)
    if out is None:
        return None
    x, sigma = _evaluated_at(view, i)
    sigma_next = view.scalar("sigma_next", i)
    if sigma_next == 0:
        rhs, term = _euler(x, view.tensor("x0_pred", i), sigma, sigma_next)
        return _residual(out, rhs, x, term)
    dt = sigma_next - sigma
    a = 0.5 * dt / sigma * (x - view.tensor("x0_pred", i))
    b = 0.5 * dt / sigma_next * (view.tensor("x_euler", i) - view.tensor("x0_pred_2", i))
    return _residual(out, x + a + b, x, a, b)


def ancestral_sigmas(view: TraceView, i: int) -> Residual | None:
    """sigma_up = min(sigma', eta sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2)), sigma_down = sqrt(sigma'^2 - sigma_up^2), and the
    noise std sigma = S_noise sigma_up where sigma' > 0 (k-diffusion get_ancestral_step)."""
    eta, s_noise = view.facts.eta, view.facts.option("s_noise", 1.0)
    if eta is None or not isinstance(s_noise, (int, float)):
        return None
    s, s_next = view.scalar("sigma_t", i), view.scalar("sigma_next", i)
    up = min(s_next, eta * _sqrt(s_next**2 * (s**2 - s_next**2) / s**2))
    down = _sqrt(s_next**2 - up**2)
    std = s_noise * up if s_next > 0 else 0.0
    return _worst([_scalar_residual(view.scalar("sigma_up", i), up, "sigma_up"),
                   _scalar_residual(view.scalar("sigma_down", i), down, "sigma_down"),
                   _scalar_residual(view.scalar("sigma", i), std, "sigma")])


def ancestral_step(view: TraceView, i: int) -> Residual | None:
    """x_{i+1} = x_t + (sigma_down - sigma_t) (x_t - x0_pred) / sigma_t + sigma z, sigma = S_noise sigma_up."""
    out = view.output(i)
    if out is None:
        return None
    x = view.tensor("x_t", i)
    _, term = _euler(x, view.tensor("x0_pred", i), view.scalar("sigma_t", i), view.scalar("sigma_down", i))
    noise_term = view.scalar("sigma", i) * view.tensor("noise", i)
    return _residual(out, x + term + noise_term, x, term, noise_term)


def _first_order(view: TraceView, i: int) -> bool:
    """A DPM-Solver++(2M) step is first order at the first step, where sigma_next = 0, and at the planned last step where the
    config says ``first_order_final`` (diffusers' lower_order_final and euler_at_final, also when it ends at sigma_min)."""
    k = view.step_index(i)  # the run's step (row i where every step is recorded)
    if k == 0 or view.scalar("sigma_next", i) == 0:
        return True
    planned = view.facts.option("sigmas")
    return view.facts.option("first_order_final") is True and isinstance(planned, tuple) and k == len(planned) - 2


def _sigma_before(view: TraceView, i: int) -> float | None:
    """sigma_t of the step before row i's: the previous row's, or where that step was not recorded (--every K) the
    level the config plans for it (``sampler.sigmas``); None where neither is known."""
    if view.after_previous(i):
        return view.scalar("sigma_t", i - 1)
    planned, k = view.facts.option("sigmas"), view.step_index(i)
    if isinstance(planned, tuple) and 1 <= k <= len(planned) and isinstance(planned[k - 1], (int, float)):
        return float(planned[k - 1])
    return None


def dpmpp_h(view: TraceView, i: int) -> Residual | None:
    """h = log(sigma_t / sigma_next) (inf at sigma_next = 0), r = h_{i-1} / h with h_{i-1} = log(sigma_{i-1} / sigma_t), 0 at a
    first-order step (``_first_order``)  (Lu et al. 2022, Alg. 2)."""
    s, s_next = view.scalar("sigma_t", i), view.scalar("sigma_next", i)
    h, r = view.scalar("h", i), view.scalar("r", i)
    if s_next == 0:
        h_ok = Residual(0.0 if h == math.inf else math.inf, 0.0, 1.0, f"h {h:.9g}, equation inf (sigma_next = 0)")
        return _worst([h_ok, _scalar_residual(r, 0.0, "r")])
    expected_h = math.log(s / s_next)
    residuals = [_scalar_residual(h, expected_h, "h")]
    if _first_order(view, i):
        residuals.append(_scalar_residual(r, 0.0, "r"))
    else:
        s_prev = _sigma_before(view, i)
        if s_prev is None:
            return None
        residuals.append(_scalar_residual(r, math.log(s_prev / s) / expected_h, "r"))
    return _worst(residuals)


def dpmpp_2m_step(view: TraceView, i: int) -> Residual | None:
    """x_{i+1} = (sigma_next / sigma_t) x_t - (e^{-h} - 1) D, D = (1 + 1/(2r)) x0_pred - 1/(2r) x0_pred_prev (x0_pred where first
    order), with x0_pred_prev the previous step's x0_pred (zeros at the first)  (Lu et al. 2022, Alg. 2, lines 5-6)."""
    out = view.output(i)
    if out is None:
        return None
    s, s_next = view.scalar("sigma_t", i), view.scalar("sigma_next", i)
    x, x0, x0_prev = view.tensor("x_t", i), view.tensor("x0_pred", i), view.tensor("x0_pred_prev", i)
    residuals = []
    if view.step_index(i) == 0 or view.after_previous(i):  # where the step before was recorded (not under --every K)
        residuals.append(_residual(x0_prev, view.tensor("x0_pred", i - 1) if i > 0 else np.zeros_like(x0_prev), x0_prev))
    first_order = _first_order(view, i)
    factor = 1.0 if s_next == 0 else -math.expm1(-math.log(s / s_next))  # 1 - e^{-h}, recomputed from the noise levels
    a = (s_next / s) * x
    if first_order:
        b = factor * x0
        residuals.append(_residual(out, a + b, a, b))
    else:
        s_prev = _sigma_before(view, i)
        if s_prev is None:
            return None
        r = math.log(s_prev / s) / math.log(s / s_next)
        b = factor * (1.0 + 1.0 / (2.0 * r)) * x0
        c = factor * (1.0 / (2.0 * r)) * x0_prev
        residuals.append(_residual(out, a + b - c, a, b, c))
    return _worst(residuals)


# -- the flow path (tracer/samplers/flow.py): x_t = (1 - t) x0 + t eps, v = eps - x0 --------------------------------


def _flow_alpha_bar(t: float) -> float:
    return (1.0 - t) ** 2 / ((1.0 - t) ** 2 + t * t)


def flow_time(view: TraceView, i: int) -> Residual | None:
    """alpha_bar_t = (1 - t)^2 / ((1 - t)^2 + t^2) at t_flow and alpha_bar_prev at t_flow_next; t_model = t_flow T (T the
    stored schedule's length); t and t_prev the schedule's nearest indices round(t T) - 1 (-1 at t = 0)."""
    t_flow, t_next = view.scalar("t_flow", i), view.scalar("t_flow_next", i)
    residuals = []
    for name, time in (("alpha_bar_t", t_flow), ("alpha_bar_prev", t_next)):
        if name in view.scalars:
            residuals.append(_scalar_residual(view.scalar(name, i), _flow_alpha_bar(time), name))
    if "alpha_bar" in view.schedule:
        T = len(view.schedule["alpha_bar"])  # noqa: N806
        if "t_model" in view.scalars:
            residuals.append(_scalar_residual(view.scalar("t_model", i), t_flow * T, "t_model"))
        expected = [-1 if time == 0 else max(round(time * T) - 1, 0) for time in (t_flow, t_next)]
        recorded = [int(view.scalars["t"][i]), int(view.scalars["t_prev"][i])]
        if recorded != expected:
            residuals.append(Residual(math.inf, 0.0, 1.0, f"t {recorded[0]}, t_prev {recorded[1]}; the nearest indices of t_flow, "
                                      f"t_flow_next are {expected[0]}, {expected[1]}"))
    return _worst(residuals) if residuals else None


def _from_velocity(x: np.ndarray, t: float, v: np.ndarray, eps: np.ndarray, x0: np.ndarray) -> list[Residual]:
    """x0 = x - t v and eps = x + (1 - t) v."""
    a, b = t * v, (1.0 - t) * v
    return [_residual(x0, x - a, x, a), _residual(eps, x + b, x, b)]


def flow_x0(view: TraceView, i: int) -> Residual | None:
    """x0_pred = x_t - t v and eps = x_t + (1 - t) v with v the recorded velocity (model_output), the guided branches' eps
    likewise; at a Heun corrector, x_euler = (1 - t_next) x0_pred_2 + t_next eps_2 (both from one velocity)."""
    x, t = view.tensor("x_t", i), view.scalar("t_flow", i)
    residuals = _from_velocity(x, t, view.tensor("model_output", i), view.tensor("eps", i), view.tensor("x0_pred", i))
    if view.has("model_output_cond", "model_output_uncond", "eps_cond", "eps_uncond"):
        for output_name, eps_name in (("model_output_cond", "eps_cond"), ("model_output_uncond", "eps_uncond")):
            b = (1.0 - t) * view.tensor(output_name, i)
            residuals.append(_residual(view.tensor(eps_name, i), x + b, x, b))
    if view.has("x_euler", "eps_2", "x0_pred_2"):
        t_next = view.scalar("t_flow_next", i)
        a, b = (1.0 - t_next) * view.tensor("x0_pred_2", i), t_next * view.tensor("eps_2", i)
        residuals.append(_residual(view.tensor("x_euler", i), a + b, a, b))
    return _worst(residuals)


def flow_euler_step(view: TraceView, i: int) -> Residual | None:
    """x_{i+1} = x_i + (t_{i+1} - t_i) v  (Liu et al. 2023, Eq. 1)."""
    out = view.output(i)
    if out is None:
        return None
    x = view.tensor("x_t", i)
    term = (view.scalar("t_flow_next", i) - view.scalar("t_flow", i)) * view.tensor("model_output", i)
    return _residual(out, x + term, x, term)


def flow_heun_predictor(view: TraceView, i: int) -> Residual | None:
    """x_euler = x_i + (t_{i+1} - t_i) v  (Karras et al. 2022, Alg. 1, lines 4-5, on the flow ODE)."""
    x = view.tensor("x_t", i)
    term = (view.scalar("t_flow_next", i) - view.scalar("t_flow", i)) * view.tensor("model_output", i)
    return _residual(view.tensor("x_euler", i), x + term, x, term)


def flow_heun_step(view: TraceView, i: int) -> Residual | None:
    """x_{i+1} = x_i + (t_{i+1} - t_i) (v + v') / 2 with v' = eps_2 - x0_pred_2, the corrector's velocity (Alg. 1, lines 6-8)."""
    out = view.output(i)
    if out is None:
        return None
    x = view.tensor("x_t", i)
    half = 0.5 * (view.scalar("t_flow_next", i) - view.scalar("t_flow", i))
    a = half * view.tensor("model_output", i)
    b = half * (view.tensor("eps_2", i) - view.tensor("x0_pred_2", i))
    return _residual(out, x + a + b, x, a, b)


def flow_forward(view: TraceView, i: int) -> Residual | None:
    """x_t = (1 - t) x0 + t eps with t = (k + 1) / T at the example's schedule index k (the flow schedule's times)."""
    if not view.has("x0", "eps", "x_t") or "alpha_bar" not in view.schedule:
        return None
    t = (int(view.scalars["t"][i]) + 1) / len(view.schedule["alpha_bar"])
    a, b = (1.0 - t) * view.tensor("x0", i), t * view.tensor("eps", i)
    return _residual(view.tensor("x_t", i), a + b, a, b)


def flow_loss(view: TraceView, i: int) -> Residual | None:
    """L = mean (v_theta - (eps - x0))^2, and the recorded target is eps - x0  (Lipman et al. 2023, Eq. 23)."""
    if not view.has("model_output", "target", "x0", "eps", "loss"):
        return None
    x0, eps = view.tensor("x0", i), view.tensor("eps", i)
    y = eps - x0
    out, target = view.tensor("model_output", i), view.tensor("target", i)
    loss = float(view.scalars["loss"][i])
    expected = float(np.mean((out - y) ** 2))
    scale = float(np.mean((np.abs(out) + np.abs(y)) ** 2))
    return _worst([_residual(target, y, np.abs(x0) + np.abs(eps)),
                   Residual(abs(loss - expected), max(scale, abs(loss)), detail=f"loss {loss:.9g}, equation {expected:.9g}")])
