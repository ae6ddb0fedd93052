"""Trace benchmarks (issue 2): recording overhead, write throughput, random step reads.

All at batch 64 of 1x28x28 on the same model, seed and settings, measured
side by side (benchmarks/common.py):

- recording overhead: sampling with a full trace / sampling without one, for
  every sampler family (target <= 1.05): DDPM 1000 steps, and 50 steps of DDIM,
  Euler, Heun, Euler ancestral and DPM-Solver++(2M) on an eps U-Net, of flow
  Euler and flow Heun on the same U-Net built as a flow (velocity) network; the
  time the sampler's thread spends inside ``TraceWriter.append`` is reported
  beside it (timed in the traced runs);
- the same recording overhead on a CUDA GPU, where torch sees one (each step's tensors are
  copied to the host as the writer takes them: what the copy costs the sampler);
- write throughput: the trace writer / NumPy writing the same bytes to the same
  disk (target >= 0.5; the ratio is NumPy's time / the writer's time);
- random step read: reading random steps of a 1,000-step trace / of a 100-step
  trace (target <= 1.2: the cost of a step must not grow with the trace).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import Ratio, interleaved_ratio
from tests.trace.synthetic import records
from tracer.config import ModelConfig
from tracer.samplers.config import SamplerConfig
from tracer.models.registry import build_model
from tracer.recording import record_run
from tracer.samplers.loop import initial_noise, sample
from tracer.schedules import make_schedule
from tracer.trace.reader import open_trace
from tracer.trace.sampling import record_sampling
from tracer.trace.writer import TraceWriter

BATCH, SHAPE = 64, (1, 28, 28)
_extra: list[str] = []

# Every sampler family (sampler, steps: None for DDPM's all T) and its name in the table.
FAMILIES: tuple[tuple[str, int | None, str], ...] = (
    ("ddim", 50, "DDIM"),
    ("ddpm", None, "DDPM"),
    ("euler", 50, "Euler"),
    ("heun", 50, "Heun"),
    ("euler_ancestral", 50, "Euler ancestral"),
    ("dpmpp_2m", 50, "DPM-Solver++(2M)"),
    ("flow_euler", 50, "flow Euler"),
    ("flow_heun", 50, "flow Heun"),
)
FLOW_SAMPLERS = ("flow_euler", "flow_heun")


def _model(objective: str = "diffusion") -> torch.nn.Module:
    """The default U-Net (as ``noisescope train`` builds it for MNIST-sized images), untrained, seed 0; a velocity network
    on the flow path for ``objective`` "flow" (the same architecture, so the same cost a call)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="unet", sample_shape=SHAPE, num_classes=10, prediction="v" if objective == "flow" else "eps",
                                    objective=objective))
    return model.eval()


class _Calls:
    """The network with a count of its calls (Heun calls it twice a step); everything else is read through."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.calls = model, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


@contextmanager
def _timed_appends(seconds: list[float]) -> Iterator[None]:
    """Add the time spent inside ``TraceWriter.append`` (the writer's work on the sampler's thread) to ``seconds[0]``."""
    original = TraceWriter.append

    def append(self: TraceWriter, series: str, row: Any) -> int:
        start = time.perf_counter()
        try:
            return original(self, series, row)
        finally:
            seconds[0] += time.perf_counter() - start

    TraceWriter.append = append  # type: ignore[method-assign]
    try:
        yield
    finally:
        TraceWriter.append = original  # type: ignore[method-assign]


def recording_overhead(sampler: str, steps: int | None, repeats: int, workdir: Path, title: str | None = None,
                       device: str = "cpu") -> Ratio:
    """Sampling with ``record_run`` (file creation and close included) / the same loop with its records dropped, the
    network and the sampler's tensors on ``device`` (on CUDA the untraced run waits for the GPU at its end, as the
    traced one does at the copies)."""
    flow = sampler in FLOW_SAMPLERS
    model = _Calls(_model("flow" if flow else "diffusion").to(device))
    schedule = make_schedule("flow", 1000) if flow else make_schedule("linear", 1000)
    config = SamplerConfig(sampler=sampler, steps=steps)
    planned = config.planned_steps(schedule.T, schedule.alpha_bar)
    labels = (torch.arange(BATCH) % 10).to(device)
    out = workdir / f"{sampler}.h5"
    append_seconds, traced_runs, trace_bytes = [0.0], [0], [0]

    def without_trace() -> None:
        g = torch.Generator(device).manual_seed(0)
        with torch.no_grad():
            for _ in sample(model, schedule, config, x_T=initial_noise((BATCH, *SHAPE), generator=g, device=device),  # type: ignore[arg-type]
                            labels=labels, generator=g):
                pass
        if device != "cpu":
            torch.cuda.synchronize()

    def with_trace() -> None:
        g = torch.Generator(device).manual_seed(0)
        with _timed_appends(append_seconds):
            record_run(model, schedule, config, x_T=initial_noise((BATCH, *SHAPE), generator=g, device=device), labels=labels,
                       generator=g, out=out, overwrite=True, progress=False)
        traced_runs[0] += 1
        trace_bytes[0] = out.stat().st_size
        out.unlink()

    on = "" if device == "cpu" else f" on {device.upper()}"
    name = f"recording overhead, {title or sampler.upper()}{on} {planned} steps (traced / untraced)"
    warmup = steps is not None  # one A and one B first, except for DDPM's 1000-step runs
    result = interleaved_ratio(name, without_trace, with_trace, repeats=repeats, target="<= 1.05", warmup=warmup)
    per_step_ms = (result.seconds_b - result.seconds_a) / planned * 1e3
    append_ms = append_seconds[0] / traced_runs[0] / planned * 1e3
    calls = model.calls // (2 * repeats + 1 + (2 if warmup else 0))  # network calls a run: every A and B run the same loop
    _extra.append(f"- {name}: {calls} network calls, {result.seconds_a / planned * 1e3:.1f} ms per step untraced, "
                  f"{per_step_ms:+.2f} ms per step for the trace (difference of means), {append_ms:.2f} ms per step inside "
                  f"TraceWriter.append; {trace_bytes[0] / 2**20:.0f} MB a trace; load average "
                  f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    return result


def write_throughput(steps: int, repeats: int, workdir: Path) -> Ratio:
    schedule = make_schedule("linear", 1000)
    recs = list(records(schedule, steps, batch=BATCH, shape=SHAPE))
    trace_path, npy_path = workdir / "throughput.h5", workdir / "throughput.bin"
    tensors = ("x_t", "eps", "x0_pred", "noise")

    def trace_writer() -> None:
        record_sampling(iter(recs), trace_path, schedule=schedule, config={}, planned=steps, labels=None, overwrite=True)

    def numpy_writer() -> None:
        with open(npy_path, "wb") as f:
            for r in recs:
                for name in tensors:
                    getattr(r, name).numpy().tofile(f)
                np.array([r.t, r.t_prev], dtype=np.int64).tofile(f)
                np.array([r.alpha_bar_t, r.alpha_bar_prev, r.alpha_t, r.beta_t, r.sigma]).tofile(f)
                f.flush()  # like the writer: flushed to the OS every step

    result = interleaved_ratio(f"write throughput, {steps} steps (trace writer / NumPy)", trace_writer, numpy_writer,
                               repeats=repeats, target=">= 0.5", note="NumPy time / writer time")
    mb = sum(getattr(recs[0], n).numpy().nbytes for n in tensors) * steps / 2**20
    _extra.append(f"- write throughput: {mb / result.seconds_a:.0f} MB/s trace writer, {mb / result.seconds_b:.0f} MB/s NumPy ({mb:.0f} MB a run)")
    return result


def random_read(repeats: int, reads: int, workdir: Path) -> Ratio:
    schedule = make_schedule("linear", 1000)
    paths = {}
    for steps in (100, 1000):
        paths[steps] = workdir / f"read{steps}.h5"
        record_sampling(records(schedule, steps, batch=BATCH, shape=SHAPE), paths[steps], schedule=schedule, config={},
                        planned=steps, labels=None, overwrite=True)
    rng = np.random.default_rng(0)

    def reader(steps: int):
        def read() -> None:
            with open_trace(paths[steps]) as trace:
                for i in rng.integers(0, steps, size=reads):
                    trace.tensor("x_t", int(i))
        return read

    result = interleaved_ratio("random step read (1,000-step trace / 100-step trace)", reader(100), reader(1000),
                               repeats=repeats, target="<= 1.2")
    _extra.append(f"- random step read: {result.seconds_a / reads * 1e3:.2f} ms a step (100-step trace), "
                  f"{result.seconds_b / reads * 1e3:.2f} ms (1,000-step trace), open included")
    return result


def run(quick: bool = False) -> list[Ratio]:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="noisescope-bench-", dir=os.environ.get("NOISESCOPE_BENCH_DIR")) as tmp:
        workdir = Path(tmp)
        start = time.perf_counter()
        gpu = ["cuda"] if torch.cuda.is_available() else []
        if not gpu:
            _extra.append("- recording overhead on a CUDA GPU: not measured (torch sees no CUDA GPU on this machine)")
        rows = [
            *(recording_overhead(sampler, steps, repeats=(3 if quick else 15) if steps else (1 if quick else 4), workdir=workdir,
                                 title=title, device=device) for device in ["cpu", *gpu] for sampler, steps, title in FAMILIES),
            write_throughput(100 if quick else 300, repeats=3 if quick else 7, workdir=workdir),
            random_read(repeats=5 if quick else 11, reads=200, workdir=workdir),
        ]
        _extra.append(f"- bench_trace wall time: {time.perf_counter() - start:.0f} s")
    return rows


def report() -> list[str]:
    return ["", "Trace benchmarks, absolute numbers:", *_extra]

