"""Training and sampling on a CUDA GPU: the same commands as on the CPU, traces that pass ``check``,
and samples that agree with the CPU's from the same x_T. Skipped where torch sees no CUDA device; the
multi-process (NCCL) training test also where it sees fewer than two."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tracer.checkpoints import load_checkpoint
from tracer.cli import main
from tracer.samplers.config import SamplerConfig
from tracer.samplers.loop import sample
from tracer.trace.reader import open_trace

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default U-Net on digits, a few steps on the GPU (training trace on)."""
    out = tmp_path_factory.mktemp("cuda") / "run"
    assert main(["train", "--dataset", "digits", "--steps", "20", "--snapshot-every", "10", "--device", "cuda", "--out", str(out), "--quiet"]) == 0
    return out


def test_training_on_cuda_writes_a_trace_that_passes_check(cuda_run: Path) -> None:
    with open_trace(cuda_run / "train.h5") as trace:
        assert trace.status == "complete" and trace.config["device"] == "cuda"
        assert np.isfinite(trace.series("train")["loss"]).all()
    assert main(["check", str(cuda_run / "train.h5")]) == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--sampler", "ddpm"],
        ["--sampler", "ddim", "--steps", "20", "--eta", "1"],
        ["--sampler", "ddim", "--steps", "20", "--guidance", "3", "--labels", "all", "--dtype", "float16"],
    ],
    ids=["ddpm", "ddim-eta1", "ddim-guided-fp16"],
)
def test_sampling_on_cuda_records_a_trace_that_passes_check(cuda_run: Path, tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "cuda.h5"
    assert main(["sample", "--checkpoint", str(cuda_run), "--device", "cuda", "--batch", "10", "--out", str(out), "--quiet", *args]) == 0
    with open_trace(out) as trace:
        assert trace.status == "complete" and trace.config["device"] == "cuda"
    assert main(["check", str(out)]) == 0


def test_cuda_and_cpu_land_on_the_same_samples_from_the_same_x_T(cuda_run: Path) -> None:
    config = SamplerConfig(sampler="ddim", steps=20, eta=0.0, guidance=3.0)
    cpu, gpu = load_checkpoint(cuda_run, device="cpu"), load_checkpoint(cuda_run, device="cuda")
    x_T = torch.randn((10, *cpu.sample_shape), generator=torch.Generator().manual_seed(0))  # noqa: N806
    labels = torch.arange(10)
    with torch.no_grad():
        *_, on_cpu = sample(cpu.model, cpu.schedule, config, x_T=x_T, labels=labels)
        *_, on_gpu = sample(gpu.model, gpu.schedule, config, x_T=x_T.cuda(), labels=labels.cuda())
    # eta 0 is deterministic: only float32 rounding (TF32 off by default for convolutions' accumulation) separates them
    torch.testing.assert_close(on_gpu.x_prev.cpu(), on_cpu.x_prev, atol=2e-3, rtol=0)


def test_the_recording_api_records_cuda_tensors(tmp_path: Path) -> None:
    """A loop of one's own on the GPU (docs/recording.md), traced: its tensors are copied to the CPU as they are recorded."""
    from tests.test_record_api import oracle, report_ddim, x_T
    from tracer import record
    from tracer.schedules import make_schedule

    schedule = make_schedule("seed-report")
    alpha_bar = torch.tensor(schedule.alpha_bar)
    model = oracle(schedule)
    path = tmp_path / "gpu.h5"
    with record(path, alpha_bar) as rec:
        on_gpu = report_ddim(model.cuda(), alpha_bar, x_T().cuda(), 10, rec)
    on_cpu = report_ddim(model.cpu(), alpha_bar, x_T(), 10)
    with open_trace(path) as trace:
        assert trace.status == "complete" and trace.num_steps == 10
        np.testing.assert_array_equal(trace.final("samples"), on_gpu.cpu().numpy())
    np.testing.assert_allclose(on_gpu.cpu().numpy(), on_cpu.numpy(), rtol=1e-5, atol=1e-5)
    assert main(["check", str(path)]) == 4  # the report's last step to alpha_bar_0: NOISE LEFT, every check passing


@pytest.mark.skipif(torch.cuda.device_count() < 2,
                    reason=f"2-process NCCL training needs two CUDA GPUs; torch sees {torch.cuda.device_count()}")
def test_two_processes_on_two_gpus_train_as_one_at_twice_the_batch(tmp_path: Path) -> None:
    """``--nproc 2 --device cuda``: NCCL, one GPU per rank; the logged loss is the 1-process run's at batch 2b."""
    common = ["train", "--dataset", "digits", "--steps", "4", "--log-every", "2", "--snapshot-every", "2", "--device", "cuda", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "tracer.cli", *common, "--batch", "16", "--nproc", "2", "--out", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert main([*common, "--batch", "32", "--out", str(tmp_path / "one")]) == 0
    with open_trace(tmp_path / "two" / "train.h5") as two, open_trace(tmp_path / "one" / "train.h5") as one:
        assert two.status == "complete" and two.config["world_size"] == 2 and two.config["device"] == "cuda"
        # the same data and noise; only the GPU's summation order (cuDNN, NCCL's all-reduce) separates them
        np.testing.assert_allclose(two.series("train")["loss"], one.series("train")["loss"], rtol=1e-3)
    assert main(["check", str(tmp_path / "two" / "train.h5")]) == 0


# Sampling on two processes (tracer/sharding.py; the processes are tests/sharded_run.py, as in
# tests/test_distributed_sampling.py): the trace rank 0 writes against one process's on the GPU. The closed-form oracle
# without classes is elementwise arithmetic, whose result for a sample does not depend on its batch: equal bit for bit.
# The guided oracle (a softmax over classes) and the MLP (cuBLAS picks its kernels by batch size): to float rounding.
TWO_PROCESS_CASES = ("ddim-eta1", "guided-batch5", "mlp-ddim-eta1-batch5")


def _two_processes_sample_like_one(tmp_path: Path, backend: str) -> None:
    from tests.sharded_run import CASES
    from tests.test_distributed_sampling import assert_close_to_rounding, record_one_process, same_bits, start_ranks

    codes, results = start_ranks(tmp_path, [{"case": name, "out": str(tmp_path / f"{name}.h5")} for name in TWO_PROCESS_CASES],
                                 backend=backend, device="cuda")
    assert codes == [0, 0] and results == [[None] * len(TWO_PROCESS_CASES)] * 2, results
    for name in TWO_PROCESS_CASES:
        one_path = record_one_process(CASES[name], tmp_path / f"{name}-one.h5", device="cuda")
        with open_trace(tmp_path / f"{name}.h5") as two, open_trace(one_path) as one:
            assert two.status == one.status == "complete" and two.config == {**one.config, "world_size": 2}
            assert two.field_specs() == one.field_specs()
            for field in two.field_names():
                if field in two.scalars() or name == "ddim-eta1":
                    assert same_bits(two.column(field), one.column(field)), (name, field)
                else:
                    assert_close_to_rounding(two.column(field), one.column(field), f"{name}: {field}")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason=f"NCCL sampling runs one process a GPU: it needs 2 CUDA GPUs, torch sees {torch.cuda.device_count()}")
def test_two_nccl_processes_one_gpu_each_write_the_trace_of_one_process(tmp_path: Path) -> None:
    _two_processes_sample_like_one(tmp_path, "nccl")


def test_two_gloo_processes_sampling_on_the_gpu_write_the_trace_of_one_process(tmp_path: Path) -> None:
    """gloo gathers on the CPU: each step's GPU tensors are copied there (tracer/sharding.py); runs on one GPU too."""
    _two_processes_sample_like_one(tmp_path, "gloo")
