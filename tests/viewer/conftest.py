"""Real traces for the viewer tests, made once per session with the real samplers and exact Gaussian oracles.

- 2-D point clouds: DDPM (T = 50, 50 steps) and DDIM (10 steps) from the same x_T.
- 1x8x8 images: DDPM, DDIM, and DDIM with classifier-free guidance (s = 3, two classes).
- three sampler families from the same x_T (families/): DDIM 50, Heun 25 (sigma space) and flow Euler 50 (a flow
  schedule and the exact Gaussian velocity of the same data), for Compare by noise level.
- a training trace written with TraceWriter in the layout of tracer/training.py.
- bad files: corrupt bytes, a foreign HDF5 file, a truncated trace.
Everything lives under one folder, the allowed root the app is started with.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tracer.samplers.config import SamplerConfig
from tracer.models.analytic import GaussianOracle, GaussianVelocity
from tracer.recording import record_run
from tracer.samplers.loop import initial_noise
from tracer.schedules import make_schedule
from tracer.trace import schema
from tracer.trace.writer import Series, TraceWriter

T = 50
BATCH = 12


@dataclass(frozen=True)
class Traces:
    root: Path
    points_ddpm: Path
    points_ddim: Path
    images_ddpm: Path
    images_ddim: Path
    images_guided: Path
    family_ddim: Path
    family_heun: Path
    family_flow: Path
    training: Path
    corrupt: Path
    foreign: Path
    truncated: Path

    def name(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def image_means(k: int) -> torch.Tensor:
    """k simple 8x8 patterns in [-1, 1]: a ring, a bar, ... (means of the oracle's classes)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="ij")
    patterns = [
        torch.where((xx**2 + yy**2 - 0.5).abs() < 0.25, 0.9, -0.9),
        torch.where(xx.abs() < 0.3, 0.9, -0.9),
        torch.where(yy.abs() < 0.3, 0.9, -0.9),
    ]
    return torch.stack(patterns[:k]).unsqueeze(1).to(torch.float64)  # [k, 1, 8, 8]


def sample_trace(path: Path, model: GaussianOracle | GaussianVelocity, config: SamplerConfig, shape: tuple[int, ...], labels: torch.Tensor | None = None,
                 seed: int = 0, schedule_name: str = "linear") -> Path:
    """A trace of ``model`` from x_T = initial_noise of ``seed`` (the same x_T for every trace of one seed and shape)."""
    schedule = make_schedule(schedule_name, T)
    generator = torch.Generator().manual_seed(seed)
    x_T = initial_noise((BATCH, *shape), generator=generator)  # noqa: N806
    record_run(model, schedule, config, x_T=x_T, labels=labels, generator=generator, out=path, progress=False, extra_config={"seed": seed})
    return path


def training_trace(path: Path) -> Path:
    """A small training trace: 30 logged rows, 4 snapshots of 6 samples, 5 worked examples with x_t from Eq. 4."""
    schedule = make_schedule("linear", T)
    rng = np.random.default_rng(0)
    shape = (1, 8, 8)
    buckets = 4
    edges = [math.ceil(k * T / buckets) for k in range(buckets + 1)]
    series = [
        Series(schema.TRAIN, {"step": ((), "int64"), "epoch": ((), "int64"), "loss": ((), "float64"), "lr": ((), "float64"),
                              "grad_norm": ((), "float64"), "loss_by_bucket": ((buckets,), "float64")}, planned=30),
        Series(schema.SNAPSHOTS, {"step": ((), "int64"), "samples": ((6, *shape), schema.TENSOR)}, planned=4),
        Series(schema.EXAMPLES, {"x0": (shape, schema.TENSOR), "label": ((), "int64"), "t": ((), "int64"), "eps": (shape, schema.TENSOR),
                                 "x_t": (shape, schema.TENSOR), "eps_pred": (shape, schema.TENSOR), "loss": ((), "float64")}, planned=5),
    ]
    with TraceWriter(path, kind="training", config={"train": {"steps": 300}}, series=series, schedule=schedule,
                     attrs={"loss_bucket_edges": edges}) as w:
        for k in range(30):
            step = 10 * (k + 1)
            loss = 1.0 / (1 + 0.05 * step)
            w.append(schema.TRAIN, {"step": step, "epoch": k // 10, "loss": loss, "lr": 1e-3, "grad_norm": 1.0,
                                    "loss_by_bucket": loss * np.array([2.0, 1.2, 0.8, 0.5])})
        for k in range(4):
            w.append(schema.SNAPSHOTS, {"step": 100 * k, "samples": rng.uniform(-1, 1, (6, *shape))})
        for k in range(5):
            x0 = image_means(3)[k % 3].numpy()
            eps = rng.standard_normal(shape)
            t = 10 * k + 5
            ab = schedule.alpha_bar[t]
            x_t = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps  # Eq. 4
            eps32, pred32 = eps.astype(np.float32), (0.9 * eps).astype(np.float32)  # as stored
            loss = float(np.mean((pred32.astype(np.float64) - eps32.astype(np.float64)) ** 2))  # Eq. 14 per example
            w.append(schema.EXAMPLES, {"x0": x0, "label": -1, "t": t, "eps": eps32, "x_t": x_t, "eps_pred": pred32, "loss": loss})
    return path


@pytest.fixture(scope="session")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Traces:
    root = tmp_path_factory.mktemp("traces")
    schedule = make_schedule("linear", T)
    points = GaussianOracle(schedule, torch.tensor([0.5, -0.3]), 0.4)
    images = GaussianOracle(schedule, image_means(1)[0], 0.3)
    classes = GaussianOracle(schedule, image_means(2), 0.3, per_class=True)
    labels = torch.tensor([k % 2 for k in range(BATCH)])
    (root / "sweep").mkdir()
    (root / "families").mkdir()
    made = Traces(
        root=root,
        points_ddpm=sample_trace(root / "points_ddpm.h5", points, SamplerConfig(sampler="ddpm"), (2,)),
        points_ddim=sample_trace(root / "points_ddim.h5", points, SamplerConfig(sampler="ddim", steps=10), (2,)),
        images_ddpm=sample_trace(root / "images_ddpm.h5", images, SamplerConfig(sampler="ddpm"), (1, 8, 8)),
        images_ddim=sample_trace(root / "images_ddim.h5", images, SamplerConfig(sampler="ddim", steps=10), (1, 8, 8)),
        images_guided=sample_trace(root / "sweep" / "guided_s3.h5", classes, SamplerConfig(sampler="ddim", steps=10, guidance=3.0), (1, 8, 8), labels),
        family_ddim=sample_trace(root / "families" / "ddim50.h5", images, SamplerConfig(sampler="ddim", steps=50), (1, 8, 8)),
        family_heun=sample_trace(root / "families" / "heun25.h5", images, SamplerConfig(sampler="heun", steps=25), (1, 8, 8)),
        family_flow=sample_trace(root / "families" / "flow_euler50.h5", GaussianVelocity(image_means(1)[0], 0.3, T=T),
                                 SamplerConfig(sampler="flow_euler", steps=50), (1, 8, 8), schedule_name="flow"),
        training=training_trace(root / "train.h5"),
        corrupt=root / "zz_corrupt.h5",
        foreign=root / "zz_foreign.h5",
        truncated=root / "zz_truncated.h5",
    )
    made.corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    with h5py.File(made.foreign, "w") as f:
        f["data"] = np.arange(10)
    shutil.copy(made.images_ddim, made.truncated)
    with open(made.truncated, "r+b") as f:
        f.truncate(made.truncated.stat().st_size // 3)
    return made


def player_step(at, trace_name: str, step: int):  # noqa: ANN001, ANN201 - an AppTest, returned run
    """What the browser player does on pause or scrub: send ``{step, seq}`` as its value (a fresh seq each time); runs ``at``."""
    key = f"step:{trace_name}.player"
    previous = at.session_state[key] if key in at.session_state else None
    seq = (previous or {}).get("seq", 0) + 1
    at.session_state[key] = {"step": step, "seq": seq}
    return at.run()


def no_failures(at) -> None:  # noqa: ANN001 - an AppTest
    """The app ran without an exception or an st.error; else the assertion names them."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
