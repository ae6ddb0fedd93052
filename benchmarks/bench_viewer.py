"""Viewer speed and memory (issue 4, point 10).

- Scrub cost: the server-side work one move of the scrubber triggers (viewer/playback_view.step_view:
  one chunk read per tensor shown, cached per-trace summaries, the figure builders, plotly's JSON
  encoding of every figure, and the equations' values and residuals when the registry is installed)
  on a 1,000-step trace of 64 images of 1x28x28 against a 100-step one, interleaved (A = 100 steps,
  B = 1,000 steps), random steps each run. Target: ratio <= 1.2, and <= 100 ms a step.
- Also the whole app rerun under Streamlit's AppTest (the step the browser player sends back) on the 1,000-step trace, which
  adds the script's own overhead (sidebar, widgets) to the scrub.
- Memory: a fresh process opens a 2 GB trace (1,000 steps, batch 160 of 1x28x28, four tensors),
  computes the per-step statistics over every step, and scrubs; its peak RSS must stay under 500 MB.

Traces are random data written with the real TraceWriter in the real layout, in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Ratio, interleaved_ratio

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 28, 28)
BUDGET_S = 0.100  # per scrub step
RSS_LIMIT_MB = 500.0
_REPORT: list[str] = []


def write_trace(path: Path, steps: int, batch: int, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> Path:
    """A sampling trace of random tensors in the real layout (x_t, eps, x0_pred, noise), t evenly spaced from 999 down."""
    from tracer.schedules import make_schedule
    from tracer.trace import schema
    from tracer.trace.writer import Series, TraceWriter

    schedule = make_schedule("linear", 1000)
    rng = np.random.default_rng(seed)
    fields: dict[str, tuple[tuple[int, ...], str]] = {name: ((), dtype) for name, dtype in schema.STEP_SCALARS.items()}
    for name in schema.STEP_TENSORS:
        fields[name] = ((batch, *shape), schema.TENSOR)
    ts = np.linspace(999, 0, steps).round().astype(np.int64)
    pool = rng.standard_normal((8, batch, *shape)).astype(np.float32)  # rows cycle through a small pool: timing, not content
    finals = {schema.SAMPLES: ((batch, *shape), schema.TENSOR), schema.LABELS: ((batch,), "int64")}
    with TraceWriter(path, kind="sampling", config={"sampler": {"sampler": "ddim", "steps": steps, "eta": 0.0}}, overwrite=True,
                     series=[Series(schema.STEPS, fields, planned=steps)], schedule=schedule, finals=finals) as w:
        for i, t in enumerate(ts):
            t_prev = int(ts[i + 1]) if i + 1 < steps else -1
            ab_t, ab_prev = schedule.alpha_bar_at(int(t)), schedule.alpha_bar_at(t_prev)
            row = {"t": int(t), "t_prev": t_prev, "alpha_bar_t": ab_t, "alpha_bar_prev": ab_prev, "alpha_t": ab_t / ab_prev,
                   "beta_t": 1 - ab_t / ab_prev, "sigma": 0.0}
            for k, name in enumerate(schema.STEP_TENSORS):
                row[name] = pool[(i + k) % len(pool)]
            w.append(schema.STEPS, row)
        w.write_final({schema.SAMPLES: pool[0], schema.LABELS: np.full(batch, -1)})
    return path


class Scrubber:
    """The scrub path of the playback page for one trace, warmed once (summaries cached, as after the first view)."""

    def __init__(self, path: Path) -> None:
        import plotly.io as pio

        from viewer import equations_panel, loaders
        from viewer.playback_view import Display

        self.pio = pio
        self.loaders = loaders
        self.handle = loaders.open_handle(path)
        self.info = loaders.info(self.handle)
        self.display = Display(tensors=("x_t", "eps", "x0_pred", "noise"), samples=tuple(range(16)))
        self.registry = equations_panel.load_registry()
        self.rng = random.Random(0)
        self.equations = 0
        self.step(0)  # warm: per-step statistics, colour ranges, scalars

    def step(self, i: int) -> None:
        from viewer import equations_panel
        from viewer.playback_view import step_view

        info = self.loaders.info(self.handle)
        view = step_view(self.handle, info, i, self.display)
        for fig in (view.images, view.points, view.strips):
            if fig is not None:
                self.pio.to_json(fig, validate=False)  # what st.plotly_chart sends
        if self.registry is not None:  # what the equations panel computes: values, verdicts, sources (all equations)
            scalars = self.loaders.scalars(info.path, info.inode, info.rows)
            with self.handle.lock:
                steps = equations_panel.equations_at(self.registry, self.handle.trace, i, scalars, info.tensor_dtype, memo=self.handle.memo)
            self.equations = len(steps)

    def scrub(self, moves: int) -> None:
        for _ in range(moves):
            self.step(self.rng.randrange(self.info.rows))


def quiet_streamlit() -> None:
    import logging

    for name in ("streamlit", "streamlit.runtime.caching.cache_data_api", "streamlit.runtime.scriptrunner_utils.script_run_context"):
        logging.getLogger(name).setLevel(logging.ERROR)


def scrub_ratio(folder: Path, quick: bool) -> list[Ratio]:
    quiet_streamlit()
    short = Scrubber(write_trace(folder / "steps100.h5", 100, 64))
    long = Scrubber(write_trace(folder / "steps1000.h5", 1000, 64))
    moves = 5 if quick else 10
    ratio = interleaved_ratio("viewer scrub: 1,000-step vs 100-step trace (64x1x28x28)", lambda: short.scrub(moves), lambda: long.scrub(moves),
                              repeats=3 if quick else 7, target="<= 1.2")
    per_step = [ratio.seconds_a / moves, ratio.seconds_b / moves]
    times = []
    for _ in range(3 if quick else 10):
        start = time.perf_counter()
        long.scrub(1)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    eq = f"with the {long.equations} equations" if long.registry is not None else "without the equations (registry not installed)"
    _REPORT.append(f"- Scrub, server time per step {eq}: {per_step[1] * 1000:.1f} ms on the 1,000-step trace, "
                   f"{per_step[0] * 1000:.1f} ms on the 100-step one (median of single steps: {median * 1000:.1f} ms; budget 100 ms).")
    budget = Ratio(name="viewer scrub: ms per step / 100 ms budget (1,000 steps)", median=median / BUDGET_S, low=min(times) / BUDGET_S,
                   high=max(times) / BUDGET_S, seconds_a=BUDGET_S, seconds_b=median, target="<= 1.0",
                   note="absolute: A is the 100 ms budget, B the median scrub step")
    return [dataclasses.replace(ratio, note=f"{per_step[0] * 1000:.1f} vs {per_step[1] * 1000:.1f} ms/step"), budget]


def apptest_step_ms(folder: Path, quick: bool) -> None:
    """Median wall time of one full AppTest rerun after the browser player sends a step (the whole script)."""
    from streamlit.testing.v1 import AppTest

    os.environ["NOISESCOPE_VIEW_ROOTS"] = str(folder)
    at = AppTest.from_file(str(ROOT / "viewer" / "app.py"), default_timeout=120)
    at.query_params.update({"view": "playback", "trace": "steps1000.h5"})
    at.run()
    at.run()
    times = []
    for k in range(5 if quick else 15):
        start = time.perf_counter()
        at.session_state["step:steps1000.h5.player"] = {"step": k + 1, "seq": k + 1}  # what the browser player sends on a scrub
        at.run()
        times.append(time.perf_counter() - start)
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    _REPORT.append(f"- Whole-app rerun under AppTest per step the player sends back (1,000-step trace, sidebar and widgets included): "
                   f"median {statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}); "
                   "in a browser this is paid only on pause or scrub; playing runs in the page (benchmarks/bench_player.py).")


MEMORY_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from benchmarks.bench_viewer import Scrubber, quiet_streamlit, rss_mb
quiet_streamlit()
start = time.perf_counter()
s = Scrubber(__import__("pathlib").Path({path!r}))  # opens the trace, per-step statistics over every step, colour ranges
s.scrub({moves})
print(json.dumps({{"peak_mb": rss_mb("VmHWM"), "rss_mb": rss_mb("VmRSS"), "seconds": time.perf_counter() - start}}))
"""

BASELINE_CHILD = """
import sys
sys.path.insert(0, {root!r})
import benchmarks.bench_viewer, viewer.loaders, viewer.playback_view, viewer.equations_panel, plotly.io
viewer.equations_panel.load_registry()
print(benchmarks.bench_viewer.rss_mb("VmHWM"))
"""


def rss_mb(field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of this process in MB, from /proc.

    Not getrusage's ru_maxrss: a child started from a big parent inherits the parent's maximum
    across fork and exec, while VmHWM belongs to the new address space.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory(folder: Path, quick: bool) -> list[Ratio]:
    batch = 40 if quick else 160  # 1,000 steps x 4 tensors x batch x 784 floats: 0.5 GB quick, 2 GB full
    start = time.perf_counter()
    path = write_trace(folder / "big.h5", 1000, batch)
    made = time.perf_counter() - start
    size_gb = path.stat().st_size / 1e9
    code = MEMORY_CHILD.format(root=str(ROOT), path=str(path), moves=20 if quick else 100)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    peak = float(result["peak_mb"])
    baseline = subprocess.run([sys.executable, "-c", BASELINE_CHILD.format(root=str(ROOT))], capture_output=True, text=True, check=True, cwd=ROOT)
    base = float(baseline.stdout.strip().splitlines()[-1])
    _REPORT.append(f"- Memory: a {size_gb:.2f} GB trace (written in {made:.0f} s) opened, statistics over all 1,000 steps, "
                   f"{20 if quick else 100} scrubs: peak RSS {peak:.0f} MB, {result['rss_mb']:.0f} MB at the end "
                   f"(the imports alone: {base:.0f} MB; limit {RSS_LIMIT_MB:.0f} MB), {result['seconds']:.1f} s.")
    return [Ratio(name=f"viewer memory: peak RSS / 500 MB ({size_gb:.1f} GB trace)", median=peak / RSS_LIMIT_MB, low=peak / RSS_LIMIT_MB,
                  high=peak / RSS_LIMIT_MB, seconds_a=0.0, seconds_b=result["seconds"], target="<= 1.0",
                  note=f"peak {peak:.0f} MB, imports {base:.0f} MB")]


def run(quick: bool) -> list[Ratio]:
    _REPORT.clear()
    _REPORT.append("")
    _REPORT.append("Viewer (benchmarks/bench_viewer.py):")
    with tempfile.TemporaryDirectory(prefix="noisescope-bench-viewer-") as tmp:
        folder = Path(tmp)
        rows = scrub_ratio(folder, quick)
        apptest_step_ms(folder, quick)
        (folder / "steps100.h5").unlink()
        (folder / "steps1000.h5").unlink()
        rows += memory(folder, quick)
    return rows


def report() -> list[str]:
    return list(_REPORT)


if __name__ == "__main__":
    from benchmarks.common import format_table

    table = run(quick="--quick" in sys.argv)
    print(format_table(table))
    print("\n".join(report()))
