"""One rank of sampling runs split across gloo processes (tracer/sharding.py), for tests/test_distributed_sampling.py.

Usage: python -m tests.sharded_run RANK WORLD RENDEZVOUS JOBS [BACKEND DEVICE]

Joins a group of WORLD processes at the file RENDEZVOUS (BACKEND gloo, the default, or nccl: one GPU a rank; DEVICE
cpu, the default, or cuda: where the networks and the sampling run) and runs the jobs of the JSON file JOBS in order, each
``{"case": NAME, "out": PATH, "fault": null or {"rank": R, "step": S, "how": HOW}}``: ``record_sharded`` of the case
into PATH. A fault makes rank R's network fail at its call of step S (one call a step: the unguided DDIM cases):
HOW ``raise`` raises RuntimeError, ``exit`` ends the process at once (os._exit, no word to the others). Writes what
each job ended with to JOBS.rankR.json: null, or [the error's type, its message].

The cases are built here for the workers and for the test's single-process references alike.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from tracer.config import ModelConfig
from tracer.models.analytic import GaussianOracle, GaussianVelocity
from tracer.models.registry import build_model
from tracer.samplers.config import SamplerConfig
from tracer.samplers.loop import initial_noise
from tracer.schedules import Schedule, make_schedule

SEED = 0


@dataclass(frozen=True)
class Case:
    """A network, its schedule, a sampler's config, the batch and its labels."""

    network: str  # oracle, class-oracle, velocity or mlp
    config: SamplerConfig
    batch: int
    labels: tuple[int, ...] | None = None


CASES = {
    "ddim-eta0": Case("oracle", SamplerConfig("ddim", steps=10, eta=0.0), 6),
    "ddim-eta1": Case("oracle", SamplerConfig("ddim", steps=10, eta=1.0), 6),
    "ddpm-batch5": Case("oracle", SamplerConfig("ddpm"), 5),
    "guided-batch5": Case("class-oracle", SamplerConfig("ddim", steps=10, eta=1.0, guidance=3.0), 5, (0, 1, 1, 0, 1)),
    "euler-ancestral-batch5": Case("oracle", SamplerConfig("euler_ancestral", steps=10), 5),
    "flow-heun-batch5": Case("velocity", SamplerConfig("flow_heun", steps=6), 5),
    "mlp-ddim-eta1-batch5": Case("mlp", SamplerConfig("ddim", steps=10, eta=1.0), 5),
}


def network(case: Case) -> tuple[Any, Schedule]:
    """The case's network (closed-form Gaussian oracles, or an MLP with seeded random weights) and schedule."""
    if case.network == "velocity":
        return GaussianVelocity(torch.tensor([0.5, -0.3]), 0.4), make_schedule("flow")
    schedule = make_schedule("linear", 50)
    if case.network == "oracle":
        return GaussianOracle(schedule, torch.tensor([0.5, -0.3]), 0.4), schedule
    if case.network == "class-oracle":
        return GaussianOracle(schedule, torch.tensor([[0.6, 0.4], [-0.5, -0.2]]), 0.2, per_class=True), schedule
    torch.manual_seed(SEED)
    return build_model(ModelConfig("mlp", (2,), 0, (32, 32))).eval(), schedule


def inputs(case: Case, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None, torch.Generator]:
    """x_T, the labels and the generator as ``noisescope sample`` makes them from the seed (the same on every rank)."""
    generator = torch.Generator(device=device).manual_seed(SEED)
    x_T = initial_noise((case.batch, 2), generator=generator, device=device)  # noqa: N806
    labels = None if case.labels is None else torch.tensor(case.labels, dtype=torch.int64, device=device)
    return x_T, labels, generator


def fail_at(model: torch.nn.Module, step: int, how: str) -> None:
    """Make ``model`` fail at its call number ``step`` (0-based)."""
    calls = [0]

    def hook(module: Any, args: Any) -> None:
        calls[0] += 1
        if calls[0] == step + 1:
            if how == "exit":
                os._exit(3)
            raise RuntimeError(f"injected failure at step {step}")

    model.register_forward_pre_hook(hook)


def main(rank: int, world: int, rendezvous: str, jobs_path: str, backend: str = "gloo", device: str = "cpu") -> None:
    import torch.distributed as dist

    from tracer.sharding import record_sharded

    torch.set_num_threads(1)
    if device == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())  # NCCL: one GPU a rank; "cuda" below is this one
    dist.init_process_group(backend, init_method=f"file://{rendezvous}", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    results: list[Any] = []
    try:
        with open(jobs_path) as f:
            jobs = json.load(f)
        for job in jobs:
            case = CASES[job["case"]]
            model, schedule = network(case)
            model = model.to(device)
            fault = job.get("fault")
            if fault is not None and fault["rank"] == rank:
                fail_at(model, fault["step"], fault["how"])
            x_T, labels, generator = inputs(case, device)  # noqa: N806
            try:
                record_sharded(model, schedule, case.config, x_T=x_T, labels=labels, generator=generator, out=job["out"],
                               progress=False)
                results.append(None)
            except Exception as error:  # noqa: BLE001 - the test reads what each rank ended with
                results.append([type(error).__name__, str(error)])
            with open(f"{jobs_path}.rank{rank}.json", "w") as f:
                json.dump(results, f)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:])
