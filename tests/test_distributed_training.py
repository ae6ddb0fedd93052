"""Training on many processes (tracer/distributed.py, tracer/training.py): N gloo ranks at batch b are, in data and
math, one process at batch N b; ``noisescope train --nproc 2`` writes one trace and one checkpoint from rank 0 that
``check`` passes, whose logged loss is the global batch's; a 2-process run resumes in one process; a rank that dies
ends the run with one line naming it and loses no committed step; and bad --nproc values are refused up front.

The gradient test forks its two ranks from this process (torch already loaded, one thread each) and joins them
through a FileStore; the command-line tests start ``python -m tracer.cli`` as a subprocess, as a user would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import tracer.distributed
from tracer.checkpoints import load_checkpoint
from tracer.cli import main
from tracer.config import ConfigError, TrainConfig
from tracer.data import Dataset, load_dataset
from tracer.models.mlp import MLP
from tracer.schedules import make_schedule
from tracer.trace.reader import open_trace
from tracer.training import STATE_FILE, Trainer

ROOT = Path(__file__).resolve().parents[1]
B = 4  # batch per process
TRAIN = ["train", "--dataset", "moons", "--timesteps", "50", "--channels", "16,16", "--log-every", "2", "--snapshot-every", "3",
         "--quiet"]


# -- the math: 2 ranks at batch b average to the gradient of one process at batch 2b -----------------


def tiny_data() -> Dataset:
    """9 labelled points: at the global batch 2 B = 8 an epoch is 8 + 1, so its last step leaves rank 1 an empty shard."""
    data = load_dataset("moons", seed=0, size=9)
    assert len(data) == 9 and data.num_classes == 2
    return data


def trainer(batch: int, lr: float) -> Trainer:
    torch.manual_seed(0)
    config = TrainConfig(steps=3, batch=batch, lr=lr, warmup=0, grad_clip=None, p_uncond=0.5)  # no clipping: .grad is the gradient
    return Trainer(MLP(2, (16, 16), num_classes=2), make_schedule("linear", 50), tiny_data(), config)


def gradients(trainer: Trainer) -> list[torch.Tensor]:
    """The gradient of every parameter (after DDP: the average over the ranks) of the step just taken."""
    return [p.grad.detach().clone() for p in trainer.model.parameters()]  # type: ignore[union-attr]


def rank_main(rank: int, store: str, out: str, lr: float) -> None:
    """One of 2 forked ranks: three steps at batch B, each step's gradients and the final weights saved."""
    torch.set_num_threads(1)  # forked: no OpenMP pool of the parent's in this process
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        ranked = trainer(B, lr)
        steps = []
        for _ in range(3):
            per_sample, _, _ = ranked.train_step()
            steps.append({"grads": gradients(ranked), "rows": per_sample.shape[0]})
        assert ranked.ema is not None
        torch.save({"steps": steps, "model": ranked.model.state_dict(), "ema": ranked.ema.state_dict()}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def two_ranks(tmp_path: Path, lr: float) -> list[dict[str, Any]]:
    context = mp.start_processes(rank_main, args=(str(tmp_path / "store"), str(tmp_path), lr), nprocs=2, join=False, start_method="fork")
    for _ in range(120):  # at most a minute; a hang fails instead of stopping the suite
        if context.join(timeout=0.5):
            break
    else:
        for process in context.processes:
            process.kill()
        raise AssertionError("the two ranks did not finish in a minute")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_two_ranks_take_the_gradient_of_one_process_at_twice_the_batch(tmp_path: Path, one_thread: None) -> None:
    single = trainer(2 * B, lr=1e-2)  # first: the ranks fork from a process that has loaded what Adam loads
    ranks = two_ranks(tmp_path, lr=1e-2)
    single.train_step()
    for ours, reference in zip(ranks[0]["steps"][0]["grads"], gradients(single), strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-7)  # the first step: float rounding apart
    for name, value in ranks[0]["model"].items():  # DDP: every rank takes the same step; the EMA follows
        assert torch.equal(value, ranks[1]["model"][name]) and torch.equal(ranks[0]["ema"][name], ranks[1]["ema"][name])


def test_the_short_last_batch_of_an_epoch_is_the_global_batch_mean_too(tmp_path: Path, one_thread: None) -> None:
    # lr 1e-12 cannot move the float32 weights: every step's gradient is taken at the same weights in both runs, so
    # each must agree, the full steps and the epoch's last (1 example: rank 0 holds it, rank 1 an empty shard).
    single = trainer(2 * B, lr=1e-12)
    ranks = two_ranks(tmp_path, lr=1e-12)
    assert single.steps_per_epoch == 2 and [s["rows"] for s in ranks[0]["steps"]] == [4, 1, 4]  # 9 = 8 + 1
    assert [s["rows"] for s in ranks[1]["steps"]] == [4, 0, 4]
    for step in range(3):
        single.train_step()
        for ours, reference in zip(ranks[0]["steps"][step]["grads"], gradients(single), strict=True):
            torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-7)


def test_shards_cover_the_global_batch_in_order() -> None:
    ranked = trainer(B, lr=1e-2)
    for size in (8, 5, 4, 3, 1, 0):
        parts = []
        for rank in range(2):
            ranked.rank = rank
            rows = ranked.shard(size)
            parts += list(range(size))[rows]
        assert parts == list(range(size))


# -- the command: noisescope train --nproc 2 -------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m tracer.cli ARGS`` with this checkout's code (the children of --nproc inherit PYTHONPATH)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "tracer.cli", *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """6 steps on 2 processes at batch 4 (a 2-D MLP with classes on moons)."""
    out = tmp_path_factory.mktemp("nproc") / "run"
    done = cli(*TRAIN, "--steps", "6", "--batch", str(B), "--nproc", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out, done


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run in one process at batch 8, to 9 steps."""
    out = tmp_path_factory.mktemp("single") / "run"
    assert main([*TRAIN, "--steps", "9", "--batch", str(2 * B), "--out", str(out)]) == 0
    return out


def series(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with open_trace(path) as trace:
        assert trace.status == "complete"
        return trace.config, trace.series("train")


@pytest.mark.slow
def test_two_processes_write_one_trace_that_passes_check(two_process_run: tuple[Path, Any], capsys: pytest.CaptureFixture[str]) -> None:
    out, done = two_process_run
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "train.h5", STATE_FILE]
    assert done.stdout.count("trained 6 steps") == 1 and "Traceback" not in done.stderr  # rank 0 reports, once
    config, rows = series(out / "train.h5")
    assert config["world_size"] == 2 and config["train"]["batch"] == B
    assert list(rows["step"]) == [2, 4, 6]
    assert main(["check", str(out / "train.h5")]) == 0
    capsys.readouterr()
    assert load_checkpoint(out).extra["step"] == 6


@pytest.mark.slow
def test_the_logged_loss_is_the_mean_over_both_ranks(two_process_run: tuple[Path, Any], one_process_run: Path) -> None:
    # Same data, same noise, same math: each row must be the 1-process row at batch 2b, to float rounding. Rank 0's
    # own half would differ (its 4 of the 8 examples).
    _, ours = series(two_process_run[0] / "train.h5")
    config, reference = series(one_process_run / "train.h5")
    assert config["world_size"] == 1
    for name in ("loss", "grad_norm", "loss_by_bucket"):
        np.testing.assert_allclose(ours[name], reference[name][:3], rtol=1e-5, atol=1e-8)


@pytest.mark.slow
def test_a_two_process_run_resumes_in_one_process(two_process_run: tuple[Path, Any], one_process_run: Path, tmp_path: Path) -> None:
    # Weights, EMA, Adam, the step and the generator carry over; at batch 8 the global batch is the one it had, so the
    # resumed run lands where the 1-process run went without stopping.
    out = tmp_path / "run"
    shutil.copytree(two_process_run[0], out)
    assert main([*TRAIN, "--steps", "9", "--batch", str(2 * B), "--resume", "--out", str(out)]) == 0
    config, rows = series(out / "train.h5")
    _, reference = series(one_process_run / "train.h5")
    assert config["world_size"] == 1 and list(rows["step"]) == [2, 4, 6, 8, 9]
    np.testing.assert_allclose(rows["loss"], reference["loss"], rtol=1e-4)
    ours, theirs = load_checkpoint(out).model.state_dict(), load_checkpoint(one_process_run).model.state_dict()
    for name, value in ours.items():
        torch.testing.assert_close(value, theirs[name], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_run_with_one_line_and_keeps_every_committed_step(
    two_process_run: tuple[Path, Any], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(two_process_run[0], out)
    before = {name: (out / name).read_bytes() for name in ("model.safetensors", STATE_FILE)}
    # Resumed at step 6 on 2 processes, rank 1 SIGKILLed before its 9th step: rank 0 has committed step 7 (rank 1 took
    # part in step 8's all-reduce, which rank 0 enters after writing row 7) and, unless stopped first, step 8.
    done = cli(*TRAIN, "--steps", "12", "--batch", str(B), "--log-every", "1", "--nproc", "2", "--resume", "--out", str(out),
               env={tracer.distributed.KILL_ENV: "1:8"})
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("noisescope: error: rank 1 was killed by SIGKILL"), done.stderr
    assert {name: (out / name).read_bytes() for name in before} == before  # the previous checkpoint and state, untouched
    with open_trace(out / "train.h5") as trace:
        # Rank 0 closed it as failed: it saw its peer go (a gloo error), or torchrun's agent stopped it first (SIGTERM).
        assert trace.status == "failed"
        steps = list(trace.series("train")["step"])
    assert steps in ([2, 4, 6, 7], [2, 4, 6, 7, 8]), steps  # the old rows, then each committed step


# -- bad input: one line, exit code 2, nothing started --------------------------------------------------


def refused(capsys: pytest.CaptureFixture[str], code: int, fragment: str) -> None:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("noisescope: error: ") and "Traceback" not in err, err
    assert fragment in err, err


@pytest.mark.parametrize("command", ["train", "sample"])
@pytest.mark.parametrize(("nproc", "fragment"), [("0", "must be at least 1"), ("-3", "must be at least 1"), ("two", "not an integer"),
                                                 ("3", "--nproc 3 is more than the 2 CPU cores this process may use")])
def test_nproc_out_of_range(command: str, nproc: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            no_work: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracer.distributed, "usable_cores", lambda: 2)  # the same refusal on every machine
    args = ["--dataset", "moons"] if command == "train" else ["--checkpoint", str(tmp_path), "--sampler", "ddim"]
    out = tmp_path / ("run" if command == "train" else "out.h5")
    refused(capsys, main([command, *args, "--device", "cpu", "--nproc", nproc, "--out", str(out)]), fragment)
    assert not out.exists()


def test_nproc_within_the_cores_but_above_the_real_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    cores = len(os.sched_getaffinity(0))
    refused(capsys, main(["train", "--dataset", "moons", "--device", "cpu", "--nproc", str(cores + 1), "--out", str(tmp_path / "run")]),
            f"--nproc {cores + 1} is more than the {cores} CPU cores this process may use")


def test_nproc_above_the_gpus_with_cuda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        no_work: None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(tracer.distributed, "usable_cores", lambda: 8)
    refused(capsys, main(["train", "--dataset", "moons", "--device", "cuda", "--nproc", "2", "--out", str(tmp_path / "run")]),
            "needs one GPU per process; this machine has 1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here")
def test_cuda_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    refused(capsys, main(["train", "--dataset", "moons", "--device", "cuda", "--nproc", "2", "--out", str(tmp_path / "run")]),
            "no CUDA GPU is available")


def test_a_run_directory_in_use_is_refused_before_the_processes_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracer.distributed, "usable_cores", lambda: 2)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    refused(capsys, main(["train", "--dataset", "moons", "--device", "cpu", "--nproc", "2", "--out", str(tmp_path / "run")]),
            "exists and is not empty")
    refused(capsys, main(["train", "--dataset", "moons", "--device", "cpu", "--nproc", "2", "--resume", "--out", str(tmp_path / "new")]),
            "nothing to resume")
    assert not (tmp_path / "new").exists()


def test_under_torchrun_nproc_and_single_process_commands_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="under torchrun leave it out"):
        tracer.distributed.check_nproc(2, "cpu")
    refused(capsys, main(["inspect", str(tmp_path / "x.h5")]), "noisescope inspect runs in one process")


def test_the_launcher_names_the_rank_that_failed_on_its_own(tmp_path: Path) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    def failures(**codes: int) -> dict[int, ProcessFailure]:
        return {int(rank[1:]): ProcessFailure(int(rank[1:]), 100 + int(rank[1:]), code, "") for rank, code in codes.items()}

    line = tracer.distributed._failure_line  # noqa: SLF001
    # rank 0 stopped by the agent (SIGTERM), rank 2 because its peer went away: rank 1 is the cause
    assert line(failures(r0=-15, r1=-9, r2=tracer.distributed.EXIT_PEER_LOST), tmp_path) == (
        "rank 1 was killed by SIGKILL (signal 9); the run is stopped", 1)
    assert line(failures(r0=-15, r1=3), tmp_path) == ("rank 1 exited with code 3; the run is stopped", 1)
    (tmp_path / "rank-0.txt").write_text("disk full: 12 kB left on /runs\n")  # what tracer.cli leaves under launch()
    assert line(failures(r0=2, r1=tracer.distributed.EXIT_PEER_LOST), tmp_path) == ("rank 0: disk full: 12 kB left on /runs", 2)


def test_drop_nproc_removes_every_spelling() -> None:
    argv = ["train", "--nproc", "2", "--out", "r", "--nproc=3", "--npr", "4", "--np=5", "--no-ema", "--batch", "8"]
    assert tracer.distributed.drop_nproc(argv) == ["train", "--out", "r", "--no-ema", "--batch", "8"]


def test_train_help_explains_nproc(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--nproc" in text and "DistributedDataParallel" in text and "torchrun" in text
