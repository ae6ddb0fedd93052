"""Reader benchmarks (issue 10): what the validated, one-handle reader costs over plain h5py.

Measured side by side (benchmarks/common.py) on a 1,000-step trace of batch 64 of 1x28x28:

- one row read: ``Trace.tensor`` (committed-row check, damage guard, lock, one chunk) /
  the same chunk read with plain h5py from an open dataset (target <= 1.2);
- opening: ``open_trace`` (superblock flags, every object walked and validated once; the
  first time, the header read in a forked child with a deadline first) beside ``h5py.File``
  alone, absolute, against a budget of 50 ms (a fixed cost paid once per file);
- a killed trace with a corrupted superblock checksum: how long ``open_trace`` takes to
  refuse it, with HDF5's metadata read attempts bounded (absolute, in the report lines; with
  HDF5's default retries the same open hangs for minutes, so it is not run here).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from benchmarks.common import Ratio, interleaved_ratio
from tests.trace.synthetic import records
from tests.trace.writer_process import killed_writer
from tracer.schedules import make_schedule
from tracer.trace.reader import TraceError, open_trace
from tracer.trace.sampling import record_sampling

BATCH, SHAPE, STEPS = 64, (1, 28, 28), 1000
_extra: list[str] = []


def _trace(workdir: Path) -> Path:
    path = workdir / "read.h5"
    schedule = make_schedule("linear", 1000)
    record_sampling(records(schedule, STEPS, batch=BATCH, shape=SHAPE), path, schedule=schedule, config={}, planned=STEPS,
                    labels=None, overwrite=True)
    return path


def row_read(path: Path, repeats: int, reads: int) -> Ratio:
    rows = np.random.default_rng(0).integers(0, STEPS, size=reads)
    trace = open_trace(path)
    raw = h5py.File(path, "r")  # no SWMR refresh involved: a second handle is harmless here
    ds = raw["steps/x_t"]

    def plain() -> None:
        for i in rows:
            np.asarray(ds[int(i)], dtype=np.float32)

    def reader() -> None:
        for i in rows:
            trace.tensor("x_t", int(i))

    try:
        result = interleaved_ratio("one row read (reader / plain h5py)", plain, reader, repeats=repeats, target="<= 1.2")
    finally:
        trace.close()
        raw.close()
    _extra.append(f"- one row read: {result.seconds_a / reads * 1e3:.3f} ms plain h5py, {result.seconds_b / reads * 1e3:.3f} ms "
                  f"through the reader ({BATCH}x{'x'.join(map(str, SHAPE))} float32, {STEPS}-step trace)")
    return result


def opening(path: Path, repeats: int) -> None:
    """The fixed cost of validating a trace at open, paid once per file: absolute, against a 50 ms budget (a viewer frame).

    The first open of a file (or of a changed one) first reads its header in a forked child with a
    deadline (tracer/trace/bounded.py); touching the file before each open measures that case."""
    plain, first, again = [], [], []
    for _ in range(repeats):  # interleaved, so drift hits both alike
        start = time.perf_counter()
        h5py.File(path, "r").close()
        plain.append(time.perf_counter() - start)
        os.utime(path)  # a changed file: its header is read in a child first
        start = time.perf_counter()
        open_trace(path).close()
        first.append(time.perf_counter() - start)
        start = time.perf_counter()
        open_trace(path).close()
        again.append(time.perf_counter() - start)
    _extra.append(f"- open: {np.median(plain) * 1e3:.2f} ms h5py.File; open_trace with validation {np.median(first) * 1e3:.2f} ms "
                  f"the first time (header read in a bounded child, worst {max(first) * 1e3:.1f} ms), {np.median(again) * 1e3:.2f} ms "
                  f"again (median of {repeats}; budget 50 ms, once per file)")


def damaged_open(workdir: Path) -> None:
    path = workdir / "killed.h5"
    killed_writer(path, 200, 0.01, after=20)
    data = bytearray(path.read_bytes())
    data[44] ^= 0xFF  # the version 3 superblock's checksum
    path.write_bytes(bytes(data))
    start = time.perf_counter()
    try:
        open_trace(path).close()
        outcome = "opened (unexpected)"
    except TraceError:
        outcome = "refused with one line"
    _extra.append(f"- killed trace, superblock checksum corrupted: {outcome} in {(time.perf_counter() - start) * 1e3:.1f} ms "
                  "(an SWMR open with HDF5's default retries hangs for minutes)")


def run(quick: bool = False) -> list[Ratio]:
    with tempfile.TemporaryDirectory(prefix="noisescope-bench-", dir=os.environ.get("NOISESCOPE_BENCH_DIR")) as tmp:
        workdir = Path(tmp)
        path = _trace(workdir)
        rows = [row_read(path, repeats=5 if quick else 11, reads=200)]
        opening(path, repeats=5 if quick else 21)
        damaged_open(workdir)
    return rows


def report() -> list[str]:
    return ["", "Reader benchmarks, absolute numbers:", *_extra]
