"""What a network predicts, and the conversions between eps, x0 and v at one noise level.

A network is trained to predict the noise eps (Ho et al. 2020), the clean sample x0, or the
velocity v (Salimans and Ho 2022, Sec. 4 and App. D); with x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps:

    v       = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0                  (the v target)
    x0      = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)            (Ho et al. 2020, Eq. 15)
    eps     = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar)
    x0      = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v                   (Salimans and Ho 2022, App. D)
    eps     = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v

Only v is defined at both ends (alpha_bar = 0, where x0 from eps divides by zero, and
alpha_bar = 1): the reason zero terminal SNR needs v-prediction (Lin et al. 2023, Sec. 3.2).
Every function works on torch tensors and NumPy arrays alike (this module imports neither).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from tracer.config import ConfigError

PredictionType = Literal["eps", "x0", "v"]
PREDICTION_TYPES: tuple[str, ...] = ("eps", "x0", "v")


def check_prediction(prediction: object) -> str:
    if prediction not in PREDICTION_TYPES:
        raise ConfigError(f"unknown prediction type {prediction!r}; choose one of {', '.join(PREDICTION_TYPES)}")
    return str(prediction)


def predict_x0(x_t: Any, eps: Any, alpha_bar_t: float) -> Any:
    """x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)  (Ho et al. 2020, Eq. 15)."""
    return (x_t - math.sqrt(1.0 - alpha_bar_t) * eps) / math.sqrt(alpha_bar_t)


def eps_from_x0(x_t: Any, x0: Any, alpha_bar_t: float) -> Any:
    """eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t)  (Eq. 4 solved for eps)."""
    return (x_t - math.sqrt(alpha_bar_t) * x0) / math.sqrt(1.0 - alpha_bar_t)


def x0_from_v(x_t: Any, v: Any, alpha_bar_t: float) -> Any:
    """x0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v  (Salimans and Ho 2022, App. D)."""
    return math.sqrt(alpha_bar_t) * x_t - math.sqrt(1.0 - alpha_bar_t) * v


def eps_from_v(x_t: Any, v: Any, alpha_bar_t: float) -> Any:
    """eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v  (Salimans and Ho 2022, App. D)."""
    return math.sqrt(1.0 - alpha_bar_t) * x_t + math.sqrt(alpha_bar_t) * v


def v_target(x0: Any, eps: Any, alpha_bar_t: Any) -> Any:
    """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0  (Salimans and Ho 2022, Sec. 4); alpha_bar_t may be per sample."""
    return alpha_bar_t**0.5 * eps - (1.0 - alpha_bar_t) ** 0.5 * x0


def clip_x0(x0_pred_raw: Any) -> Any:
    """x0_pred = clip(x0_pred_raw, -1, 1): the data range, images being scaled to [-1, 1] (Ho et al. 2020, Sec. 3.3)."""
    return x0_pred_raw.clip(-1.0, 1.0)


def eps_and_x0(model_output: Any, x_t: Any, alpha_bar_t: float, prediction: str) -> tuple[Any, Any]:
    """(eps, x0_pred_raw) from the network's output, by what it predicts."""
    if prediction == "eps":
        return model_output, predict_x0(x_t, model_output, alpha_bar_t)
    if prediction == "x0":
        return eps_from_x0(x_t, model_output, alpha_bar_t), model_output
    if prediction == "v":
        return eps_from_v(x_t, model_output, alpha_bar_t), x0_from_v(x_t, model_output, alpha_bar_t)
    raise ConfigError(f"unknown prediction type {prediction!r}; choose one of {', '.join(PREDICTION_TYPES)}")


def output_from_eps(eps: Any, x_t: Any, alpha_bar_t: float, prediction: str) -> Any:
    """The network output of type ``prediction`` that corresponds to ``eps`` at x_t (the inverse of ``eps_and_x0``)."""
    if prediction == "eps":
        return eps
    x0 = predict_x0(x_t, eps, alpha_bar_t)
    if prediction == "x0":
        return x0
    return math.sqrt(alpha_bar_t) * eps - math.sqrt(1.0 - alpha_bar_t) * x0
