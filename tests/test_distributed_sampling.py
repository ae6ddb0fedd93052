"""Sampling on many processes (tracer/sharding.py, docs/samplers.md): two gloo processes write the trace one writes.

Every rank builds the whole x_T and draws the whole batch's noise at every step, keeping its own rows; rank 0 gathers
each step's rows and records them. So the trace of 2 processes must equal the trace of 1 bit for bit wherever the
network's output for a sample does not depend on the batch it is computed in: the closed-form Gaussian oracles
(tracer/models/analytic.py) are such networks, and with them every steps/ tensor and scalar, the samples and the
labels must be equal bit for bit, with DDIM eta 0 and eta 1, an uneven split (5 samples on 2 ranks), guidance with
labels, a sigma-space sampler (Euler ancestral) and a flow sampler (Heun).

A trained network on a CPU is not such a network: MKL and oneDNN pick their kernels by batch size, and rows of a
matrix product computed in a batch of 1 to 3 rows round their last bit differently (the U-Net's 1x1 convolutions,
in more batch sizes). For the MLP the 2-process trace is checked bit for bit against the single-process run of
each rank's rows (what splitting the batch promises), and against the whole batch's run to float rounding.

The ranks are real processes (tests/sharded_run.py) joined in a gloo group at a rendezvous file; one start serves
every case, the two failures that leave the group usable, and last a rank that dies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.sharded_run import CASES, Case, inputs, network
from tracer.config import ConfigError
from tracer.recording import record_run
from tracer.samplers.loop import run
from tracer.sharding import check_world, shard
from tracer.trace.reader import Trace, open_trace

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
CLOSED_FORM = [name for name, case in CASES.items() if case.network != "mlp"]
FAULT_STEP = 3


def start_ranks(tmp: Path, jobs: list[dict[str, Any]], world: int = WORLD, backend: str = "gloo",
                device: str = "cpu") -> tuple[list[int], list[list[Any]]]:
    """Run ``jobs`` on ``world`` processes (tests/sharded_run.py); each rank's exit code and what each of its jobs ended with."""
    jobs_path = tmp / "jobs.json"
    jobs_path.write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tests.sharded_run"]
    ranks = [subprocess.Popen([*command, str(rank), str(world), str(tmp / "rendezvous"), str(jobs_path), backend, device],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(world)]
    codes = []
    for rank, process in enumerate(ranks):
        try:
            output, _ = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for other in ranks:
                other.kill()
            pytest.fail(f"rank {rank} did not finish")
        codes.append(process.returncode)
        print(f"--- rank {rank} (exit {process.returncode})\n{output}")
    results = []
    for rank in range(world):
        result = Path(f"{jobs_path}.rank{rank}.json")
        results.append(json.loads(result.read_text()) if result.exists() else [])
    return codes, results


def record_one_process(case: Case, out: Path, device: str = "cpu") -> Path:
    """The ordinary single-process recording of ``case`` (tracer/recording.py), no process group."""
    model, schedule = network(case)
    x_T, labels, generator = inputs(case, device)  # noqa: N806
    record_run(model.to(device), schedule, case.config, x_T=x_T, labels=labels, generator=generator, out=out, progress=False)
    return out


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case on 2 processes, then DDIM whose rank 1 raises at step 3, DDIM whose rank 0 cannot create its trace,
    and last DDIM whose rank 1 dies at step 3 (the group does not outlive it)."""
    tmp = tmp_path_factory.mktemp("two-ranks")
    exists = tmp / "exists.h5"
    exists.write_bytes(b"not a trace, and not to be replaced")
    jobs = [{"case": name, "out": str(tmp / f"{name}.h5")} for name in CASES]
    jobs.append({"case": "ddim-eta1", "out": str(tmp / "raised.h5"), "fault": {"rank": 1, "step": FAULT_STEP, "how": "raise"}})
    jobs.append({"case": "ddim-eta1", "out": str(exists)})
    jobs.append({"case": "ddim-eta1", "out": str(tmp / "died.h5"), "fault": {"rank": 1, "step": FAULT_STEP, "how": "exit"}})
    codes, results = start_ranks(tmp, jobs)
    assert codes == [0, 3]  # rank 1 ended by os._exit(3) in the last job
    return {"tmp": tmp, "results": results, "names": [*CASES, "raised", "exists", "died"]}


def result(two_ranks: dict[str, Any], job: str, rank: int) -> Any:
    return two_ranks["results"][rank][two_ranks["names"].index(job)]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_close_to_rounding(a: np.ndarray, b: np.ndarray, name: str) -> None:
    """Equal to float32 rounding grown over the steps: within 1e-5 of the field's largest magnitude (an untrained MLP's
    x_t runs to a few hundred)."""
    assert a.shape == b.shape, name
    assert np.abs(a - b).max() <= 1e-5 * max(1.0, float(np.abs(b).max())), name


def assert_same_steps(two: Trace, one: Trace, steps: int) -> None:
    """The first ``steps`` rows of every field (tensors and scalars) equal bit for bit."""
    assert two.field_specs() == one.field_specs()
    for name in one.field_names():
        assert same_bits(two.column(name), one.column(name)[:steps]), name


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_two_processes_write_the_trace_of_one_bit_for_bit(two_ranks: dict[str, Any], tmp_path: Path, name: str) -> None:
    assert result(two_ranks, name, 0) is None and result(two_ranks, name, 1) is None
    one_path = record_one_process(CASES[name], tmp_path / "one.h5")
    with open_trace(two_ranks["tmp"] / f"{name}.h5") as two, open_trace(one_path) as one:
        assert two.status == one.status == "complete"
        assert two.num_steps == one.num_steps == one.planned()
        assert two.config == {**one.config, "world_size": WORLD}
        assert_same_steps(two, one, one.num_steps)
        for final in ("samples", "labels"):
            assert same_bits(two.final(final), one.final(final)), final
        if CASES[name].labels is not None:
            assert two.final("labels").tolist() == list(CASES[name].labels)


def rows_of_each_rank(case: Case, names: list[str], build: Callable[[], tuple[Any, Any]] | None = None) -> dict[str, np.ndarray]:
    """Fields ``names`` of every step from single-process runs of each rank's rows, joined in rank order (the network
    and schedule from ``build``, else the case's)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for rank in range(WORLD):
        model, schedule = (build or (lambda: network(case)))()
        x_T, labels, generator = inputs(case)  # noqa: N806 - what noisescope sample builds from the seed
        records = list(run(model, schedule, case.config, x_T, labels=labels, generator=generator, rows=shard(case.batch, rank, WORLD)))
        for name in names:
            parts[name].append(np.stack([getattr(record, name).numpy() for record in records]))
    return {name: np.concatenate(part, axis=1) for name, part in parts.items()}


def test_a_trained_network_gets_its_rows_of_each_rank_bit_for_bit_and_the_whole_batch_to_rounding(
        two_ranks: dict[str, Any], tmp_path: Path) -> None:
    name = "mlp-ddim-eta1-batch5"
    case = CASES[name]
    one_path = record_one_process(case, tmp_path / "one.h5")
    with open_trace(two_ranks["tmp"] / f"{name}.h5") as two, open_trace(one_path) as one:
        assert two.status == "complete" and two.field_specs() == one.field_specs()
        for scalar in two.scalars():
            assert same_bits(two.column(scalar), one.column(scalar)), scalar
        ranks = rows_of_each_rank(case, two.tensor_names())
        for tensor in two.tensor_names():
            assert same_bits(two.column(tensor), ranks[tensor]), tensor
            assert_close_to_rounding(two.column(tensor), one.column(tensor), tensor)
        assert_close_to_rounding(two.final("samples"), one.final("samples"), "samples")


def test_the_rows_a_rank_samples_are_those_rows_of_the_whole_batch() -> None:
    """``run(rows=...)`` (tracer/samplers/loop.py) without processes: each slice's records are the whole run's rows."""
    for name in ("ddim-eta1", "guided-batch5", "euler-ancestral-batch5", "flow-heun-batch5"):
        case = CASES[name]
        model, schedule = network(case)
        x_T, labels, generator = inputs(case)  # noqa: N806
        whole = list(run(model, schedule, case.config, x_T, labels=labels, generator=generator))
        for rows in (slice(0, 3), slice(3, case.batch), slice(1, 2)):
            model, schedule = network(case)
            x_T, labels, generator = inputs(case)  # noqa: N806
            part = list(run(model, schedule, case.config, x_T, labels=labels, generator=generator, rows=rows))
            assert len(part) == len(whole)
            for mine, full in zip(part, whole, strict=True):
                for field in ("x_t", "eps", "x0_pred", "noise", "x_prev"):
                    assert torch.equal(getattr(mine, field), getattr(full, field)[rows]), (name, rows, field)


def test_the_batch_is_split_in_contiguous_slices_in_rank_order_the_first_ranks_taking_one_more() -> None:
    for batch in range(1, 13):
        for world in range(1, batch + 1):
            slices = [shard(batch, rank, world) for rank in range(world)]
            assert [i for s in slices for i in range(batch)[s]] == list(range(batch))
            sizes = [s.stop - s.start for s in slices]
            assert sizes == sorted(sizes, reverse=True) and sizes[0] - sizes[-1] <= 1 and sizes[-1] >= 1


def test_more_processes_than_samples_is_refused_in_one_line() -> None:
    check_world(4, 4)
    with pytest.raises(ConfigError, match=r"--nproc 5 is more processes than the batch has samples \(4\)") as error:
        check_world(4, 5)
    assert "\n" not in str(error.value)


def test_a_rank_that_raises_stops_every_rank_and_rank_0_keeps_each_step_before_it(two_ranks: dict[str, Any], tmp_path: Path) -> None:
    assert result(two_ranks, "raised", 1) == ["RuntimeError", f"injected failure at step {FAULT_STEP}"]
    assert result(two_ranks, "raised", 0) == ["RankFailed", f"rank 1 of 2 failed at step {FAULT_STEP}; this rank stops there"]
    one_path = record_one_process(CASES["ddim-eta1"], tmp_path / "one.h5")
    with open_trace(two_ranks["tmp"] / "raised.h5") as two, open_trace(one_path) as one:
        assert two.status == "failed" and two.num_steps == FAULT_STEP and two.final("samples") is None
        assert_same_steps(two, one, FAULT_STEP)


def test_rank_0_failing_to_record_stops_the_other_ranks(two_ranks: dict[str, Any]) -> None:
    assert result(two_ranks, "exists", 0)[0] == "TraceExistsError"
    assert result(two_ranks, "exists", 1) == ["RankFailed", "rank 0 of 2 failed at step 1; this rank stops there"]
    assert (two_ranks["tmp"] / "exists.h5").read_bytes() == b"not a trace, and not to be replaced"


def test_a_rank_that_dies_leaves_rank_0_with_every_step_committed_before_it(two_ranks: dict[str, Any], tmp_path: Path) -> None:
    assert len(two_ranks["results"][1]) == len(two_ranks["names"]) - 1  # os._exit: no word from rank 1 on its last job
    error, message = result(two_ranks, "died", 0)  # rank 0's gloo collective raised when rank 1's connection closed
    assert error == "RankFailed" and message.startswith(f"a rank of 2 stopped answering at step {FAULT_STEP} (")
    one_path = record_one_process(CASES["ddim-eta1"], tmp_path / "one.h5")
    with open_trace(two_ranks["tmp"] / "died.h5") as two, open_trace(one_path) as one:
        assert two.status == "failed" and two.num_steps == FAULT_STEP
        assert_same_steps(two, one, FAULT_STEP)


def test_noisescope_sample_nproc_2_writes_one_trace_of_the_whole_batch(tmp_path: Path) -> None:
    """End to end: ``noisescope sample --nproc 2`` (the processes started by tracer/distributed.py) against one process."""
    pytest.importorskip("tracer.distributed", reason="noisescope sample --nproc N needs tracer/distributed.py (its launcher)")
    from tracer.checkpoints import load_checkpoint, save_checkpoint
    from tracer.cli import main
    from tracer.config import ModelConfig, ScheduleConfig
    from tracer.models.registry import build_model

    torch.manual_seed(0)
    config = ModelConfig("mlp", (2,), 0, (32, 32))
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", build_model(config), model_config=config,
                                 schedule_config=ScheduleConfig("linear", 50))
    common = ["sample", "--checkpoint", str(checkpoint), "--sampler", "ddim", "--steps", "10", "--eta", "1", "--batch", "5", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "one.h5")]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "tracer.cli", *common, "--nproc", "2", "--out", str(tmp_path / "two.h5")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("wrote") == 1  # rank 0 alone
    loaded = load_checkpoint(checkpoint)
    case = CASES["mlp-ddim-eta1-batch5"]  # its config, batch and seed
    with open_trace(tmp_path / "two.h5") as two, open_trace(tmp_path / "one.h5") as one:
        assert two.status == "complete" and two.config == {**one.config, "world_size": 2} and one.config["world_size"] == 1
        assert two.field_specs() == one.field_specs()
        for scalar in two.scalars():
            assert same_bits(two.column(scalar), one.column(scalar)), scalar
        ranks = rows_of_each_rank(case, two.tensor_names(), lambda: (loaded.model, loaded.schedule))
        for tensor in two.tensor_names():
            assert same_bits(two.column(tensor), ranks[tensor]), tensor
            assert_close_to_rounding(two.column(tensor), one.column(tensor), tensor)
