"""The clean traces every mutant starts from, built once per session into one directory.

``build_bases(dir)`` writes, and returns by name, a handful of tiny real traces:

- ``ddpm``: DDPM, all 10 steps of a T = 10 schedule, batch 2 of 2-D points, an exact Gaussian model;
- ``ddim``: DDIM, 10 of T = 50 steps, eta 0.5, float16 tensors;
- ``guided``: DDIM with classifier-free guidance (scale 3) of a two-class Gaussian model;
- ``vpred``: DDIM (trailing, eta 0.5) of a two-class v-predicting Gaussian model on a zero-terminal-SNR
  schedule, guided at scale 3 with rescale 0.7 (model_output, its two branches and model_output_cfg);
- ``synthetic``: ``tests/trace/synthetic.py`` records (batch 2 of 1x4x4) through ``record_sampling``;
- ``training``: a 12-step ``tracer.training`` run on moons with a small MLP (its train.h5);
- ``killed``: a DDIM writer in its own process (tests/fuzz/writer.py) SIGKILLed after step 4 of 10;
- ``live``: a byte copy of a file whose writer is still running (taken after step 1 of 10),
  what a backup or a reader's copy of a live trace holds.

Every base is deterministic up to timestamps (the writer is killed while it sleeps between
steps), so a seed and a mutant index name the same damage run after run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parents[2]

BASE_NAMES = ("ddpm", "ddim", "guided", "vpred", "synthetic", "training", "killed", "live")


@dataclass(frozen=True)
class Base:
    """One clean trace and what mutations need to know about its bytes."""

    name: str
    path: Path
    size: int
    data_ranges: tuple[tuple[int, int], ...]  # (offset, length) of every allocated chunk or contiguous dataset
    datasets: tuple[str, ...]  # every dataset path in the file
    groups: tuple[str, ...]  # every group path (root excluded)
    offsets: dict[str, int]  # file offset of every contiguous dataset (status, progress/*, schedule/*)
    # Where the committed values live: per chunked dataset, (first row, byte offset, bytes) of each chunk
    # holding committed rows, its item size, and the rows committed per series (progress/<series>).
    chunks: dict[str, list[tuple[int, int, int]]]
    itemsizes: dict[str, int]
    committed: dict[str, int]
    # Committed steps (but the last) whose sigma is not 0: the only rows whose noise an equation reads (sigma z)
    noise_rows: tuple[int, ...] = ()


def _sampling(path: Path, sampler: str, *, guided: bool = False, dtype: str = "float32", prediction: str = "eps") -> None:
    import torch

    from tracer.samplers.config import SamplerConfig
    from tracer.models.analytic import GaussianOracle
    from tracer.recording import record_run
    from tracer.schedules import make_schedule

    zero_snr = prediction == "v"
    if sampler == "ddpm":
        schedule = make_schedule("cosine", 10)
        config = SamplerConfig(sampler="ddpm")
    elif zero_snr:
        schedule = make_schedule("linear", 50, zero_terminal_snr=True)
        config = SamplerConfig(sampler="ddim", steps=10, eta=0.5, spacing="trailing", guidance=3.0, guidance_rescale=0.7)
    else:
        schedule = make_schedule("linear", 50)
        config = SamplerConfig(sampler="ddim", steps=10, eta=0.5, guidance=3.0 if guided else None)
    if guided:
        model = GaussianOracle(schedule, torch.tensor([[0.6, 0.4], [-0.5, -0.2]]), 0.2, per_class=True, prediction=prediction)
        labels: torch.Tensor | None = torch.tensor([0, 1])
    else:
        model = GaussianOracle(schedule, torch.tensor([0.5, -0.3]), 0.4)
        labels = None
    generator = torch.Generator().manual_seed(0)
    x_T = torch.randn(2, 2, generator=generator, dtype=torch.float32)  # noqa: N806
    schedule_config = {"name": schedule.name, "timesteps": schedule.T, "zero_terminal_snr": zero_snr}
    record_run(model, schedule, config, x_T=x_T, labels=labels, generator=generator, out=path,
               tensor_dtype=dtype, progress=False, extra_config={"seed": 0, "batch": 2, "schedule": schedule_config})


def _synthetic(path: Path) -> None:
    from tests.trace.synthetic import records
    from tracer.schedules import make_schedule
    from tracer.trace.sampling import record_sampling

    schedule = make_schedule("linear", 40)
    record_sampling(records(schedule, 10, batch=2), path, schedule=schedule, config={}, planned=10, labels=None)


def _training(path: Path) -> None:
    from tracer.config import DataConfig, ModelConfig, ScheduleConfig, TrainConfig
    from tracer.training import train

    run_dir = path.parent / "training-run"
    config = TrainConfig(steps=12, batch=16, log_every=4, snapshot_every=6, snapshot_batch=2, snapshot_steps=3,
                         examples=2, warmup=2, save_every=0)
    train(run_dir, data=DataConfig("moons", seed=0, size=64), model=ModelConfig("mlp", channels=(8,)),
          schedule=ScheduleConfig("linear", 30), config=config, progress=False)
    shutil.copyfile(run_dir / "train.h5", path)


def start_writer(path: Path, steps: int, delay: float) -> subprocess.Popen[str]:
    """tests/fuzz/writer.py in its own process; it prints 'step i' once step i is committed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.fuzz.writer", str(path), str(steps), str(delay)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def wait_for_line(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdout is not None
    for got in proc.stdout:
        if got.strip() == line:
            return
    raise RuntimeError(f"writer ended before printing {line!r}: rc={proc.wait()}")


def _killed(path: Path, after: int, *, keep_running: bool) -> None:
    """Run a 10-step writer (0.5 s between steps) and kill it, or copy its file, once step ``after`` is committed."""
    target = path if not keep_running else path.with_name(f"{path.stem}-writing.h5")
    proc = start_writer(target, 10, 0.5)
    try:
        wait_for_line(proc, f"step {after}")
        if keep_running:
            shutil.copyfile(target, path)  # the writer sleeps: the copy is what a live reader sees
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def describe(name: str, path: Path) -> Base:
    """List a clean trace's datasets, groups and data byte ranges (for targeted mutations)."""
    datasets: list[str] = []
    groups: list[str] = []
    ranges: list[tuple[int, int]] = []
    offsets: dict[str, int] = {}
    chunks: dict[str, list[tuple[int, int, int]]] = {}
    itemsizes: dict[str, int] = {}
    committed: dict[str, int] = {}
    with h5py.File(path, "r", libver="latest", swmr=name in ("killed", "live")) as f:
        if "progress" in f:
            committed = {series: int(f[f"progress/{series}"][()]) for series in f["progress"]}
        def visit(item_name: str, item: h5py.HLObject) -> None:
            if isinstance(item, h5py.Dataset):
                datasets.append(item_name)
                dcpl = item.id
                if item.chunks is None:
                    offset = dcpl.get_offset()
                    if offset is not None:
                        ranges.append((int(offset), int(dcpl.get_storage_size())))
                        offsets[item_name] = int(offset)
                else:
                    itemsizes[item_name] = item.dtype.itemsize
                    for i in range(dcpl.get_num_chunks()):
                        info = dcpl.get_chunk_info(i)
                        ranges.append((int(info.byte_offset), int(info.size)))
                        first_row = int(info.chunk_offset[0]) if info.chunk_offset else 0
                        chunks.setdefault(item_name, []).append((first_row, int(info.byte_offset), int(info.size)))
            else:
                groups.append(item_name)

        f.visititems(visit)
        steps = committed.get("steps", 0)
        sigma = f["steps/sigma"][:steps] if "steps/sigma" in f else []
        noise_rows = tuple(i for i in range(max(steps - 1, 0)) if i < len(sigma) and float(sigma[i]) != 0.0)
    return Base(name, path, path.stat().st_size, tuple(sorted(ranges)), tuple(datasets), tuple(groups), offsets,
                chunks, itemsizes, committed, noise_rows)


def build_bases(directory: Path) -> dict[str, Base]:
    """Write every base trace into ``directory`` (created) and describe each."""
    directory.mkdir(parents=True, exist_ok=True)
    makers = {
        "ddpm": lambda p: _sampling(p, "ddpm"),
        "ddim": lambda p: _sampling(p, "ddim", dtype="float16"),
        "guided": lambda p: _sampling(p, "ddim", guided=True),
        "vpred": lambda p: _sampling(p, "ddim", guided=True, prediction="v"),
        "synthetic": _synthetic,
        "training": _training,
        "killed": lambda p: _killed(p, 4, keep_running=False),
        "live": lambda p: _killed(p, 1, keep_running=True),
    }
    # The two writers run in their own processes while the other bases are made here.
    writers = {name: directory / f"{name}.h5" for name in ("killed", "live")}
    threads = [threading.Thread(target=makers[name], args=(path,)) for name, path in writers.items() if not path.exists()]
    for thread in threads:
        thread.start()
    for name in BASE_NAMES:
        path = directory / f"{name}.h5"
        if name not in writers and not path.exists():
            makers[name](path)
    for thread in threads:
        thread.join()
    return {name: describe(name, directory / f"{name}.h5") for name in BASE_NAMES}
