"""Sample quality against network evaluations for the sampler families of current practice: measured, never asserted.

For each of two 2-D toy sets (moons, with its two classes, and the unlabelled checkerboard with its sharp edges) two
MLPs are trained the same way (bench_quality's toy setup: the default MLP, TrainConfig's defaults, seed 0) on the same
data, one per objective: a diffusion network predicting eps on the linear VP schedule, and a flow-matching network
predicting the velocity on the flow path. Each sampler then draws POINTS points from one fixed x_T (seed 0,
labels cycling through the classes, as bench_quality) within a budget of 10, 20 and 50 network evaluations (NFE); the
sliced Wasserstein-2 distance to fresh draws of the data (bench_quality's ``distance_to``) is reported beside the floor,
the distance between two independent draws of the data of the same size.

NFE is counted, not assumed: the network is wrapped with a counter and the table gives what each run called. Steps are
chosen as the most a sampler can take within the budget: one call a step for DDIM, Euler, DPM-Solver++(2M) and flow
Euler (N = NFE), 2 N - 1 for Heun, whose last step onto sigma = 0 is plain Euler (N = (NFE + 1) // 2), and 2 N for
flow Heun, which corrects its last step too (N = NFE // 2). Every sampler runs with its defaults otherwise (DDIM:
leading spacing, eta 0; the sigma-space samplers: Karras levels, rho 7, between the schedule's sigma_0 and
sigma_{T-1}; the flow samplers: the uniform time grid, shift 1). Two more rows separate DPM-Solver++(2M)'s solver from
its noise levels: DDIM with trailing spacing (its first step at t = T - 1, as the others start at the top) and
DPM-Solver++(2M) on DDIM's own leading timesteps (``sigma_schedule="schedule"``). A cell also counts the samples
that landed farther than FAR from the origin (the data lie within about 1 of it), where there are any: a few such
points dominate W2.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench_quality import distance_to, final_points, reference_draws, toy_inputs
from benchmarks.common import Ratio
from tracer.config import DataConfig, ModelConfig, ScheduleConfig, TrainConfig
from tracer.samplers.config import SamplerConfig
from tracer.training import TrainResult, train

TOYS = ("moons", "checkerboard")
BUDGETS = (10, 20, 50)
FAR = 3.0
_REPORT: list[str] = []


@dataclass(frozen=True)
class Row:
    """One sampler of the table: its label, the network it samples, how many steps fit a budget, and its options."""

    label: str
    sampler: str
    objective: str  # "diffusion" or "flow": which of the two networks
    steps_for: Any  # NFE budget -> steps
    options: tuple[tuple[str, Any], ...] = ()


def one_call(nfe: int) -> int:
    return nfe


ROWS = (
    Row("DDIM (eta 0, leading)", "ddim", "diffusion", one_call),
    Row("Euler (Karras levels)", "euler", "diffusion", one_call),
    Row("Heun (Karras levels)", "heun", "diffusion", lambda nfe: (nfe + 1) // 2),  # 2 N - 1 calls
    Row("DPM-Solver++(2M) (Karras levels)", "dpmpp_2m", "diffusion", one_call),
    Row("flow Euler (uniform grid)", "flow_euler", "flow", one_call),
    Row("flow Heun (uniform grid)", "flow_heun", "flow", lambda nfe: nfe // 2),  # 2 N calls
    Row("DDIM (eta 0, trailing)", "ddim", "diffusion", one_call, (("spacing", "trailing"),)),
    Row("DPM-Solver++(2M) on DDIM's leading timesteps", "dpmpp_2m", "diffusion", one_call, (("sigma_schedule", "schedule"),)),
)


class CountingModel:
    """The network with a count of its calls: the NFE a sampler actually spends. Everything else is read through."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # num_classes, null_label, prediction, objective
        return getattr(self.model, name)


def train_pair(workdir: Path, toy: str, quick: bool) -> dict[str, TrainResult]:
    """The two networks, trained the same way on the same data (bench_quality's toy setup), one per objective."""
    config = TrainConfig(steps=300 if quick else None, seed=0)
    data = DataConfig(toy, seed=0)
    return {
        "diffusion": train(workdir / "diffusion", data=data, model=ModelConfig("mlp"), config=config, overwrite=True, progress=True),
        "flow": train(workdir / "flow", data=data, model=ModelConfig("mlp", prediction="v", objective="flow"),
                      schedule=ScheduleConfig("flow"), config=config, overwrite=True, progress=True),
    }


def far(points: np.ndarray) -> int:
    """How many samples lie farther than FAR from the origin (every toy set lies within about 1 of it)."""
    return int(np.sum(np.linalg.norm(points, axis=1) > FAR))


def quality_table(workdir: Path, toy: str, quick: bool) -> list[str]:
    models = train_pair(workdir / toy, toy, quick)
    draws, other = reference_draws(toy)
    floor = distance_to(other, draws)
    x_T, labels = toy_inputs(models["diffusion"].model)  # noqa: N806  (both networks have the same classes)
    budgets = " / ".join(str(b) for b in BUDGETS)
    lines = [
        f"**{toy}**, {len(x_T)} points from one x_T; sliced W2 to fresh draws of the data (512 directions, mean over "
        f"{len(draws)} draws; lower is better). Data vs data (the floor): **{floor:.4f}**. Networks: the default MLP, "
        + ", ".join(f"{name} {r.steps} steps in {r.seconds:.0f} s (final loss {r.loss:.3f})" for name, r in models.items())
        + f". Load average at the start: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        f"| sampler | network | steps at NFE {budgets} | NFE counted | " + " | ".join(f"W2 at NFE {b}" for b in BUDGETS) + " |",
        "|---|---|---|---|" + "---|" * len(BUDGETS),
    ]
    for row in ROWS:
        result = models[row.objective]
        steps, counted, distances = [], [], []
        for budget in BUDGETS:
            n = row.steps_for(budget)
            counter = CountingModel(result.model)
            points = final_points(counter, result.schedule, SamplerConfig(row.sampler, steps=n, **dict(row.options)),  # type: ignore[arg-type]
                                  x_T, labels)
            steps.append(n)
            counted.append(counter.calls)
            outliers = far(points)
            distances.append(f"{distance_to(points, draws):.4f}" + (f" ({outliers} beyond {FAR:g})" if outliers else ""))
        lines.append(f"| {row.label} | {row.objective} | {' / '.join(map(str, steps))} | {' / '.join(map(str, counted))} | "
                     + " | ".join(distances) + " |")
    return lines


def run(quick: bool = False) -> list[Ratio]:
    with tempfile.TemporaryDirectory(prefix="noisescope-samplers-", dir=os.environ.get("NOISESCOPE_BENCH_DIR")) as tmp:
        start = time.perf_counter()
        _REPORT.extend(["", "Sample quality against network evaluations (bench_samplers):"])
        for toy in TOYS:
            _REPORT.extend(["", *quality_table(Path(tmp), toy, quick)])
        _REPORT.append(f"\n(bench_samplers wall time: {time.perf_counter() - start:.0f} s{', --quick: 300 training steps' if quick else ''}; "
                       f"load average at the end: {'/'.join(f'{x:.2f}' for x in os.getloadavg())})")
    return []


def report() -> list[str]:
    return _REPORT
