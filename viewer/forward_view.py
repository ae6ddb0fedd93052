"""The forward-process explorer's one line of arithmetic: x_t from x_0 and eps at any t (Ho et al. 2020, Eq. 4).

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps

The viewer draws nothing at random: x_0 and eps are a worked example recorded in the
training trace (``examples``), so at the example's own t this gives back its recorded
x_t, which the page shows as a check. The noised sample is labelled x_t with t given
beside it (x_t at t = 0), never x_0, which names the clean sample.
"""

from __future__ import annotations

import numpy as np

from tracer.equations.equation import num


def forward_sample(alpha_bar_t: float, x0: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, in float64 (Eq. 4)."""
    a = float(alpha_bar_t)
    if not 0.0 < a <= 1.0:
        raise ValueError(f"alpha_bar_t must lie in (0, 1], got {a}")
    return np.sqrt(a) * np.asarray(x0, dtype=np.float64) + np.sqrt(1.0 - a) * np.asarray(eps, dtype=np.float64)


FORWARD_LATEX = r"x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon"


def forward_values_latex(t: int, alpha_bar_t: float) -> str:
    """Eq. 4 with this t's coefficients substituted (digits enough to tell 0.99995 from 1), x_t at t stated."""
    return (
        rf"x_t\big|_{{t={t}}} = \underbrace{{{num(float(np.sqrt(alpha_bar_t)))}}}_{{\sqrt{{\bar\alpha_{{{t}}}}}}}\, x_0"
        rf" + \underbrace{{{num(float(np.sqrt(max(1.0 - alpha_bar_t, 0.0))))}}}_{{\sqrt{{1 - \bar\alpha_{{{t}}}}}}}\, \epsilon"
        rf"\qquad \bar\alpha_{{{t}}} = {num(float(alpha_bar_t))}"
    )


def forward_panel_title(t: int) -> str:
    """The noised sample's panel title (plotly HTML): x_t at this t, so t = 0 does not read x_0, the clean sample."""
    return f"x<sub>t</sub> at t = {t}"
