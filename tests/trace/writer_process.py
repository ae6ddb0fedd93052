"""A trace writer in its own process, for crash and live-reading tests.

Usage: python -m tests.trace.writer_process PATH STEPS DELAY_S
Writes STEPS synthetic steps, sleeping DELAY_S after each, printing "step i" once step i is committed.
"""

from __future__ import annotations

import sys
import time

from tests.trace.synthetic import records
from tracer.schedules import make_schedule
from tracer.trace.sampling import record_sampling


def slow(path_steps: int, delay: float):
    for record in records(make_schedule("linear", 1000), path_steps):
        yield record
        # Reached when the writer asks for the next record: the previous one is committed.
        print(f"step {record.index}", flush=True)
        time.sleep(delay)


if __name__ == "__main__":
    path, steps, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    record_sampling(slow(steps, delay), path, schedule=make_schedule("linear", 1000), config={}, planned=steps, labels=None)
    print("done", flush=True)
