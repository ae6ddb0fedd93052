"""Side-by-side measurement: ratios of interleaved timings (measured A B A B ... on machines whose speed drifts).

The machines' speed drifts by tens of percent within minutes, so A and B are
run interleaved (A B A B ... A) and each B is divided by the mean of the two A
runs beside it; the median of those ratios, with its spread, is the result.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Ratio:
    """B / A from interleaved runs: median, min and max of the per-run ratios, and mean seconds."""

    name: str
    median: float
    low: float
    high: float
    seconds_a: float
    seconds_b: float
    target: str  # e.g. "<= 1.05"
    note: str = ""

    @property
    def passed(self) -> bool:
        op, value = self.target.split()
        return self.median <= float(value) if op == "<=" else self.median >= float(value)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_ratio(
    name: str, run_a: Callable[[], object], run_b: Callable[[], object], *, repeats: int, target: str, note: str = "", warmup: bool = True
) -> Ratio:
    """Time A B A B ... A (``repeats`` B runs) and return the median of B / mean(neighbouring A)."""
    if warmup:
        run_a()
        run_b()
    a_times = [timed(run_a)]
    b_times: list[float] = []
    for _ in range(repeats):
        b_times.append(timed(run_b))
        a_times.append(timed(run_a))
    ratios = [b / ((a_times[i] + a_times[i + 1]) / 2) for i, b in enumerate(b_times)]
    return Ratio(
        name=name,
        median=statistics.median(ratios),
        low=min(ratios),
        high=max(ratios),
        seconds_a=statistics.mean(a_times),
        seconds_b=statistics.mean(b_times),
        target=target,
        note=note,
    )


def format_table(rows: list[Ratio]) -> str:
    """A Markdown table of ratios, ready to paste into docs/performance.md."""
    lines = [
        "| benchmark | ratio (median) | spread | A mean s | B mean s | target | ok | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.median:.3f} | {r.low:.3f}-{r.high:.3f} | {r.seconds_a:.3f} | {r.seconds_b:.3f} | {r.target} | "
            f"{'yes' if r.passed else 'NO'} | {r.note} |"
        )
    return "\n".join(lines)
