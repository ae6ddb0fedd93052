"""Beta schedules: alpha = 1 - beta, alpha_bar = cumprod(alpha), and each schedule's defining values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracer.schedules import SCHEDULE_NAMES, make_schedule


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@pytest.mark.parametrize("T", [50, 300, 1000])
def test_alpha_and_alpha_bar_follow_beta(name: str, T: int) -> None:  # noqa: N803
    s = make_schedule(name, T)
    assert s.T == T and s.beta.dtype == np.float64
    np.testing.assert_array_equal(s.alpha, 1.0 - s.beta)
    np.testing.assert_allclose(s.alpha_bar, np.cumprod(1.0 - s.beta), rtol=1e-15)
    assert np.all(np.diff(s.alpha_bar) < 0)  # every step adds noise
    assert s.alpha_bar_at(-1) == 1.0 and s.alpha_bar_at(0) == s.alpha_bar[0]


def test_linear_endpoints_at_T_1000() -> None:  # noqa: N802
    s = make_schedule("linear", 1000)
    assert s.beta[0] == pytest.approx(1e-4, rel=1e-12)
    assert s.beta[-1] == pytest.approx(0.02, rel=1e-12)
    np.testing.assert_allclose(np.diff(s.beta), (0.02 - 1e-4) / 999, rtol=1e-9)


def test_cosine_matches_its_closed_form() -> None:
    T, offset = 1000, 0.008  # noqa: N806
    s = make_schedule("cosine", T)

    def f(t: float) -> float:  # Nichol and Dhariwal 2021, Eq. 17
        return math.cos((t / T + offset) / (1 + offset) * math.pi / 2) ** 2

    assert np.all(s.beta <= 0.999)
    unclipped = np.cumprod(s.beta < 0.999).astype(bool)  # alpha_bar telescopes while no beta was clipped
    t = np.arange(T)[unclipped]
    assert unclipped.sum() >= T - 2
    np.testing.assert_allclose(s.alpha_bar[t], [f(i + 1) / f(0) for i in t], rtol=1e-9, atol=1e-12)


def test_seed_report_range_at_T_300_and_scaling() -> None:  # noqa: N802
    s = make_schedule("seed-report")
    assert s.T == 300
    assert s.beta[0] == pytest.approx(0.001, rel=1e-12) and s.beta[-1] == pytest.approx(0.1, rel=1e-12)
    assert s.alpha_bar[0] == pytest.approx(0.999, rel=1e-12)
    s600 = make_schedule("seed-report", 600)  # beta range scales with 1000/T
    assert s600.beta[0] == pytest.approx(0.0005) and s600.beta[-1] == pytest.approx(0.05)


def test_unknown_schedule_raises() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("quadratic")
