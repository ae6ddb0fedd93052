"""Which timesteps a reverse process visits, and where each step moves to.

- ``ddim_timesteps``: the sub-sequence tau of Song et al. 2021 (Sec. 4.2) with the
  three spacings of diffusers' DDIMScheduler (``leading``, ``trailing``, ``linspace``;
  Lin et al. 2024, Table 2, compares them).
- ``seed_report_timesteps``: the report's own sub-sequence (arXiv 2512.07201):
  1, 1 + c, 1 + 2c, ... with c = T // steps.
- ``plan``: the (t, t_prev) pair of every step. t_prev of step i is always the t of
  step i + 1, whatever the spacing; the last step moves to ``t_prev_last`` (-1, the
  clean end where alpha_bar = 1, or 0 for the seed-report preset).

Timesteps are 0-based schedule indices, listed in the order they are visited (descending).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from tracer.config import ConfigError

Spacing = Literal["leading", "trailing", "linspace"]
SPACINGS: tuple[str, ...] = get_args(Spacing)


def check_steps(T: int, steps: int) -> None:  # noqa: N803
    if not 1 <= steps <= T:
        raise ConfigError(f"steps must lie in [1, T={T}], got {steps}")


def ddim_timesteps(T: int, steps: int, spacing: str = "leading") -> list[int]:  # noqa: N803
    """``steps`` distinct timesteps in [0, T-1], descending, spaced as diffusers' DDIMScheduler spaces them."""
    check_steps(T, steps)
    if spacing == "leading":
        # arange(0, steps) * (T // steps), reversed
        ts = np.arange(steps, dtype=np.int64) * (T // steps)
    elif spacing == "trailing":
        # round(arange(T, 0, -T/steps)) - 1; float rounding can give arange one extra element near 0, cut it
        ts = (np.round(np.arange(T, 0, -T / steps, dtype=np.float64)[:steps]).astype(np.int64) - 1)[::-1]
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, steps, dtype=np.float64).round().astype(np.int64)
    else:
        raise ConfigError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    timesteps = [int(t) for t in ts[::-1]]
    check_timesteps(timesteps, T)
    return timesteps


def seed_report_timesteps(T: int, steps: int) -> list[int]:  # noqa: N803
    """The report's DDIM timesteps: [t + 1 for t in range(0, T, T // steps)], descending.

    Its length is ceil(T / (T // steps)), which differs from ``steps`` when steps does not
    divide T (the report's behaviour, kept). T=300, steps=10: 271, 241, ..., 31, 1.
    """
    check_steps(T, steps)
    timesteps = [t + 1 for t in range(0, T, T // steps)][::-1]
    if timesteps[0] > T - 1:
        raise ConfigError(
            f"the seed-report timesteps for T={T}, steps={steps} include t={timesteps[0]}, past the schedule's last "
            f"index {T - 1}; choose another step count"
        )
    return timesteps


def check_timesteps(timesteps: Sequence[int], T: int) -> None:  # noqa: N803
    """Raise unless ``timesteps`` is non-empty, strictly descending (no duplicates) and inside [0, T-1]."""
    if len(timesteps) == 0:
        raise ConfigError("no timesteps to visit")
    if any(a <= b for a, b in zip(timesteps, timesteps[1:])):
        raise ConfigError(f"timesteps must be strictly descending without duplicates, got {list(timesteps)}")
    if timesteps[0] > T - 1 or timesteps[-1] < 0:
        raise ConfigError(f"timesteps must lie in [0, {T - 1}], got {timesteps[0]}..{timesteps[-1]}")


def plan(timesteps: Sequence[int], T: int, t_prev_last: int = -1) -> list[tuple[int, int]]:  # noqa: N803
    """(t, t_prev) for every step: t_prev of step i is the t of step i + 1; the last step moves to ``t_prev_last``.

    ``t_prev_last`` is -1 (the clean end, alpha_bar = 1) or a timestep no later than the last one
    (0 for the seed-report preset and for ``final_alpha_bar="alpha_bar_0"``).
    """
    check_timesteps(timesteps, T)
    if not -1 <= t_prev_last <= timesteps[-1]:
        raise ConfigError(f"the last step must move to -1 or a timestep <= {timesteps[-1]}, got {t_prev_last}")
    ts = [int(t) for t in timesteps]
    return list(zip(ts, [*ts[1:], int(t_prev_last)]))
