"""Sample quality of the trained models (issue 3, point 5): measured here, never asserted in tests.

- digits: the demo's model (the default U-Net, trained with the default settings on the training
  split) samples with the demo's guided sampler (DDIM, 50 steps, eta 0) at guidance 0, 1, 3 and 5,
  20 samples of every class from one shared x_T. A support-vector classifier trained on the
  held-out split of the digits (which the diffusion model never saw) labels them; the share that
  carries the asked label is reported per scale, beside the classifier's own accuracy on real
  digits it never saw (the training split).
- 2-D: for each toy set, an MLP trained with the defaults samples 4,000 points with DDPM (all T
  steps) and with DDIM (50 steps, eta 0); the sliced Wasserstein-2 distance of each to fresh
  draws of the data (the mean over three draws) is reported beside the distance between
  independent draws of the data, which is what a perfect sampler would score: it is not zero,
  because two finite draws differ (for gaussians8 mostly in how many points each of the eight
  components gets; the samples, asked for every component equally often, differ less there).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Ratio
from tracer.cli.demo import DDIM_STEPS, demo_runs
from tracer.config import DataConfig, ModelConfig, TrainConfig
from tracer.samplers.config import SamplerConfig
from tracer.data import load_dataset
from tracer.models import num_classes
from tracer.recording import record_run
from tracer.samplers.loop import initial_noise, sample
from tracer.training import load_training_data, train

PER_CLASS = 20
POINTS = 4000
REFERENCE_DRAWS = (101, 102, 103)
TOYS = ("moons", "gaussians8", "swissroll", "checkerboard")
_REPORT: list[str] = []


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: int = 512, seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance between two equal-size point clouds: sqrt of the mean over random
    unit directions of the 1-D W2^2, which for equal sizes is the mean squared gap of the sorted projections."""
    assert a.shape == b.shape
    theta = np.random.default_rng(seed).standard_normal((a.shape[1], directions))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    pa, pb = np.sort(a @ theta, axis=0), np.sort(b @ theta, axis=0)
    return float(np.sqrt(np.mean((pa - pb) ** 2)))


def digits_guidance(workdir: Path, quick: bool) -> list[str]:
    from sklearn.svm import SVC

    data = DataConfig("digits", seed=0)
    result = train(workdir / "digits", data=data, model=ModelConfig("unet"), config=TrainConfig(steps=300 if quick else None, seed=0),
                   overwrite=True, progress=True)
    train_split, held_out = load_training_data(data)
    classifier = SVC(gamma="scale").fit(held_out.x.flatten(1).numpy(), held_out.labels.numpy())
    own = float(np.mean(classifier.predict(train_split.x.flatten(1).numpy()) == train_split.labels.numpy()))
    classes = num_classes(result.model)
    labels = torch.arange(PER_CLASS * classes) % classes
    x_T = initial_noise((len(labels), *train_split.shape), generator=torch.Generator().manual_seed(0))  # noqa: N806
    lines = [
        f"Digits, guided samples labelled by an SVC trained on the {len(held_out)} held-out digits "
        f"(its accuracy on the {len(train_split)} training digits it never saw: **{own:.3f}**). "
        f"Model: default U-Net, {result.steps} steps in {result.seconds:.0f} s; sampler: DDIM {DDIM_STEPS} steps, eta 0, "
        f"{PER_CLASS} samples of each class from one x_T.",
        "",
        "| guidance s | samples | carry the asked label |",
        "|---|---|---|",
    ]
    for demo in demo_runs():
        if demo.config.guidance is None:
            continue
        samples = record_run(result.model, result.schedule, demo.config, x_T=x_T, labels=labels, generator=torch.Generator().manual_seed(1),
                             out=workdir / demo.file, overwrite=True, progress=False)
        predicted = classifier.predict(samples.flatten(1).numpy())
        lines.append(f"| {demo.config.guidance:g} | {len(labels)} | {np.mean(predicted == labels.numpy()):.3f} |")
    return lines


def final_points(model: torch.nn.Module, schedule: object, config: SamplerConfig, x_T: torch.Tensor,  # noqa: N803
                 labels: torch.Tensor | None) -> np.ndarray:
    last = None
    with torch.no_grad():
        for last in sample(model, schedule, config, x_T=x_T, labels=labels, generator=torch.Generator().manual_seed(1)):  # type: ignore[arg-type]
            pass
    assert last is not None
    return last.x_prev.numpy().astype(np.float64)


def toy_inputs(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed x_T (seed 0) of POINTS 2-D points, and labels cycling through the model's classes (None without classes)."""
    classes = num_classes(model)
    labels = torch.arange(POINTS) % classes if classes else None
    return initial_noise((POINTS, 2), generator=torch.Generator().manual_seed(0)), labels


def reference_draws(name: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Fresh draws of the toy set ``name`` to measure samples against (REFERENCE_DRAWS), and one more independent draw of
    the same size (seed 100), whose distance to them is the floor a perfect sampler would reach."""
    draws = [load_dataset(name, seed=seed, size=POINTS).x.numpy().astype(np.float64) for seed in REFERENCE_DRAWS]
    return draws, load_dataset(name, seed=100, size=POINTS).x.numpy().astype(np.float64)


def distance_to(points: np.ndarray, draws: list[np.ndarray]) -> float:
    """The mean sliced W2 of ``points`` to each of ``draws``."""
    return float(np.mean([sliced_wasserstein(points, draw) for draw in draws]))


def toy_distances(workdir: Path, quick: bool) -> list[str]:
    lines = [
        f"2-D toys, sliced Wasserstein-2 distance to fresh draws of {POINTS} data points "
        f"(512 directions, mean over {len(REFERENCE_DRAWS)} draws; lower is better, data vs data is the floor):",
        "",
        "| data set | training | DDPM (all T) vs data | DDIM 50, eta 0 vs data | data vs data |",
        "|---|---|---|---|---|",
    ]
    for name in TOYS:
        result = train(workdir / name, data=DataConfig(name, seed=0), model=ModelConfig("mlp"),
                       config=TrainConfig(steps=300 if quick else None, seed=0), overwrite=True, progress=True)
        draws, other = reference_draws(name)
        x_T, labels = toy_inputs(result.model)  # noqa: N806
        ddpm = final_points(result.model, result.schedule, SamplerConfig(sampler="ddpm"), x_T, labels)
        ddim = final_points(result.model, result.schedule, SamplerConfig(sampler="ddim", steps=DDIM_STEPS, eta=0.0), x_T, labels)
        lines.append(f"| {name} | {result.steps} steps, {result.seconds:.0f} s | {distance_to(ddpm, draws):.4f} | "
                     f"{distance_to(ddim, draws):.4f} | {distance_to(other, draws):.4f} |")
    return lines


def run(quick: bool = False) -> list[Ratio]:
    with tempfile.TemporaryDirectory(prefix="noisescope-quality-", dir=os.environ.get("NOISESCOPE_BENCH_DIR")) as tmp:
        start = time.perf_counter()
        _REPORT.extend(["", *digits_guidance(Path(tmp), quick), "", *toy_distances(Path(tmp), quick)])
        _REPORT.append(f"\n(bench_quality wall time: {time.perf_counter() - start:.0f} s{', --quick: 300 training steps' if quick else ''})")
    return []


def report() -> list[str]:
    return _REPORT
