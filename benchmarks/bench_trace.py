"""Trace benchmarks (issue 2): recording overhead, write throughput, random step reads.

All at batch 64 of 1x28x28 on the same model, seed and settings, measured
side by side (benchmarks/common.py):

- recording overhead: sampling with a full trace / sampling without one, for
  DDIM 50 steps and DDPM 1000 steps (target <= 1.05);
- write throughput: the trace writer / NumPy writing the same bytes to the same
  disk (target >= 0.5; the ratio is NumPy's time / the writer's time);
- random step read: reading random steps of a 1,000-step trace / of a 100-step
  trace (target <= 1.2: the cost of a step must not grow with the trace).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

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

BATCH, SHAPE = 64, (1, 28, 28)
_extra: list[str] = []


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="unet", sample_shape=SHAPE, num_classes=10))
    return model.eval()


def recording_overhead(sampler: str, steps: int, repeats: int, workdir: Path) -> Ratio:
    model, schedule = _model(), make_schedule("linear", 1000)
    config = SamplerConfig(sampler=sampler, steps=steps if sampler == "ddim" else None)
    labels = torch.arange(BATCH) % 10
    out = workdir / f"{sampler}.h5"

    def without_trace() -> None:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for _ in sample(model, schedule, config, x_T=initial_noise((BATCH, *SHAPE), generator=g), labels=labels, generator=g):
                pass

    def with_trace() -> None:
        g = torch.Generator().manual_seed(0)
        record_run(model, schedule, config, x_T=initial_noise((BATCH, *SHAPE), generator=g), labels=labels, generator=g,
                   out=out, overwrite=True, progress=False)
        out.unlink()

    name = f"recording overhead, {sampler.upper()} {config.planned_steps(1000)} steps (traced / untraced)"
    result = interleaved_ratio(name, without_trace, with_trace, repeats=repeats, target="<= 1.05", warmup=False)
    per_step_ms = (result.seconds_b - result.seconds_a) / config.planned_steps(1000) * 1e3
    _extra.append(f"- {name}: {result.seconds_a / config.planned_steps(1000) * 1e3:.1f} ms per step untraced, "
                  f"{per_step_ms:+.2f} ms per step for the trace (difference of means)")
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
        rows = [
            recording_overhead("ddim", 50, repeats=3 if quick else 11, workdir=workdir),
            recording_overhead("ddpm", 1000, repeats=1 if quick else 4, workdir=workdir),
            write_throughput(100 if quick else 300, repeats=3 if quick else 7, workdir=workdir),
            random_read(repeats=5 if quick else 11, reads=200, workdir=workdir),
        ]
        _extra.append(f"- bench_trace wall time: {time.perf_counter() - start:.0f} s")
    return rows


def report() -> list[str]:
    return ["", "Trace benchmarks, absolute numbers:", *_extra]
