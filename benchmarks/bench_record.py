"""Recording API benchmark (issue 14): a DDIM loop of one's own traced with ``tracer.record`` / the same loop untraced.

The loop is written here as a user writes one (DDIM, Song et al. 2021, Eq. 12 with eta 0, 50
leading timesteps of the linear schedule, T = 1000), on the model, batch and shape of the trace
benchmarks (benchmarks/bench_trace.py: the default U-Net, batch 64 of 1x28x28). The traced run
adds what docs/recording.md adds, ``with record(...)`` and one ``rec.step(...)`` a step recording
x_t, eps, x0_pred, x_prev, t, t_prev and sigma (the noise, zeros, is filled in); file creation and
close are inside the timing. Target <= 1.05 (measured interleaved, benchmarks/common.py). The time
the loop's thread spends inside ``step`` is reported beside it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_trace import BATCH, SHAPE, _model
from benchmarks.common import Ratio, interleaved_ratio
from tracer import record
from tracer.schedules import make_schedule

STEPS = 50
_extra: list[str] = []


def ddim_loop(model: Any, alpha_bar: torch.Tensor, x: torch.Tensor, labels: torch.Tensor, rec: Any = None, spent: list[float] | None = None) -> torch.Tensor:
    """DDIM with eta 0 over t = T - c, T - 2c, ..., 0 (c = T // STEPS), the last step to the clean end (alpha_bar 1)."""
    T = len(alpha_bar)  # noqa: N806
    c = T // STEPS
    with torch.no_grad():
        for t in range(T - c, -1, -c):
            t_prev = t - c if t >= c else -1  # after t = 0: the clean end, alpha_bar 1
            a_t = float(alpha_bar[t])
            a_prev = float(alpha_bar[t_prev]) if t_prev >= 0 else 1.0
            eps = model(x, torch.full((x.shape[0],), t), labels)
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            x_next = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
            if rec is not None:
                start = time.perf_counter()
                rec.step(t=t, t_prev=t_prev, x_t=x, eps=eps, x0_pred=x0, x_prev=x_next, sigma=0.0)
                if spent is not None:
                    spent[0] += time.perf_counter() - start
            x = x_next
    return x


def recording_api_overhead(repeats: int, workdir: Path) -> Ratio:
    model = _model()
    schedule = make_schedule("linear", 1000)
    alpha_bar = torch.tensor(schedule.alpha_bar)
    labels = torch.arange(BATCH) % 10
    out = workdir / "api.h5"
    spent, traced_runs = [0.0], [0]

    def x_T() -> torch.Tensor:  # noqa: N802
        return torch.randn((BATCH, *SHAPE), generator=torch.Generator().manual_seed(0))

    def without_trace() -> None:
        ddim_loop(model, alpha_bar, x_T(), labels)

    def with_trace() -> None:
        with record(out, alpha_bar, overwrite=True, steps=STEPS) as rec:
            ddim_loop(model, alpha_bar, x_T(), labels, rec, spent)
        traced_runs[0] += 1
        out.unlink()

    name = f"recording API overhead, a DDIM loop of one's own, {STEPS} steps (traced / untraced)"
    result = interleaved_ratio(name, without_trace, with_trace, repeats=repeats, target="<= 1.05")
    step_ms = spent[0] / traced_runs[0] / STEPS * 1e3
    _extra.append(f"- {name}: {result.seconds_a / STEPS * 1e3:.1f} ms per step untraced, "
                  f"{(result.seconds_b - result.seconds_a) / STEPS * 1e3:+.2f} ms per step for the trace (difference of means), "
                  f"{step_ms:.2f} ms per step inside Recorder.step; load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    return result


def run(quick: bool = False) -> list[Ratio]:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="noisescope-bench-", dir=os.environ.get("NOISESCOPE_BENCH_DIR")) as tmp:
        return [recording_api_overhead(repeats=3 if quick else 11, workdir=Path(tmp))]


def report() -> list[str]:
    return ["", "Recording API benchmark, absolute numbers:", *_extra]
