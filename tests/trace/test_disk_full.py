"""A full disk loses nothing committed.

The commands run in a subprocess under a file size limit (RLIMIT_FSIZE: Python ignores
SIGXFSZ, so a write past it fails with EFBIG, as on a full disk). They end with one line on
stderr and exit code 2, no traceback; every row the trace committed is there, read with
plain h5py in SWMR mode, and equal to the row an unlimited run wrote; a file being replaced
stays as it was. That the reader, check, inspect and recover read such a trace is
tests/trace/test_disk_full_reading.py (which uses this module's helpers).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from tracer.checkpoints import load_checkpoint, save_checkpoint
from tracer.cli import main
from tracer.config import ModelConfig, ScheduleConfig
from tracer.models.registry import build_model

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from tracer.cli import main; raise SystemExit(main(sys.argv[1:]))"
MODEL = ModelConfig("mlp", (2,), 0, (16, 16))
SCHEDULE = ScheduleConfig("linear", 100)
STEPS = 40

pytestmark = pytest.mark.slow


def run_limited(code: str, args: list[str], limit: int) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS`` with every file it writes limited to ``limit`` bytes."""

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("NOISESCOPE_DEBUG", None)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, preexec_fn=limit_file_size,
                          capture_output=True, text=True, timeout=300)


def one_line(result: subprocess.CompletedProcess[str], fragment: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


def committed(path: Path, series: str) -> tuple[str, int, dict[str, np.ndarray]]:
    """(status, committed rows, each field's committed rows) of a trace, read with plain h5py as an SWMR reader."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        n = int(f[f"progress/{series}"][()])
        status = f["status"][()].decode()
        return status, n, {name: ds[:n] for name, ds in f[series].items()}


def assert_prefix(rows: dict[str, np.ndarray], full: dict[str, np.ndarray], n: int) -> None:
    assert rows.keys() == full.keys()
    for name, values in rows.items():
        assert values.shape[0] == n
        np.testing.assert_array_equal(values, full[name][:n], err_msg=name)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("disk") / "model.safetensors", build_model(MODEL),
                           model_config=MODEL, schedule_config=SCHEDULE)


def sample_args(checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", "--checkpoint", str(checkpoint), "--sampler", "ddim", "--steps", str(STEPS), "--batch", "256",
            "--device", "cpu", "--out", str(out), "--quiet", *extra]


def test_sampling_on_a_full_disk_keeps_every_committed_step(checkpoint: Path, tmp_path: Path) -> None:
    full = tmp_path / "full.h5"
    assert main(sample_args(checkpoint, full)) == 0
    _, total, full_rows = committed(full, "steps")
    assert total == STEPS

    out = tmp_path / "limited.h5"
    limit = full.stat().st_size // 2
    line = one_line(run_limited(CLI, sample_args(checkpoint, out), limit), "disk full after ")
    n = int(line.split("disk full after ")[1].split()[0])
    assert 0 < n < STEPS, line
    assert f"writing {out}; the {n} committed steps are readable (noisescope recover {out})" in line
    assert out.stat().st_size <= limit and not (tmp_path / ".limited.h5.partial").exists()
    status, rows, values = committed(out, "steps")
    assert (status, rows) == ("failed", n)
    assert_prefix(values, full_rows, n)


def test_overwriting_on_a_full_disk_leaves_the_old_trace(checkpoint: Path, tmp_path: Path) -> None:
    full = tmp_path / "full.h5"
    assert main(sample_args(checkpoint, full)) == 0
    _, _, full_rows = committed(full, "steps")
    old = tmp_path / "old.h5"
    shutil.copyfile(full, old)
    before = old.read_bytes()

    result = run_limited(CLI, sample_args(checkpoint, old, "--overwrite", "--seed", "1"), full.stat().st_size // 2)
    partial = tmp_path / ".old.h5.partial"
    line = one_line(result, f"writing {partial}; ")
    assert line.endswith(f"{old} is unchanged")
    assert old.read_bytes() == before
    status, n, values = committed(partial, "steps")
    assert status == "failed" and 0 < n < STEPS
    assert not np.array_equal(values["x_t"][0], full_rows["x_t"][0])  # seed 1: the new run's rows, not the old
    assert main(sample_args(checkpoint, old, "--overwrite")) == 0  # the next writer of old.h5 removes the partial
    assert not partial.exists()


def train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", "moons", "--model", "mlp", "--channels", "16,16", "--timesteps", "50", "--steps", "60",
            "--batch", "32", "--log-every", "1", "--snapshot-every", "20", "--device", "cpu", "--out", str(out), "--quiet", *extra]


def test_training_on_a_full_disk_keeps_every_committed_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracer.training as training

    sizes: list[int] = []
    record = training._TraceSink.record

    def measured(self: Any, row: Any) -> None:
        record(self, row)
        sizes.append(os.path.getsize(tmp_path / "full" / "train.h5"))

    monkeypatch.setattr(training._TraceSink, "record", measured)
    assert main(train_args(tmp_path / "full")) == 0
    _, total, full_rows = committed(tmp_path / "full" / "train.h5", "train")
    assert total == 60

    out = tmp_path / "limited"
    line = one_line(run_limited(CLI, train_args(out), sizes[total // 2]), "disk full after ")
    n = int(line.split("disk full after ")[1].split()[0])
    assert 0 < n < total and f"{n} train rows writing {out / 'train.h5'}" in line, line
    status, rows, values = committed(out / "train.h5", "train")
    assert (status, rows) == ("failed", n)
    assert_prefix(values, full_rows, n)
    assert not (out / "model.safetensors").exists() and not any(p.name.endswith(".partial") for p in out.iterdir())


SAVE = """
import sys, torch
from tracer.checkpoints import save_checkpoint
from tracer.config import ModelConfig, ScheduleConfig
from tracer.models.registry import build_model
from tracer.cli.common import fail
config = ModelConfig("mlp", (2,), 0, (256, 256))
try:
    save_checkpoint(sys.argv[1], build_model(config), model_config=config, schedule_config=ScheduleConfig("linear", 100), overwrite=True)
except OSError as error:
    raise SystemExit(fail(error))
"""


def test_a_checkpoint_on_a_full_disk_leaves_the_old_one(checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    shutil.copyfile(checkpoint, path)
    before = path.read_bytes()
    result = run_limited(SAVE, [str(path)], 64 * 1024)  # the new weights are about 280 kB
    assert one_line(result, "disk full writing") == (
        f"noisescope: error: disk full writing {path}; the previous model.safetensors is unchanged"
    )
    assert path.read_bytes() == before and load_checkpoint(path).model_config == MODEL
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
