"""A real sampling run in its own process, slowed down, for kill and live-reading tests.

Usage: python -m tests.fuzz.writer PATH STEPS DELAY_S

DDIM (eta 0.5) with an exact Gaussian model, batch 2 of 2-D points, over a linear schedule
of T = 5 * STEPS (at least 25). It prints ``step i`` once step i is committed (when the
trace writer asks for the next record) and then sleeps DELAY_S; ``done`` at the end. Unlike
tests/trace/writer_process.py its traces follow every equation, so ``noisescope check``
on a killed one fails nothing: only the status says it is incomplete.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any


def slowed(records: Iterable[Any], delay: float) -> Iterator[Any]:
    for record in records:
        yield record
        print(f"step {record.index}", flush=True)  # reached when the writer asks for the next record
        time.sleep(delay)


def main(path: str, steps: int, delay: float) -> None:
    import torch

    from tracer.models.analytic import GaussianOracle
    from tracer.samplers.config import SamplerConfig
    from tracer.samplers.loop import sample
    from tracer.schedules import make_schedule
    from tracer.trace.sampling import record_sampling

    schedule = make_schedule("linear", max(25, 5 * steps))
    config = SamplerConfig(sampler="ddim", steps=steps, eta=0.5)
    model = GaussianOracle(schedule, torch.tensor([0.5, -0.3]), 0.4)
    generator = torch.Generator().manual_seed(0)
    x_T = torch.randn(2, 2, generator=generator)  # noqa: N806
    with torch.no_grad():
        records = sample(model, schedule, config, x_T=x_T, labels=None, generator=generator)
        record_sampling(slowed(records, delay), path, schedule=schedule, config={"sampler": config.resolved(schedule.T)},
                        planned=steps, labels=None, attrs={"sampler": "ddim"})
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
