"""A training trace written slowly in its own process, for the viewer's live test.

Usage: python -m tests.viewer.live_training_writer PATH ROWS DELAY_S
Appends ROWS train rows (a snapshot every 5), printing "row i" once row i is committed; DELAY_S "gate" waits
for a line on stdin after each row instead (see tests/trace/writer_process.py).
"""

from __future__ import annotations

import sys
import numpy as np

from tests.trace.writer_process import pause
from tracer.schedules import make_schedule
from tracer.trace import schema
from tracer.trace.writer import Series, TraceWriter

if __name__ == "__main__":
    path, rows, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    series = [
        Series(schema.TRAIN, {"step": ((), "int64"), "loss": ((), "float64"), "loss_by_bucket": ((2,), "float64")}, planned=rows),
        Series(schema.SNAPSHOTS, {"step": ((), "int64"), "samples": ((4, 1, 4, 4), schema.TENSOR)}, planned=rows // 5 + 1),
    ]
    rng = np.random.default_rng(0)
    with TraceWriter(path, kind="training", config={}, series=series, schedule=make_schedule("linear", 50)) as w:
        for i in range(rows):
            w.append(schema.TRAIN, {"step": i + 1, "loss": 1.0 / (i + 1), "loss_by_bucket": [2.0 / (i + 1), 0.5 / (i + 1)]})
            if i % 5 == 0:
                w.append(schema.SNAPSHOTS, {"step": i + 1, "samples": rng.uniform(-1, 1, (4, 1, 4, 4))})
            print(f"row {i}", flush=True)
            pause(delay)
    print("done", flush=True)
