"""tracer/interrupts.py with real signals (signal.raise_signal, delivered to this process's main thread)."""

from __future__ import annotations

import signal
import threading

import pytest

from tracer.interrupts import Terminated, sigterm_raises, whole


def test_a_ctrl_c_inside_whole_is_raised_when_the_block_ends() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with whole():
            signal.raise_signal(signal.SIGINT)
            done.append("the rest of the block")
    assert done == ["the rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_sigterm_inside_whole_is_terminated_at_its_end_and_each_signal_is_delivered_once() -> None:
    done = []
    with sigterm_raises():
        with pytest.raises(Terminated):
            with whole():
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)
                done.append("the rest of the block")
        assert done == ["the rest of the block"]  # and one Terminated: a second would have escaped pytest.raises
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with whole():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_nothing_changes() -> None:
    seen = []

    def other() -> None:
        with whole(), sigterm_raises():
            seen.append((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen == [(signal.default_int_handler, signal.SIG_DFL)]
