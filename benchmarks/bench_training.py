"""Training throughput with the training trace on / off (issue 3, point 5; target <= 1.05).

The same call, ``train()`` on digits with the default U-Net and default settings except the
length (300 steps: loss rows every 10 steps, snapshots at steps 0 and 250, the worked examples,
the checkpoint and resume state at the end), with ``trace=False`` (A) and ``trace=True`` (B),
interleaved (benchmarks/common.py). The seed is fixed, so A and B do the very same arithmetic.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks.common import Ratio, interleaved_ratio
from tracer.config import DataConfig, ModelConfig, TrainConfig
from tracer.training import train

_REPORT: list[str] = []


def run(quick: bool = False) -> list[Ratio]:
    steps = 60 if quick else 300
    config = TrainConfig(steps=steps, seed=0, save_every=0)
    with tempfile.TemporaryDirectory(prefix="noisescope-train-", dir=os.environ.get("NOISESCOPE_BENCH_DIR")) as tmp:

        def training(trace: bool) -> None:
            train(Path(tmp) / ("traced" if trace else "untraced"), data=DataConfig("digits"), model=ModelConfig("unet"), config=config,
                  trace=trace, overwrite=True, progress=False)

        result = interleaved_ratio(f"training throughput, digits, {steps} steps (trace on / off)", lambda: training(False),
                                   lambda: training(True), repeats=1 if quick else 3, target="<= 1.05", warmup=False)
    _REPORT.append(f"- training: {steps / result.seconds_a:.2f} steps/s without the trace, {steps / result.seconds_b:.2f} with it "
                   f"(mean of the runs, whole train() call)")
    return [result]


def report() -> list[str]:
    return ["", "Training benchmark, absolute numbers:", *_REPORT]
