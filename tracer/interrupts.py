"""Signals that stop a run: SIGTERM raised as an exception, and optimizer steps that no signal cuts in two.

- ``Terminated``: SIGTERM (``kill``, a job scheduler's time limit, torchrun's agent stopping the other ranks when one
  dies), raised in the main thread while ``sigterm_raises()`` is active, as Python raises KeyboardInterrupt on SIGINT.
  A run then ends through its writers' exits, which mark the trace failed and keep every committed step; without it
  the process died at once and left its trace saying "running".
- ``whole()``: SIGINT and SIGTERM that arrive inside the block take effect at its end. Training runs each optimizer
  step in one, so a Ctrl-C never lands between the update of the weights and that of the step counter, the EMA or the
  random state, and the state saved on Ctrl-C is one that ``--resume`` continues from exactly.

Both act in the main thread only (Python runs signal handlers there); elsewhere they change nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(BaseException):  # noqa: N818 - a signal, as KeyboardInterrupt is one
    """SIGTERM, raised in the main thread while ``sigterm_raises`` is active."""


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` while the block runs."""
    if not _main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def whole() -> Iterator[None]:
    """SIGINT and SIGTERM received inside the block are held and delivered again when it ends (each once, in the order
    they came), to the handlers that were in place before it; a signal that was ignored stays ignored."""
    if not _main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is not None and handler is not signal.SIG_IGN:  # None: set outside Python, which cannot put it back
            previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)  # the handler put back runs now: KeyboardInterrupt, Terminated, or the default action
