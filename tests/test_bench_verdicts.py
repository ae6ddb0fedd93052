"""The benchmarks' verdicts (benchmarks/common.py): a target is met or missed only where the median's bootstrap interval
says so as a whole; otherwise the table says undecided, and ``make bench`` does not count it as met."""

from __future__ import annotations

import statistics

import pytest

from benchmarks import common
from benchmarks.common import Ratio, median_interval


def ratio(values: list[float], target: str = "<= 1.05") -> Ratio:
    return Ratio("r", statistics.median(values), min(values), max(values), 1.0, 1.0, target, interval=median_interval(values))


def test_the_interval_holds_the_median_and_lies_within_the_values() -> None:
    values = [0.93, 1.01, 0.99, 1.12, 1.04, 0.97, 1.30, 1.02, 0.95, 1.08, 1.00]
    low, high = median_interval(values)
    assert min(values) <= low <= statistics.median(values) <= high <= max(values)
    assert median_interval(values) == (low, high)  # a fixed seed: the same runs give the same interval
    assert median_interval([1.0] * 7) == (1.0, 1.0)


def test_a_target_is_met_or_missed_only_where_the_whole_interval_agrees() -> None:
    assert ratio([1.00, 1.01, 1.02, 0.99, 1.00, 1.01, 1.02]).verdict == "yes"
    assert ratio([1.20, 1.22, 1.19, 1.25, 1.21, 1.23, 1.20]).verdict == "NO"
    across = ratio([0.98, 1.00, 1.03, 1.04, 1.06, 1.08, 1.12])
    assert across.passed and across.verdict.startswith("undecided (median within")
    above = ratio([0.99, 1.03, 1.06, 1.07, 1.08, 1.09, 1.15])
    assert not above.passed and above.verdict.startswith("undecided (median beyond")
    assert ratio([0.4, 0.5, 0.45], ">= 0.5").verdict.startswith("undecided")  # the other direction
    assert Ratio("r", 1.2, 1.2, 1.2, 1.0, 1.0, "<= 1.05").verdict == "NO"  # one measurement, no interval: its value decides


def test_interleaved_runs_give_the_interval_of_their_ratios(monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = iter([1.0, 1.02, 1.0, 1.04, 1.0, 1.03, 1.0])  # A B A B A B A, as interleaved_ratio times them
    monkeypatch.setattr(common, "timed", lambda fn: next(seconds))
    r = common.interleaved_ratio("r", lambda: None, lambda: None, repeats=3, target="<= 1.05", warmup=False)
    assert r.median == 1.03 and r.interval is not None and 1.02 <= r.interval[0] <= r.interval[1] <= 1.04
    assert r.verdict == "yes"
