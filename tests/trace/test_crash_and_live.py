"""Crash safety and live reading, with the writer in a real separate process.

A writer killed with SIGKILL leaves every committed step readable and
``noisescope recover`` writes a clean copy; a reader opened while the writer
runs sees the status and the steps grow, each step whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.trace.synthetic import records
from tests.trace.writer_process import killed_writer
from tracer.cli import main
from tracer.schedules import make_schedule
from tracer.trace.reader import open_trace

ROOT = Path(__file__).resolve().parents[2]


def start_writer(path: Path, steps: int, delay: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.trace.writer_process", str(path), str(steps), str(delay)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )


def wait_for_step(proc: subprocess.Popen[str], index: int) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == f"step {index}":
            return
    raise AssertionError(f"writer ended before step {index}: rc={proc.wait()}")


def expected(steps: int):
    return list(records(make_schedule("linear", 1000), steps))


def test_sigkill_leaves_committed_steps_readable_and_recover_repairs(tmp_path, capsys):
    path = tmp_path / "killed.h5"
    killed_writer(path, 200, 0.01, after=20)
    truth = expected(200)
    with open_trace(path) as trace:
        assert trace.status == "running"  # the writer never got to say otherwise
        n = trace.num_steps
        assert 21 <= n < 200
        for i in (0, n // 2, n - 1):
            np.testing.assert_array_equal(trace.tensor("x_t", i), truth[i].x_t.numpy())
        assert trace.final("samples") is None

    out = tmp_path / "clean.h5"
    assert main(["recover", str(path), "--out", str(out)]) == 0
    assert f"steps: {n} rows" in capsys.readouterr().out
    with open_trace(out) as copy:
        assert copy.status == "failed" and copy.recovered_from == str(path)
        assert copy.num_steps == n and copy.file["steps/x_t"].shape[0] == n
        np.testing.assert_array_equal(copy.tensor("eps", n - 1), truth[n - 1].eps.numpy())
        np.testing.assert_array_equal(copy.scalars()["t"], [r.t for r in truth[:n]])
    # The copy is a closed, ordinary HDF5 file: readable without SWMR too.
    import h5py

    with h5py.File(out, "r") as f:
        assert f["steps/t"].shape == (n,)
    # recover never overwrites without --overwrite
    assert main(["recover", str(path), "--out", str(out)]) == 2


def test_reader_follows_a_running_writer(tmp_path):
    path = tmp_path / "live.h5"
    proc = start_writer(path, steps=30, delay=0.05)
    try:
        wait_for_step(proc, 2)
        truth = expected(30)
        with open_trace(path) as trace:
            assert trace.status == "running"
            seen = [trace.num_steps]
            wait_for_step(proc, 12)
            trace.refresh()
            seen.append(trace.num_steps)
            assert seen[0] >= 3 and seen[1] >= 13 and seen[1] > seen[0]
            last = seen[1] - 1
            np.testing.assert_array_equal(trace.tensor("x0_pred", last), truth[last].x0_pred.numpy())
            assert proc.wait(timeout=60) == 0
            trace.refresh()
            assert trace.status == "complete" and trace.num_steps == 30
            assert trace.final("samples") is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class _Sized:
    """A stat result with another st_size."""

    def __init__(self, real: os.stat_result, size: int) -> None:
        self._real, self.st_size = real, size

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def test_a_size_taken_before_the_writers_last_commit_does_not_fail_the_trace(tmp_path, monkeypatch):
    """The reader stats the file, then opens it; a writer may commit rows in between. Rows
    committed after that first look lie past the size it saw, and are still good."""
    import tracer.trace.reader as reader

    path = tmp_path / "live.h5"
    proc = start_writer(path, steps=40, delay=0.05)
    try:
        wait_for_step(proc, 1)
        early = path.stat().st_size  # the size a reader saw before the rows that follow
        wait_for_step(proc, 25)
        real_stat = os.stat
        calls = []

        def stale_first_look(target, *args, **kwargs):
            result = real_stat(target, *args, **kwargs)
            if Path(target) == path and not calls:
                calls.append(result.st_size)
                return _Sized(result, early)
            return result

        monkeypatch.setattr(reader.os, "stat", stale_first_look)
        with open_trace(path) as trace:
            assert calls and calls[0] > early  # the first look was stale, and the reader still opened it
            assert trace.num_steps >= 26
            last = trace.num_steps - 1
            np.testing.assert_array_equal(trace.tensor("x_t", last), expected(40)[last].x_t.numpy())
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_trace_reads_as_its_committed_rows_everywhere(tmp_path, capsys):
    """check, the viewer's loaders, TraceView and Trace.tensor all see exactly the rows an uninterrupted run
    wrote up to the kill, and check passes: once, several handles of one file in one process read row 0 for
    every row (a second refreshed handle of an SWMR file)."""
    from tracer.equations.context import TraceView
    from viewer import loaders

    path = tmp_path / "killed.h5"
    killed_writer(path, 60, 0.01, after=12)
    truth = expected(60)
    # The synthetic chain is DDIM with eta 0: identified, every committed step checked and none fails; the end of the
    # run is not in the trace, so the verdict is INCOMPLETE (exit 3), never PASS.
    assert main(["check", str(path)]) == 3
    out = capsys.readouterr().out
    assert "identified as ddim" in out and "INCOMPLETE" in out and "the end of the run" in out and "FAIL" not in out
    with open_trace(path) as trace, open_trace(path) as second:
        n = trace.num_steps
        assert 13 <= n < 60 and second.num_steps == n
        view = TraceView(trace)
        handle = loaders.TraceHandle(second)
        for i in range(n):
            for name in ("x_t", "eps", "x0_pred", "noise"):
                want = getattr(truth[i], name).numpy()
                np.testing.assert_array_equal(trace.tensor(name, i), want)
                np.testing.assert_array_equal(view.tensor(name, i), want.astype(np.float64))
                np.testing.assert_array_equal(loaders.read_row(handle, name, i, n), want)
        np.testing.assert_array_equal(trace.column("t"), [r.t for r in truth[:n]])
        for i in range(n):  # and again, after every other path has read and refreshed
            np.testing.assert_array_equal(trace.tensor("x_t", i), truth[i].x_t.numpy())
