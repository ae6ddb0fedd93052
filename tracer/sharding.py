"""Sampling on many processes (torch.distributed): each process samples a slice of the batch, process 0 records it all.

``noisescope sample`` in a process group of N > 1 processes (torchrun, or ``--nproc N``) takes this path
(docs/samplers.md, "Sampling on many processes"); rank and world size are read from torch.distributed, whoever
started the processes. Every process (rank) builds the whole x_T from the seed, as a single process does, and
samples rows [start, stop) of it (``shard``: the batch of B split evenly, the first B mod N ranks taking one row
more). The noise of every step is drawn for the whole batch from the shared generator and each rank keeps its rows
(tracer/samplers/loop.py, ``run(rows=...)``): every row meets the same x_T and the same noise whatever N is, so the
result does not depend on N; bit for bit wherever the network's output for a sample does not depend on the batch it
is computed in (a closed-form network's does not; on a CPU, oneDNN and MKL pick their kernels by batch size, and a
convolution or a matrix product can round the last bit of a sample differently in a smaller batch).

At every step the ranks' records are gathered to rank 0 (``gather_records``: one ``gather`` of the step's tensors
stacked, on the GPU with NCCL, on the CPU with gloo), which joins them in rank order into one record of the whole
batch and records it through the ordinary path (tracer/recording.py): one trace, written by rank 0 alone and
committed step by step as ever, whose config records ``world_size``. The others write nothing.

Before any tensor moves, the ranks agree on the step: each sends all the others a short vector (its status, the
step's scalars, which tensors its record holds), one ``all_gather``. A rank whose sampler raises says so there and
every rank stops at that step: it raises its own error, the others ``RankFailed`` naming it, and rank 0 closes its
trace ``failed`` keeping every step before it. If rank 0's recording fails, closing its ``gather_records`` says so to
the others in the same way. Scalars differing between ranks (they depend on the plan only) stop the run too. A rank
that dies without a word is noticed by the backend: gloo's connection closes and the next collective raises, which
becomes ``RankFailed`` (NCCL waits for its timeout, and torchrun ends the other ranks when one dies).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterable
from typing import Any

import torch
import torch.distributed as dist

from tracer.config import ConfigError
from tracer.distributed import rank_and_world
from tracer.recording import record_run
from tracer.samplers.config import SamplerConfig
from tracer.samplers.loop import run
from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule

OK, DONE, FAILED = 0.0, 1.0, 2.0  # a rank's status at a step: a record, no more records, its sampler raised
_FIELDS = tuple(f.name for f in dataclasses.fields(StepRecord))
_ABSENT, _SCALAR, _TENSOR = 0.0, 1.0, 2.0  # what a record holds in a field


class RankFailed(dist.DistError):
    """Another rank stopped the run: its sampler raised, its recording failed (rank 0), or it stopped answering.

    A torch.distributed error, as a collective's own is when a peer goes away: this rank stops because of another,
    whose own error says why."""


def shard(batch: int, rank: int, world: int) -> slice:
    """Rows [start, stop) of a batch of ``batch`` that ``rank`` of ``world`` samples: contiguous, in rank order, the
    first ``batch % world`` ranks taking one row more than the others."""
    size, extra = divmod(batch, world)
    start = rank * size + min(rank, extra)
    return slice(start, start + size + (1 if rank < extra else 0))


def check_world(batch: int, world: int) -> None:
    """Every rank samples at least one row (one line, before any work)."""
    if world > batch:
        raise ConfigError(f"--nproc {world} is more processes than the batch has samples ({batch}): each process samples "
                          f"at least one; use --nproc {batch} or fewer")


def record_sharded(
    model: Any,
    schedule: Schedule,
    config: SamplerConfig,
    *,
    x_T: torch.Tensor,  # noqa: N803
    labels: torch.Tensor | None,
    generator: torch.Generator | None,
    extra_config: dict[str, Any] | None = None,
    **recording: Any,
) -> torch.Tensor | None:
    """``record_run`` (tracer/recording.py) of the whole batch ``x_T`` by the processes of the default group together:
    this rank samples its rows; rank 0 records the trace (``recording`` are record_run's options: ``out``,
    ``tensor_dtype``, ...) and returns the samples of the whole batch, the others return None.

    Every rank passes the same whole x_T, labels and generator state (built from the same seed).
    """
    rank, world = rank_and_world()
    batch = int(x_T.shape[0])
    check_world(batch, world)
    local = run(model, schedule, config, x_T, labels=labels, generator=generator, rows=shard(batch, rank, world))
    records = gather_records(local, batch=batch)
    try:
        if rank == 0:
            return record_run(model, schedule, config, x_T=x_T, labels=labels, generator=generator, records=records,
                              extra_config={**(extra_config or {}), "world_size": world}, **recording)
        for _ in records:
            pass  # taking part in each step's gathers is all a rank other than 0 does with its records
        return None
    finally:
        records.close()  # a consumer that stopped early (rank 0's trace failed) tells the other ranks


def gather_records(records: Iterable[StepRecord], *, batch: int) -> Generator[StepRecord, None, None]:
    """This rank's ``records`` (of its ``shard`` of ``batch``) gathered step by step: on rank 0 each step's record of the
    whole batch, its rows in rank order (the scalars are rank 0's, checked equal on every rank); on the others
    their own records, once they have taken part in the step's gathers. Every rank must consume it to the end or
    close it (see the module docstring for a rank that fails)."""
    rank, world = rank_and_world()
    device = _device()
    counts = [len(range(batch)[shard(batch, r, world)]) for r in range(world)]
    iterator = iter(records)
    step = 0
    try:
        while True:
            record: StepRecord | None = None
            error: BaseException | None = None
            try:
                record, status = next(iterator), OK
            except StopIteration:
                status = DONE
            except BaseException as raised:  # noqa: BLE001 - said to the other ranks, then raised again below
                status, error = FAILED, raised
            try:
                every = _agree(_summary(status, record), device, world)
            except RuntimeError as lost:
                if error is not None:
                    raise error from None
                raise _lost(step, world, lost) from lost
            statuses = [float(v[0]) for v in every]
            if FAILED in statuses or DONE in statuses:
                if error is not None:
                    raise error
                if FAILED in statuses:
                    raise RankFailed(f"rank {statuses.index(FAILED)} of {world} failed at step {step}; this rank stops there")
                if all(s == DONE for s in statuses):
                    return
                raise RuntimeError(f"the ranks disagree on the number of steps: rank {statuses.index(DONE)} has {step}, "
                                   f"rank {statuses.index(OK)} more")
            for other, summary in enumerate(every):
                if not torch.equal(summary[1:].view(torch.int64), every[0][1:].view(torch.int64)):  # bit for bit, NaN too
                    raise RuntimeError(f"ranks 0 and {other} disagree on the scalars or tensors of step {step}: "
                                       "they do not run the same sampler with the same options")
            assert record is not None
            try:
                whole = _gather_rows(record, every[0], counts, rank, world, device)
            except RuntimeError as lost:
                raise _lost(step, world, lost) from lost
            step += 1
            yield dataclasses.replace(record, **whole) if rank == 0 else record
    except GeneratorExit:  # closed at a yield: this rank's consumer stopped, so the others must not wait for it
        _tell_failed(device, world)
        raise


def _lost(step: int, world: int, error: RuntimeError) -> RankFailed:
    """A collective that raised: another rank is gone (gloo: its connection closed; NCCL: the timeout ran out)."""
    return RankFailed(f"a rank of {world} stopped answering at step {step} ({type(error).__name__} from the backend); "
                      "this rank stops there")


def _device() -> torch.device:
    """Where the default group's collectives take tensors: this process's GPU with NCCL, the CPU otherwise."""
    if "nccl" in str(dist.get_backend()):  # "nccl", or a per-device backend such as "cpu:gloo,cuda:nccl"
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _summary(status: float, record: StepRecord | None) -> list[float]:
    """A rank's vector of one step: its status, then per StepRecord field (absent, scalar or tensor; the scalar's value)."""
    values = [status]
    for name in _FIELDS:
        value = None if record is None else getattr(record, name)
        if isinstance(value, torch.Tensor):
            values += [_TENSOR, 0.0]
        elif value is None:
            values += [_ABSENT, 0.0]
        else:
            values += [_SCALAR, float(value)]
    return values


def _agree(summary: list[float], device: torch.device, world: int) -> list[torch.Tensor]:
    """Every rank's summary of the step (one all_gather), on the CPU."""
    mine = torch.tensor(summary, dtype=torch.float64, device=device)
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)
    return list(torch.stack(every).cpu())


def _tell_failed(device: torch.device, world: int) -> None:
    """Say FAILED at the step the other ranks wait at; if they are gone already there is no one to tell."""
    try:
        _agree(_summary(FAILED, None), device, world)
    except Exception:  # noqa: BLE001, S110 - the rank that fails is on its way out; its own error is the one raised
        pass


def _gather_rows(record: StepRecord, summary: torch.Tensor, counts: list[int], rank: int, world: int,
                 device: torch.device) -> dict[str, Any]:
    """The record's tensors of the whole batch on rank 0 (one gather of all of them stacked, each rank's rows padded
    to the largest slice and cut back after); {} on the others."""
    names = [name for i, name in enumerate(_FIELDS) if float(summary[1 + 2 * i]) == _TENSOR]
    tensors = [getattr(record, name) for name in names]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) != 1:
        raise TypeError(f"a step's tensors have different dtypes {sorted(map(str, dtypes))}; they are gathered as one")
    stacked = torch.stack(tensors).to(device)  # [tensors, rows, *D]
    padding = max(counts) - stacked.shape[1]
    if padding:
        stacked = torch.cat([stacked, stacked.new_zeros((stacked.shape[0], padding, *stacked.shape[2:]))], dim=1)
    if rank != 0:
        dist.gather(stacked, None, dst=0)
        return {}
    parts = [torch.empty_like(stacked) for _ in range(world)]
    dist.gather(stacked, parts, dst=0)
    whole = torch.cat([part[:, :count] for part, count in zip(parts, counts, strict=True)], dim=1)
    return {name: whole[i] for i, name in enumerate(names)}
