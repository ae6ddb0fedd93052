"""A training or sampling run in its own process that pauses at a named moment, so a test can SIGKILL it exactly there.

Usage: python -m tests.pausing_run train RUN_DIR MODE STEPS SEED MOMENT
       python -m tests.pausing_run sample PATH STEPS SEED MOMENT
MODE: fresh, overwrite or resume. MOMENT, where the run prints "paused" and sleeps:
  record:N        after the training row of step N is committed
  copy:K          after K old rows are copied into the new trace, before it replaces the old one (--resume)
  replace:NAME    just before the file NAME is replaced by its successor
  step:I          after sampling step I is committed (sample)
  none            never: the run ends and prints "done"
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from tracer.config import DataConfig, ModelConfig, ScheduleConfig, TrainConfig

DATA = DataConfig("moons", seed=0, size=256)
MODEL = ModelConfig("mlp", channels=(32, 32))
SCHEDULE = ScheduleConfig("linear", 100)
ROOT = Path(__file__).resolve().parents[1]


def config(steps: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(steps=steps, batch=32, log_every=10, snapshot_every=10, snapshot_batch=6, snapshot_steps=5,
                       examples=4, warmup=5, save_every=0, seed=seed)


def kill_at(module: str, args: Sequence[str], said: str) -> None:
    """Run ``python -m MODULE ARGS`` (this checkout's code) in a process of its own and SIGKILL it once it prints the
    line ``said``; AssertionError if it ends first."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == said:
                break
        else:
            raise AssertionError(f"python -m {module} ended before it said {said!r}: rc={proc.wait()}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def run_and_kill(*args: str) -> None:
    """Start this module with ``args`` in a process of its own, wait until it pauses, SIGKILL it."""
    kill_at("tests.pausing_run", args, "paused")


def pausing_at(moment: str) -> Any:
    def pause(here: str) -> None:
        if here == moment:
            print("paused", flush=True)
            time.sleep(600)

    return pause


def train(run_dir: Path, mode: str, steps: int, seed: int, moment: str) -> None:
    from tracer import atomic, training
    from tracer.trace.writer import TraceWriter

    pause = pausing_at(moment)
    record, append, replace = training._TraceSink.record, TraceWriter.append, atomic.replace

    def record_then_pause(self: Any, row: Any) -> None:
        record(self, row)
        pause(f"record:{row.step}")

    def append_then_pause(self: Any, series: str, row: Any) -> int:
        i = append(self, series, row)
        if mode == "resume" and series == "train" and self.file_path != self.path:
            pause(f"copy:{i + 1}")
        return i

    def pause_then_replace(partial: Path, path: Path) -> None:
        pause(f"replace:{path.name}")
        replace(partial, path)

    training._TraceSink.record = record_then_pause  # type: ignore[method-assign]
    TraceWriter.append = append_then_pause  # type: ignore[method-assign]
    atomic.replace = pause_then_replace
    training.train(run_dir, data=DATA, model=MODEL, schedule=SCHEDULE, config=config(steps, seed), progress=False,
                   resume=mode == "resume", overwrite=mode == "overwrite")


def sample(path: Path, steps: int, seed: int, moment: str) -> None:
    from tests.trace.synthetic import records
    from tracer.schedules import make_schedule
    from tracer.trace.sampling import record_sampling

    pause = pausing_at(moment)

    def paused() -> Any:
        for record in records(make_schedule("linear", 1000), steps, seed=seed):
            yield record
            pause(f"step:{record.index}")  # reached when the writer asks for the next record: this one is committed

    record_sampling(paused(), path, schedule=make_schedule("linear", 1000), config={}, planned=steps, labels=None, overwrite=True)


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        sample(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    print("done", flush=True)
