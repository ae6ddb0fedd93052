"""A trace whose writer was killed outright (SIGKILL) still says "running"; its ``writer`` stamp tells readers on the
same machine that the process is gone (tracer/trace/liveness.py), and check, inspect and the viewer say it was killed.

The process states are real: this process (alive), a child that has exited and been reaped (no such pid), a child
that has exited and not been reaped (a zombie), and a writer SIGKILLed after its fourth step (tests/pausing_run.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pausing_run import run_and_kill
from tracer.cli import main
from tracer.trace import liveness, schema
from tracer.trace.reader import open_trace
from tracer.trace.sampling import record_sampling
from tests.trace.synthetic import records
from tracer.schedules import make_schedule


def stamp_of(pid: int) -> dict[str, object]:
    """The stamp a writer with process ``pid`` would leave, read from /proc now."""
    me = liveness.identity()
    assert me is not None
    state = liveness._stat(pid)
    assert state is not None
    return {**me, "pid": pid, "started": state[1]}


def test_this_process_is_alive_and_its_stamp_names_it() -> None:
    me = liveness.identity()
    assert me is not None and me["pid"] == os.getpid() and set(me) == set(liveness.FIELDS)
    assert liveness.state(me) == "alive"


def test_a_reaped_child_is_gone_and_an_unreaped_one_is_a_zombie_so_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    stamp = stamp_of(child.pid)
    assert liveness.state(stamp) == "alive"
    assert child.stdin is not None
    child.stdin.close()  # it exits; not reaped yet: a zombie
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # wait for its exit, leaving it unreaped
    assert liveness._stat(child.pid) is not None and liveness._stat(child.pid)[0] == "Z"  # type: ignore[index]
    assert liveness.state(stamp) == "gone"
    child.wait()  # reaped: the pid names no process
    assert liveness.state(stamp) == "gone"


def test_a_pid_taken_by_another_process_is_gone() -> None:
    stamp = {**stamp_of(os.getpid()), "started": stamp_of(os.getpid())["started"] - 1}  # this pid, started at another time
    assert liveness.state(stamp) == "gone"


@pytest.mark.parametrize("change", [{"host": "another-machine"}, {"boot_id": "0-0-0"}, {"pid_ns": 1}, {"pid": "12"}, {"pid": 0},
                                    {"started": None}])
def test_another_machine_boot_or_namespace_or_a_bad_stamp_cannot_be_told(change: dict[str, object]) -> None:
    assert liveness.state({**stamp_of(os.getpid()), **change}) == "unknown"


@pytest.mark.parametrize("stamp", [None, "text", [], {}, {"pid": 1}])
def test_no_stamp_cannot_be_told(stamp: object) -> None:
    assert liveness.state(stamp) == "unknown"


def test_a_trace_written_here_is_stamped_with_its_writer_and_a_finished_one_is_not_abandoned(tmp_path: Path) -> None:
    path = tmp_path / "done.h5"
    record_sampling(records(make_schedule("linear", 1000), 4), path, schedule=make_schedule("linear", 1000), config={}, planned=4, labels=None)
    with open_trace(path) as trace:
        stamp = trace.json_attr(schema.ATTR_WRITER)
        assert stamp["pid"] == os.getpid() and trace.writer_state() == "alive"
        assert trace.status == "complete" and not trace.abandoned


def test_a_trace_whose_writer_was_killed_says_so_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "killed.h5"
    run_and_kill("sample", str(path), "8", "0", "step:3")  # SIGKILLed once its fourth step is committed
    with open_trace(path) as trace:
        assert trace.status == "running" and trace.writer_state() == "gone" and trace.abandoned
        assert trace.num_steps == 4 and trace.planned() == 8
    assert main(["check", str(path)]) == 3
    out = capsys.readouterr().out
    assert "the run was killed before it could close the trace (status running, but its writer is gone): 4 of 8 planned" in out
    assert main(["inspect", str(path)]) == 0
    assert "status running (its writer is gone: the run was killed before it could close the trace)" in capsys.readouterr().out
    copy = tmp_path / "copy.h5"
    assert main(["recover", str(path), "--out", str(copy)]) == 0
    with open_trace(copy) as trace:  # the copy is closed as failed, stamped by recover's own process
        assert trace.status == "failed" and trace.json_attr(schema.ATTR_WRITER)["pid"] == os.getpid() and not trace.abandoned
