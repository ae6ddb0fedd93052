"""A file whose header HDF5 cannot read without looping or crashing is refused, in bounded time.

The damage is the one the fuzz suite found: a global heap collection ("GCOL") whose second
object is turned into a free-space object (index 0) of size 0. HDF5 then loops forever, holding
the GIL, the first time it reads a variable-length string attribute of the file.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.trace.synthetic import records
from tracer.schedules import make_schedule
from tracer.trace import bounded
from tracer.trace.reader import TraceError, open_trace
from tracer.trace.sampling import record_sampling

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = make_schedule("linear", 40)


def looping_heap(tmp_path: Path) -> tuple[Path, Path]:
    """A good trace and a copy whose global heap makes HDF5 loop."""
    good = tmp_path / "good.h5"
    record_sampling(records(SCHEDULE, 6), good, schedule=SCHEDULE, config={"note": "x"}, planned=6, labels=None)
    data = bytearray(good.read_bytes())
    start = data.find(b"GCOL")
    assert start >= 0, "the writer stores its string attributes in a global heap"
    first = start + 16  # the collection's header: signature, version, 3 reserved bytes, its size (8 bytes)
    index, _, size = struct.unpack_from("<HH4xQ", data, first)
    assert index == 1
    second = first + 16 + (size + 7) // 8 * 8  # objects are padded to 8 bytes
    struct.pack_into("<HH4xQ", data, second, 0, 0, 0)  # free space of size 0: HDF5 never moves past it
    bad = tmp_path / "looping.h5"
    bad.write_bytes(bytes(data))
    return good, bad


def test_the_reader_refuses_a_looping_heap_within_its_deadline(tmp_path, monkeypatch):
    good, bad = looping_heap(tmp_path)
    monkeypatch.setenv(bounded.TIMEOUT_ENV, "1")
    start = time.monotonic()
    with pytest.raises(TraceError) as info:
        open_trace(bad)
    assert time.monotonic() - start < 20  # the deadline is 1 s; a hang would never return
    message = str(info.value)
    assert "\n" not in message and "corrupt" in message and "did not finish" in message
    with open_trace(good) as trace:  # the good file still opens, and reads
        assert trace.num_steps == 6


def test_a_thread_of_a_threaded_process_is_bounded_too(tmp_path, monkeypatch):
    """The viewer opens traces from Streamlit's script threads while other threads run."""
    good, bad = looping_heap(tmp_path)
    monkeypatch.setenv(bounded.TIMEOUT_ENV, "1")
    answers: list[str | int] = []
    busy = threading.Event()

    def reading_elsewhere() -> None:  # another thread using h5py all along
        while not busy.is_set():
            with open_trace(good) as trace:
                trace.tensor("x_t", 0)

    def opener() -> None:
        try:
            open_trace(bad)
        except TraceError as error:
            answers.append(str(error))
        with open_trace(good) as trace:
            answers.append(trace.num_steps)

    other = threading.Thread(target=reading_elsewhere, daemon=True)
    other.start()
    thread = threading.Thread(target=opener, daemon=True)
    thread.start()
    thread.join(60)
    busy.set()
    other.join(60)
    assert not thread.is_alive()
    assert len(answers) == 2 and "did not finish" in str(answers[0]) and answers[1] == 6


def test_check_inspect_and_recover_exit_2_with_one_line(tmp_path):
    _, bad = looping_heap(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), bounded.TIMEOUT_ENV: "1"}
    for command in (["check"], ["inspect"], ["recover", "--out", str(tmp_path / "copy.h5")]):
        argv = [sys.executable, "-c", "import sys; from tracer.cli import main; sys.exit(main())", command[0], str(bad), *command[1:]]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
        assert done.returncode == 2, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "did not finish" in lines[0], (command, done.stderr)
    assert not (tmp_path / "copy.h5").exists()


def _loop(_: str) -> None:
    while True:
        pass


def _segfault(_: str) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _raise(_: str) -> None:
    raise RuntimeError("damaged")


def test_bounded_run_tells_done_timeout_and_crashed_apart(tmp_path):
    marker = tmp_path / "ran"
    assert bounded.run(lambda path: Path(path).write_text("yes"), str(marker), 10) == "done"
    assert marker.read_text() == "yes"  # the target ran (in the child)
    assert bounded.run(_raise, "x", 10) == "done"  # an error is the parent's to see when it reads
    start = time.monotonic()
    assert bounded.run(_loop, "x", 0.5) == "timeout"
    assert time.monotonic() - start < 10
    assert bounded.run(_segfault, "x", 10) == "crashed"


def test_the_deadline_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(bounded.TIMEOUT_ENV, "2.5")
    assert bounded.timeout_s() == 2.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv(bounded.TIMEOUT_ENV, bad)
        assert bounded.timeout_s() == bounded.DEFAULT_TIMEOUT_S
