"""Noise level measures: how Compare lines traces of any family up (DDPM, DDIM, sigma space, flow), from alpha_bar_t.

Every sampling trace records ``alpha_bar_t`` per step: the VP alpha_bar of its state's noise level (for a sigma-space
sampler 1 / (1 + sigma^2), for a flow sampler (1 - t)^2 / ((1 - t)^2 + t^2), the same SNR as its path). From it, one
pure function (``noise_level``) gives any of three measures of the same level:

- log SNR = log(alpha_bar / (1 - alpha_bar)) (Kingma et al. 2021, Eq. 3): -inf at pure noise, +inf at the clean end;
- sigma = sqrt((1 - alpha_bar) / alpha_bar), the noise level of the sigma-space state x = x0 + sigma eps
  (Karras et al. 2022, Table 1, VP): inf at pure noise, 0 at the clean end;
- flow time t = sigma / (1 + sigma) = sqrt(1 - alpha_bar) / (sqrt(alpha_bar) + sqrt(1 - alpha_bar)), the time of the
  flow path x_t = (1 - t) x0 + t eps at that SNR: 1 at pure noise, 0 at the clean end.

All three are monotone in one another, so "noisier" means the same step in each; only the nearest step in each can
differ (nearest in sigma is not nearest in log SNR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

Measure = Literal["log_snr", "sigma", "flow_t"]


@dataclass(frozen=True)
class MeasureSpec:
    """How a measure is named and drawn."""

    name: Measure
    label: str  # the sidebar's name of it
    text: str  # its symbol in plain text (labels, alignment lines)
    html: str  # its symbol for plotly axis titles
    noisy_high: bool  # whether a larger value is noisier (sigma, flow t) or cleaner (log SNR)
    clean_end: float  # its value at alpha_bar = 1
    log_axis: bool  # plotted on a log axis (sigma spans decades)


MEASURES: Final[dict[str, MeasureSpec]] = {
    "log_snr": MeasureSpec("log_snr", "log SNR", "log SNR", "log SNR", noisy_high=False, clean_end=float("inf"), log_axis=False),
    "sigma": MeasureSpec("sigma", "σ = √((1 − ᾱ)/ᾱ)", "σ", "σ", noisy_high=True, clean_end=0.0, log_axis=True),
    "flow_t": MeasureSpec("flow_t", "flow time t = σ/(1 + σ)", "flow t", "flow t", noisy_high=True, clean_end=0.0, log_axis=False),
}
DEFAULT: Final[Measure] = "log_snr"


def noise_level(alpha_bar: np.ndarray | float, measure: str = DEFAULT) -> np.ndarray:
    """The noise level of each alpha_bar in ``measure`` (float64); NaN where alpha_bar is outside [0, 1].

    log SNR = log(a) - log1p(-a); sigma = sqrt(1 - a) / sqrt(a); flow t = sqrt(1 - a) / (sqrt(a) + sqrt(1 - a)).
    """
    a = np.asarray(alpha_bar, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where((a >= 0) & (a <= 1), a, np.nan)
        if measure == "log_snr":
            return np.log(a) - np.log1p(-a)
        root_a, root_rest = np.sqrt(a), np.sqrt(1.0 - a)
        if measure == "sigma":
            return np.where(a == 0, np.inf, root_rest / np.where(a == 0, 1.0, root_a))
        if measure == "flow_t":
            return root_rest / (root_a + root_rest)
    raise ValueError(f"unknown noise level measure {measure!r}; choose one of {', '.join(MEASURES)}")


def nearest(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each value of ``reference``, the index of the closest value of ``other`` (ties: the earlier index).

    An infinite reference value (pure noise: log SNR -inf, sigma inf) is nearest to the other's equal infinity, else to
    its most extreme value on that side; NaN (a value no level) is farther than anything.
    """
    ref = np.asarray(reference, dtype=np.float64)
    oth = np.asarray(other, dtype=np.float64)
    if oth.size == 0:
        return np.zeros(ref.shape, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        gaps = np.abs(ref[:, None] - oth[None, :])
    gaps = np.where(ref[:, None] == oth[None, :], 0.0, gaps)  # inf - inf
    gaps = np.where(np.isnan(gaps), np.inf, gaps)
    out = np.argmin(gaps, axis=1).astype(np.int64)
    if not np.isnan(oth).all():
        beyond = np.isinf(ref) & (gaps.min(axis=1) > 0)  # no equal infinity: the most extreme level on its side
        out[beyond & (ref > 0)] = int(np.nanargmax(oth))
        out[beyond & (ref < 0)] = int(np.nanargmin(oth))
    return out


def fmt(value: float) -> str:
    """A level for labels: 3 significant digits; 'inf' and '-inf' at the ends of log SNR and sigma."""
    return "?" if np.isnan(value) else f"{value:.3g}"


def delta(value: float, reference: float) -> str:
    """``value - reference``, signed ('+0.02', '-1.3'); '+0' where both are the same level (the same infinity too)."""
    if value == reference:
        return "+0"
    gap = value - reference
    return "?" if np.isnan(gap) else f"{gap:+.2g}"
