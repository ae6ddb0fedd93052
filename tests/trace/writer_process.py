"""A trace writer in its own process, for crash and live-reading tests.

Usage: python -m tests.trace.writer_process PATH STEPS DELAY_S
Writes STEPS synthetic steps, sleeping DELAY_S after each, printing "step i" once step i is committed.
DELAY_S "gate": after each step, wait for a line on stdin instead (the test releases the steps one by one;
once stdin is closed, the writer runs to the end), so a test of a live trace depends on no machine's speed.
"""

from __future__ import annotations

import sys
import time

from tests.trace.synthetic import records
from tracer.schedules import make_schedule
from tracer.trace.sampling import record_sampling


GATE = "gate"


def pause(delay: str) -> None:
    """Sleep DELAY_S seconds, or with "gate" wait for the test's next line on stdin (none once stdin is closed)."""
    if delay == GATE:
        sys.stdin.readline()
    else:
        time.sleep(float(delay))


def slow(path_steps: int, delay: str):
    for record in records(make_schedule("linear", 1000), path_steps):
        yield record
        # Reached when the writer asks for the next record: the previous one is committed.
        print(f"step {record.index}", flush=True)
        pause(delay)


if __name__ == "__main__":
    path, steps, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    record_sampling(slow(steps, delay), path, schedule=make_schedule("linear", 1000), config={}, planned=steps, labels=None)
    print("done", flush=True)


def killed_writer(path, steps: int, delay: float, after: int) -> None:
    """Run this writer in a child process on ``path`` and SIGKILL it once step ``after`` is committed."""
    from tests.pausing_run import kill_at

    kill_at("tests.trace.writer_process", [str(path), str(steps), str(delay)], f"step {after}")
