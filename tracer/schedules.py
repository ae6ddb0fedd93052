"""Beta schedules, in float64: beta_t, alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s.

- ``linear``: Ho et al. 2020, Sec. 4 (beta from 1e-4 to 0.02 over T = 1000 steps,
  scaled by 1000/T for other T so the total noise stays comparable).
- ``cosine``: Nichol and Dhariwal 2021, Eq. 17 (offset s = 0.008, beta clipped at 0.999).
- ``seed-report``: the linear range of the report noisescope grew from
  (arXiv 2512.07201): beta from 0.0003*1000/T to 0.03*1000/T, default T = 300.
- ``flow``: the path of a flow-matching network (``--objective flow``; Lipman et al. 2023, Liu et al.
  2023), x_t = (1 - t) x0 + t eps at the T times t_k = (k + 1) / T, written as the alpha_bar of the same
  signal-to-noise ratio: SNR(t) = (1 - t)^2 / t^2, alpha_bar_k = (1 - t_k)^2 / ((1 - t_k)^2 + t_k^2).
  Its last alpha_bar is 0 (t = 1 is pure noise). It is the schedule of a flow checkpoint only: a trace
  of a flow run records it so that its steps sit on the same noise-level axis as a diffusion trace's.

Any of them can be rescaled to zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise
Schedules and Sample Steps are Flawed", Alg. 1): sqrt(alpha_bar) is shifted and scaled so
that it is 0 at the last timestep and unchanged at the first; beta at the last step is then 1.

Timesteps are 0-based schedule indices: index t holds beta_{t+1} of the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

ScheduleName = Literal["linear", "cosine", "seed-report", "flow"]
SCHEDULE_NAMES: tuple[str, ...] = get_args(ScheduleName)
DEFAULT_TIMESTEPS: dict[str, int] = {"linear": 1000, "cosine": 1000, "seed-report": 300, "flow": 1000}


@dataclass(frozen=True, eq=False)
class Schedule:
    """A noise schedule: three float64 arrays of length T."""

    name: str
    beta: np.ndarray
    alpha: np.ndarray
    alpha_bar: np.ndarray
    zero_terminal_snr: bool = False  # rescaled by Lin et al. 2023, Alg. 1: alpha_bar[T-1] = 0

    @property
    def T(self) -> int:  # noqa: N802 - the paper's symbol
        return int(self.beta.shape[0])

    def alpha_bar_at(self, t: int) -> float:
        """alpha_bar at schedule index t; t = -1 is the clean end, where alpha_bar = 1."""
        return 1.0 if t < 0 else float(self.alpha_bar[t])

    def log_snr(self) -> np.ndarray:
        """log(alpha_bar / (1 - alpha_bar)), the signal-to-noise ratio in log space."""
        return np.log(self.alpha_bar) - np.log1p(-self.alpha_bar)


def betas_valid(beta: np.ndarray) -> bool:
    """Every beta lies in (0, 1), but the last may be 1 (zero terminal SNR: alpha_bar[T-1] = 0)."""
    beta = np.asarray(beta, dtype=np.float64)
    return bool(beta.ndim == 1 and beta.size > 0 and np.all((beta[:-1] > 0) & (beta[:-1] < 1)) and 0 < beta[-1] <= 1)


def from_betas(name: str, beta: np.ndarray, *, zero_terminal_snr: bool = False) -> Schedule:
    """Build a Schedule from betas: alpha = 1 - beta, alpha_bar = cumprod(alpha) (Ho et al. 2020, Eq. 4).

    Every beta lies in (0, 1); the last may be 1 (alpha_bar 0: zero terminal SNR).
    """
    beta = np.asarray(beta, dtype=np.float64)
    if beta.ndim != 1 or beta.size == 0:
        raise ValueError("beta must be a non-empty 1-D array")
    if not betas_valid(beta):
        raise ValueError("every beta must lie in (0, 1), the last in (0, 1]")
    alpha = 1.0 - beta
    alpha_bar = np.cumprod(alpha)
    for array in (beta, alpha, alpha_bar):
        array.setflags(write=False)
    return Schedule(name=name, beta=beta, alpha=alpha, alpha_bar=alpha_bar, zero_terminal_snr=bool(zero_terminal_snr or alpha_bar[-1] == 0.0))


def rescale_zero_terminal_snr(beta: np.ndarray) -> np.ndarray:
    """Betas whose alpha_bar has zero SNR at the last timestep (Lin et al. 2023, Alg. 1).

    sqrt(alpha_bar) is shifted by its last value and scaled to keep its first:
    s'_t = (s_t - s_{T-1}) s_0 / (s_0 - s_{T-1}), alpha_bar' = s'^2, alpha'_t = alpha_bar'_t / alpha_bar'_{t-1}.
    """
    root = np.sqrt(np.cumprod(1.0 - np.asarray(beta, dtype=np.float64)))
    first, last = root[0], root[-1]
    root = (root - last) * (first / (first - last))  # Alg. 1: shift so the last is 0, scale so the first stays
    alpha_bar = root**2
    alpha = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alpha


def linear_betas(T: int) -> np.ndarray:  # noqa: N803
    scale = 1000.0 / T
    return np.linspace(1e-4 * scale, 0.02 * scale, T, dtype=np.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:  # noqa: N803
    # Nichol and Dhariwal 2021, Eq. 17: alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)
    def f(t: float) -> float:
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    return np.array([min(1 - f(i + 1) / f(i), max_beta) for i in range(T)], dtype=np.float64)


def seed_report_betas(T: int) -> np.ndarray:  # noqa: N803
    scale = 1000.0 / T
    return np.linspace(0.0003 * scale, 0.03 * scale, T, dtype=np.float64)


def flow_alpha_bar(t: float) -> float:
    """alpha_bar of flow time t: the same SNR as x_t = (1 - t) x0 + t eps, (1 - t)^2 / ((1 - t)^2 + t^2) (1 at t = 0, 0 at t = 1)."""
    return (1.0 - t) ** 2 / ((1.0 - t) ** 2 + t * t)


def flow_betas(T: int) -> np.ndarray:  # noqa: N803
    """Betas whose alpha_bar is the flow path's at t_k = (k + 1) / T: beta_k = 1 - alpha_bar_k / alpha_bar_{k-1}, the last 1."""
    alpha_bar = np.array([flow_alpha_bar((k + 1) / T) for k in range(T)], dtype=np.float64)
    beta = 1.0 - alpha_bar / np.concatenate([[1.0], alpha_bar[:-1]])
    beta[-1] = 1.0
    return beta


_BETAS = {"linear": linear_betas, "cosine": cosine_betas, "seed-report": seed_report_betas, "flow": flow_betas}


def make_schedule(name: str, T: int | None = None, *, zero_terminal_snr: bool = False) -> Schedule:  # noqa: N803
    """The named schedule over T steps (T defaults per schedule: 1000, or 300 for seed-report), rescaled to
    zero terminal SNR when asked (Lin et al. 2023, Alg. 1)."""
    if name not in _BETAS:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
    T = DEFAULT_TIMESTEPS[name] if T is None else int(T)
    if T < 1:
        raise ValueError(f"the number of timesteps must be at least 1, got {T}")
    beta = _BETAS[name](T)
    if name == "seed-report" and beta[-1] >= 1:
        raise ValueError(f"seed-report needs T > 30 (beta would reach {beta[-1]:.3g} at T={T})")
    if name == "linear" and beta[-1] >= 1:
        raise ValueError(f"linear needs T > 20 (beta would reach {beta[-1]:.3g} at T={T})")
    if zero_terminal_snr and name == "flow":
        raise ValueError("the flow schedule already ends at alpha_bar = 0; it takes no zero-terminal-SNR rescale")
    if zero_terminal_snr:
        return from_betas(name, rescale_zero_terminal_snr(beta), zero_terminal_snr=True)
    return from_betas(name, beta)
