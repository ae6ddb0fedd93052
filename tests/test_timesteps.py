"""Timestep plans: every spacing's invariants, t_prev chaining, the seed-report list, bad input."""

from __future__ import annotations

import math

import pytest

from tracer.config import ConfigError
from tracer.samplers.timesteps import SPACINGS, ddim_timesteps, plan, seed_report_timesteps

CASES = [(1000, s) for s in (1, 3, 7, 30, 50, 999, 1000)] + [(10, s) for s in range(1, 11)] + [(300, 7), (300, 13)]


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize(("T", "steps"), CASES)
def test_every_spacing_gives_steps_distinct_descending_timesteps(spacing: str, T: int, steps: int) -> None:  # noqa: N803
    ts = ddim_timesteps(T, steps, spacing)
    assert len(ts) == steps
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert 0 <= ts[-1] and ts[0] <= T - 1
    if steps == T:
        assert ts == list(range(T - 1, -1, -1))


@pytest.mark.parametrize(("T", "steps"), CASES)
def test_spacing_shapes(T: int, steps: int) -> None:  # noqa: N803
    # leading: multiples of T // steps from 0 up
    assert ddim_timesteps(T, steps, "leading") == [k * (T // steps) for k in range(steps)][::-1]
    # trailing: starts at T - 1, gaps of floor or ceil of T / steps
    trailing = ddim_timesteps(T, steps, "trailing")
    assert trailing[0] == T - 1
    assert {a - b for a, b in zip(trailing, trailing[1:])} <= {math.floor(T / steps), math.ceil(T / steps)}
    assert trailing[-1] <= math.ceil(T / steps) - 1
    # linspace: from T - 1 down to 0, gaps of floor or ceil of (T - 1) / (steps - 1)
    linspace = ddim_timesteps(T, steps, "linspace")
    assert linspace[-1] == 0
    if steps > 1:
        gap = (T - 1) / (steps - 1)
        assert linspace[0] == T - 1
        assert {a - b for a, b in zip(linspace, linspace[1:])} <= {math.floor(gap), math.ceil(gap)}


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize(("T", "steps"), CASES)
def test_t_prev_is_the_next_steps_t(spacing: str, T: int, steps: int) -> None:  # noqa: N803
    ts = ddim_timesteps(T, steps, spacing)
    pairs = plan(ts, T)
    assert [t for t, _ in pairs] == ts
    assert all(pairs[i][1] == pairs[i + 1][0] for i in range(len(pairs) - 1))
    assert pairs[-1][1] == -1
    assert plan(ts, T, t_prev_last=0)[-1] == (ts[-1], 0)


def test_seed_report_timesteps_T300_S10() -> None:  # noqa: N802
    ts = seed_report_timesteps(300, 10)
    assert ts == [271, 241, 211, 181, 151, 121, 91, 61, 31, 1]
    pairs = plan(ts, 300, t_prev_last=0)
    assert pairs[-1] == (1, 0) and pairs[0] == (271, 241)


@pytest.mark.parametrize("steps", [7, 11, 50, 64, 140])
def test_seed_report_length_when_steps_does_not_divide_T(steps: int) -> None:
    T, c = 300, 300 // steps  # noqa: N806
    ts = seed_report_timesteps(T, steps)
    assert len(ts) == math.ceil(T / c)  # the report's behaviour: not necessarily `steps`
    assert ts[-1] == 1 and all(a - b == c for a, b in zip(ts, ts[1:]))


def test_seed_report_timestep_past_the_schedule_raises() -> None:
    # T=300, steps=13: c = 23 divides 299, so the report's list would reach t = 300
    with pytest.raises(ConfigError, match="past the schedule"):
        seed_report_timesteps(300, 13)


@pytest.mark.parametrize("steps", [0, -1, 1001])
def test_steps_outside_1_T_raise(steps: int) -> None:
    with pytest.raises(ConfigError, match="steps"):
        ddim_timesteps(1000, steps, "leading")
    with pytest.raises(ConfigError, match="steps"):
        seed_report_timesteps(1000, steps)


def test_unknown_spacing_raises() -> None:
    with pytest.raises(ConfigError, match="unknown spacing"):
        ddim_timesteps(1000, 10, "uniform")


@pytest.mark.parametrize("ts", [[5, 5, 3], [3, 5], [10, 4], [4, -1], []])
def test_plan_rejects_duplicates_order_and_range(ts: list[int]) -> None:
    with pytest.raises(ConfigError):
        plan(ts, 10)


def test_plan_rejects_a_last_target_after_the_last_step() -> None:
    with pytest.raises(ConfigError):
        plan([9, 4, 2], 10, t_prev_last=3)
