"""Side-by-side measurement: ratios of interleaved timings (measured A B A B ... on machines whose speed drifts).

The machines' speed drifts by tens of percent within minutes, so A and B are
run interleaved (A B A B ... A) and each B is divided by the mean of the two A
runs beside it; the median of those ratios, with its spread, is the result, and
a 95 % bootstrap interval of that median (``median_interval``): a target is met
("yes") or missed ("NO") only where the whole interval says so; a median on one
side of the target with the interval across it is reported as such, not as a verdict.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
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
    interval: tuple[float, float] | None = None  # 95 % bootstrap interval of the median, where there are runs to resample

    def _meets(self, value: float) -> bool:
        op, bound = self.target.split()
        return value <= float(bound) if op == "<=" else value >= float(bound)

    @property
    def passed(self) -> bool:
        return self._meets(self.median)

    @property
    def verdict(self) -> str:
        """'yes' or 'NO' where the median and its whole interval agree; else which side the median is on, undecided."""
        if self.interval is None or self._meets(self.interval[0]) == self._meets(self.interval[1]):
            return "yes" if self.passed else "NO"
        return f"undecided (median {'within' if self.passed else 'beyond'}; 95 % interval {self.interval[0]:.3f}-{self.interval[1]:.3f} across the target)"


def median_interval(values: list[float], resamples: int = 4000, seed: int = 0) -> tuple[float, float]:
    """A 95 % percentile-bootstrap interval of the median of ``values`` (a fixed seed: the same runs, the same interval)."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


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
        interval=median_interval(ratios),
    )


def format_table(rows: list[Ratio]) -> str:
    """A Markdown table of ratios, ready to paste into docs/performance.md."""
    lines = [
        "| benchmark | ratio (median) | 95 % interval | spread | A mean s | B mean s | target | ok | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        interval = f"{r.interval[0]:.3f}-{r.interval[1]:.3f}" if r.interval else ""
        lines.append(
            f"| {r.name} | {r.median:.3f} | {interval} | {r.low:.3f}-{r.high:.3f} | {r.seconds_a:.3f} | {r.seconds_b:.3f} | {r.target} | "
            f"{r.verdict} | {r.note} |"
        )
    return "\n".join(lines)


ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from tracer.cli import main; sys.exit(main())"  # ``noisescope``, this checkout's code (PYTHONPATH)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def viewer_server(folder: Path, env: dict[str, str] | None = None, app: Path | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``noisescope view FOLDER`` (this checkout's code) on a free port, with ``env`` added to the environment: its base
    URL and the process; stopped in every case. ``app``: another Streamlit script served the same way (the viewer's
    server process and flags, tracer/cli/view.py), its log in ``folder``."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    if app is None:
        argv = [sys.executable, "-c", CLI, "view", str(folder), "--port", str(port)]
    else:
        from tracer.cli.view import command

        argv = command([], "127.0.0.1", port, app=app)
    with open(folder / "server.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"the viewer exited ({proc.returncode}): {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
