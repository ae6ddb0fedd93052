"""Run one read of a file in a child process, with a deadline, so that HDF5 cannot hang or crash us.

Some damage makes HDF5 loop forever or crash inside its C code: a global heap collection
whose free-space object has size zero sends ``H5HG__cache_heap_deserialize`` round the same
bytes without end the first time a variable-length string attribute of the file is read
(found by the fuzz suite, docs/reliability.md). That loop holds the GIL, so no timer or
thread in the reading process can stop it; a separate process can be killed.

``run(target, path, timeout)`` calls ``target(path)`` in a child and answers ``"done"``
(it returned or raised: the parent may then do the same reads safely), ``"timeout"`` or
``"crashed"`` (a signal ended it). The child is a fork (a few milliseconds), taken while this
thread holds h5py's global lock (the reader passes it), so that in a process with several threads (the viewer,
under Streamlit) no other thread holds it in the child. The child collects no garbage and
runs no exit handlers, so it never closes the parent's files. Where no child can be started
(no fork on the platform, no process to spare) the read runs in-process, as it would
without this module.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import os
import select
import signal
import warnings
from collections.abc import Callable
from typing import ContextManager, Literal

Outcome = Literal["done", "timeout", "crashed"]

TIMEOUT_ENV = "NOISESCOPE_OPEN_TIMEOUT"
DEFAULT_TIMEOUT_S = 5.0  # reading a healthy trace's header takes milliseconds


def timeout_s() -> float:
    """The deadline for reading a trace's header: $NOISESCOPE_OPEN_TIMEOUT seconds, else 5."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def run(target: Callable[[str], object], path: str, timeout: float, lock: ContextManager[object] | None = None) -> Outcome:
    """``target(path)`` in a child process, bounded by ``timeout`` seconds; ``lock`` (the reader passes
    h5py's global lock) is held across the fork, so that no other thread holds it in the child."""
    if not hasattr(os, "fork"):
        return "done"  # no fork (Windows): read in-process, as without this module
    return _forked(target, path, timeout, lock if lock is not None else contextlib.nullcontext())


def _forked(target: Callable[[str], object], path: str, timeout: float, lock: ContextManager[object]) -> Outcome:
    read_end, write_end = os.pipe()
    try:
        # The lock, held across the fork, so that no other thread holds it in the child (the child's only
        # thread is this one, which may take it again); Python re-creates its own locks.
        with lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+ warns about fork with threads
            pid = os.fork()
            if pid == 0:
                _child(target, path, read_end, write_end)
    except OSError:  # no process to spare: read in-process, as without this module
        os.close(read_end)
        os.close(write_end)
        return "done"
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], timeout)
        answer = os.read(read_end, 1) if ready else None
    finally:
        os.close(read_end)
    if answer is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    if answer is None:
        return "timeout"
    return "done" if answer == b"1" else "crashed"


def _child(target: Callable[[str], object], path: str, read_end: int, write_end: int) -> None:
    """The child: no collection of the parent's garbage (it could close the parent's files), no exit handlers."""
    try:
        gc.disable()
        os.close(read_end)
        faulthandler.disable()  # the parent reports a crash; the child says nothing on the parent's terminal
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        with contextlib.suppress(BaseException):
            target(path)
        os.write(write_end, b"1")
    finally:
        os._exit(0)
