"""A small stand-in for the equation registry (tracer/equations), with the same API, for panel tests.

Two equations over real sampling traces: DDIM's predicted x0 (Song et al. 2021, Eq. 12),
checked in float64 against the recorded tensors, and a deliberately wrong one
("x0_pred = x_t") that fails at every step where alpha_bar_t < 1, so the failing path
is exercised too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SourceView:
    path: str
    first_line: int
    lines: list[str]
    highlight: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Equation:
    id: str
    title: str
    reference: str
    latex: str
    implementation: str
    names: tuple[str, ...]

    def values_latex(self, s: Mapping[str, float]) -> str:
        if self.id == "wrong":
            return r"\hat x_0 = x_t"
        a = s["alpha_bar_t"]
        return rf"\hat x_0 = \frac{{x_t - {math.sqrt(1 - a):.4f}\,\epsilon_\theta}}{{{math.sqrt(a):.4f}}}"

    def residual(self, trace: Any, i: int) -> float | None:
        a = float(trace.column("alpha_bar_t")[i])
        x_t = trace.tensor("x_t", i).astype(np.float64)
        x0 = trace.tensor("x0_pred", i).astype(np.float64)
        if self.id == "wrong":
            return float(np.max(np.abs(x0 - x_t)))
        eps = trace.tensor("eps", i).astype(np.float64)
        return float(np.max(np.abs(x0 - (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a))))


X0 = Equation("x0_pred", "Predicted clean sample", "Song et al. 2021, Eq. 12", r"\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta}{\sqrt{\bar\alpha_t}}",
              "tracer.samplers.prediction.predict_x0", ("x_t", "eps", "x0_pred"))
WRONG = Equation("wrong", "A wrong equation", "nobody, Eq. 0", r"\hat x_0 = x_t", "tracer.samplers.ddim.ddim_step", ("x_t", "x0_pred"))
EQUATIONS = [X0, WRONG]


def equations_for(trace: Any) -> list[Equation]:
    return list(EQUATIONS) if trace.kind == "sampling" else []


def implementation_source(eq: Equation) -> SourceView:
    module, name = eq.implementation.rsplit(".", 1)
    path = ROOT / (module.replace(".", "/") + ".py")
    lines = path.read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith(f"def {name}("))
    end = next((k for k in range(start + 1, len(lines)) if lines[k] and not lines[k][0].isspace() and not lines[k].startswith(")")), len(lines))
    body = lines[start:end]
    while body and not body[-1].strip():  # the blank lines before the next definition are not the function's
        body.pop()
    return SourceView(str(path), start + 1, body, {k for k, line in enumerate(body) if line.strip().startswith("return")})


def failing_steps(trace: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for eq in equations_for(trace):
        bad = [i for i in range(trace.num_steps) if (r := eq.residual(trace, i)) is not None and r > 1e-4]
        if bad:
            out[eq.id] = bad
    return out
