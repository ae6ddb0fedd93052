"""Training a noise predictor: Ho et al. 2020, Alg. 1, with the label dropout of Ho and Salimans 2022, Alg. 1.

One step:  x_0 ~ data, y ~ its label, t ~ Uniform{0..T-1}, eps ~ N(0, I);
           y <- null label with probability p_uncond                        (Ho and Salimans 2022, Alg. 1)
           x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps           (Ho et al. 2020, Eq. 4)
           L = || eps - eps_theta(x_t, t, y) ||^2                             (Ho et al. 2020, Eq. 14, L_simple)
then Adam on L with gradient clipping, and an exponential moving average (EMA) of
the weights, the weights a sampler uses.

A flow network (``ModelConfig.objective`` "flow"; Lipman et al. 2023, Liu et al. 2023) draws t ~ Uniform[0, 1)
instead, x_t = (1 - t) x_0 + t eps, and minimises || (eps - x_0) - v_theta(x_t, t T, y) ||^2: the network is
called at the time t T (T of its ``flow`` schedule, 1000 by default), as diffusers' flow-matching models are.

``Trainer.run()`` is a generator: it yields one frozen ``TrainRecord`` per logged
step (loss, lr, grad_norm, loss by timestep bucket), so training without a trace just
consumes it and ``train()`` adds the trace, the checkpoint and the resume state.

``train()`` writes into RUN_DIR:
- ``model.safetensors``: the EMA weights (raw weights when EMA is off) and the configs (tracer/checkpoints.py);
- ``train.h5``: the training trace, kind "training", series ``train`` (one row per
  logged step), ``snapshots`` (samples from ONE fixed x_T and fixed labels, drawn
  with the EMA model by a short DDIM run every ``snapshot_every`` steps) and
  ``examples`` (worked examples of the loss: x0, t, eps, x_t, eps_pred), plus root
  datasets ``snapshot_x_T`` and ``snapshot_labels``;
- ``train_state.pt``: the resume state, tensors only (raw weights, EMA, Adam state,
  step, RNG state), read back with ``torch.load(weights_only=True)``.
No file is replaced before its successor is complete (tracer/atomic.py): a run with
``overwrite`` keeps the previous run's three files untouched (and saves no resume state
of its own) until it is done, then replaces them one after another; ``resume`` builds the
new train.h5 beside the old one and replaces it only once every old row is copied in. A
killed run leaves either the previous files or the new ones, each whole. A full disk is
one ``DiskFullError`` line.
Data batches come from a permutation seeded by (seed, epoch), and every random draw
of a step from one generator whose state is saved, so a resumed run continues
exactly where it stopped.

Many processes (torchrun, or ``noisescope train --nproc N``; tracer/distributed.py): N processes at ``batch`` b
each train, in their data and their math, at the global batch N b. The model is wrapped in
DistributedDataParallel (gloo on the CPU, NCCL on CUDA). Every rank draws the same permutation of each epoch;
step s's global batch is its slice [s N b, (s + 1) N b), and rank r keeps rows [r b, (r + 1) b) of it. Every rank
draws the label dropout mask, t and eps of the WHOLE global batch from the shared generator (seeded as with one
process, so all ranks hold the same generator state) and keeps its own rows: the same draws, in the same order,
as one process at batch N b (cheap next to the forward and backward pass). A rank's loss is its sum of per-sample
losses times N / m (m the global batch's size) and DDP averages the N gradients, so the gradient is the global
batch's mean, (1 / m) sum_i grad l_i, also for the short last batch of an epoch, where the ranks' shards differ in
size (a rank past its end holds an empty shard). Gradients being equal after DDP, the weights, Adam and the EMA
stay equal on every rank. Rank 0 alone writes: the run directory, the trace, the checkpoint, the resume state,
snapshots and examples (with the EMA or raw module, never the DDP wrapper: no collective while the others wait).
Each logged row's loss, loss by bucket and gradient norm are all-reduced over the ranks first (sums and counts),
so the trace holds the global batch's values. The trace's config records ``world_size``.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tracer import atomic, distributed, interrupts
from tracer.checkpoints import MODEL_FILE, check_replaceable, encode_checkpoint
from tracer.config import ConfigError, DataConfig, ModelConfig, ScheduleConfig, TrainConfig, check_prediction_schedule, to_dict
from tracer.data import Dataset, load_dataset, split
from tracer.forward import flow_sample, flow_velocity, q_sample, training_target
from tracer.models import null_label as model_null_label
from tracer.models import num_classes as model_num_classes
from tracer.models import objective, prediction_type
from tracer.models.registry import build_model, check_fits, parameter_count
from tracer.samplers.prediction import eps_and_x0
from tracer.schedules import Schedule
from tracer.trace import schema
from tracer.trace.writer import Series, TraceWriter

TRACE_FILE = "train.h5"
STATE_FILE = "train_state.pt"
RUN_FILES = (MODEL_FILE, TRACE_FILE, STATE_FILE)
SNAPSHOT_X_T = schema.SNAPSHOT_X_T
SNAPSHOT_LABELS = schema.SNAPSHOT_LABELS
DEFAULT_P_UNCOND = 0.1


@dataclass(frozen=True)
class TrainRecord:
    """What the steps since the previous record did; ``step`` counts optimizer steps done."""

    step: int
    epoch: int
    loss: float  # mean L_simple over the steps since the previous record
    lr: float  # learning rate of the last step
    grad_norm: float  # mean gradient norm (before clipping) over those steps
    loss_by_bucket: tuple[float, ...]  # mean loss per bucket of t (bucket k: t in [kT/K, (k+1)T/K)); nan where no t fell
    examples_seen: int


def drop_labels(labels: torch.Tensor, p_uncond: float, null: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each label replaced by the null label with probability p_uncond (Ho and Salimans 2022, Alg. 1, line 3)."""
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p_uncond
    return torch.where(drop, torch.full_like(labels, null), labels)


def bucket_of(t: torch.Tensor, T: int, buckets: int) -> torch.Tensor:  # noqa: N803
    """Bucket k of timestep t: floor(t K / T), so bucket k holds t in [kT/K, (k+1)T/K)."""
    return torch.div(t * buckets, T, rounding_mode="floor")


def resolve_p_uncond(config: TrainConfig, model: nn.Module) -> float:
    """``p_uncond``: the configured one, or 0.1 for a model with a null label and 0 for one without."""
    has_null = model_null_label(model) is not None
    if config.p_uncond is None:
        return DEFAULT_P_UNCOND if has_null else 0.0
    if config.p_uncond > 0 and not has_null:
        raise ConfigError(f"--p-uncond {config.p_uncond} needs a model with a null label; this one has none (use --p-uncond 0)")
    return config.p_uncond


def check_trainable(model: nn.Module, schedule: Schedule, data: Dataset, config: TrainConfig) -> float:
    """Refuse a model its data or schedule cannot train (one line each); the resolved ``p_uncond``."""
    if len(data) == 0:
        raise ConfigError("the training data is empty")
    if model_num_classes(model) > 0 and data.num_classes == 0:
        raise ConfigError("a class-conditional model needs labelled data; this data set has no classes")
    if prediction_type(model) == "eps" and float(schedule.alpha_bar[-1]) == 0.0:
        raise ConfigError("zero terminal SNR needs a network that predicts v or x0: x0 from eps divides by "
                          "sqrt(alpha_bar) = 0 at the last timestep (Lin et al. 2023); add --prediction v")
    return resolve_p_uncond(config, model)


class Trainer:
    """The training loop's state: model, EMA copy, Adam, the step counter and the random generator.

    In a process group of N > 1 ranks (tracer/distributed.py) ``network`` is the model wrapped in
    DistributedDataParallel and ``batch`` is per rank; ``model`` stays the plain module (its state dict, the EMA).
    """

    def __init__(self, model: nn.Module, schedule: Schedule, data: Dataset, config: TrainConfig, device: str | torch.device = "cpu") -> None:
        self.p_uncond = check_trainable(model, schedule, data, config)
        self.device = torch.device(device)
        self.model = model.to(self.device).train()
        self.schedule = schedule
        self.config = config
        self.x = data.x.to(self.device)
        self.conditional = model_num_classes(model) > 0
        self.labels = data.labels.to(self.device)
        self.null = model_null_label(model)
        self.prediction = prediction_type(model)
        self.objective = objective(model)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False) if config.ema else None
        self.rank, self.world_size = distributed.rank_and_world()
        self.network: nn.Module = self.model
        if self.world_size > 1:  # broadcasts rank 0's weights (into the EMA too); averages the gradients in backward()
            from torch.nn.parallel import DistributedDataParallel

            cuda = self.device.type == "cuda"
            self.network = DistributedDataParallel(self.model, device_ids=[torch.cuda.current_device()] if cuda else None)
            if self.ema is not None:
                self.ema.load_state_dict(self.model.state_dict())
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.global_batch = config.batch * self.world_size
        self.steps_per_epoch = math.ceil(len(data) / self.global_batch)
        self.total_steps = config.total_steps(len(data), self.world_size)
        self.step = 0
        self._order: tuple[int, torch.Tensor] | None = None

    @property
    def sampling_model(self) -> nn.Module:
        """The weights a sampler should use: the EMA copy when EMA is on."""
        return self.ema if self.ema is not None else self.model

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    def lr_at(self, step: int) -> float:
        """Linear warmup over ``warmup`` steps, then constant (so a longer resumed run extends a shorter one)."""
        warmup = self.config.warmup
        return self.config.lr * (min(1.0, (step + 1) / warmup) if warmup else 1.0)

    def ema_decay_at(self, step: int) -> float:
        """min(decay, (1 + s) / (10 + s)): a short warmup so early EMA weights do not lag the random init."""
        return min(self.config.ema_decay, (1.0 + step) / (10.0 + step))

    def batch_index(self, step: int) -> torch.Tensor:
        """Indices of step ``step``'s global batch (all ranks' rows): a slice of the permutation seeded by (seed, epoch)."""
        epoch, position = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.x), generator=generator).to(self.device))
        return self._order[1][position * self.global_batch : (position + 1) * self.global_batch]

    def shard(self, size: int) -> slice:
        """This rank's rows of a global batch of ``size``: [r b, (r + 1) b), shorter or empty at an epoch's short end."""
        b = self.config.batch
        return slice(min(self.rank * b, size), min((self.rank + 1) * b, size))

    def loss_per_sample(self, x0: torch.Tensor, labels: torch.Tensor | None, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """L_simple of each sample (Ho et al. 2020, Eq. 14: the eps MSE; for an x0 or v network the MSE to
        its own target) and the t drawn for it; labels already dropped. ``x0`` and ``labels`` are the global batch:
        t and eps are drawn for all of it (the same draws on every rank), the loss is this rank's ``rows``."""
        b = x0.shape[0]
        if self.objective == "flow":
            return self._flow_loss_per_sample(x0, labels, rows)
        t = torch.randint(0, self.schedule.T, (b,), generator=self.generator, device=self.device)[rows]  # t ~ U{0..T-1}
        eps = torch.randn(x0.shape, generator=self.generator, device=self.device)[rows]  # eps ~ N(0, I)
        x0, labels = x0[rows], None if labels is None else labels[rows]
        x_t = q_sample(self.schedule, x0, t, eps)  # Eq. 4
        output = self.network(x_t, t, labels)
        target = training_target(self.prediction, self.schedule, x0, t, eps).to(output.dtype)
        return (output - target).pow(2).flatten(1).mean(1), t

    def _flow_loss_per_sample(self, x0: torch.Tensor, labels: torch.Tensor | None, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """|| (eps - x0) - v_theta((1 - t) x0 + t eps, t T, y) ||^2 per sample, t ~ U[0, 1) (Lipman et al. 2023, Eq. 23), and
        the schedule index of each t (ceil(t T) - 1, for the loss buckets); drawn for the global batch, kept for ``rows``."""
        T = self.schedule.T  # noqa: N806
        t = torch.rand(x0.shape[0], generator=self.generator, device=self.device, dtype=torch.float64)[rows]  # t ~ U[0, 1)
        eps = torch.randn(x0.shape, generator=self.generator, device=self.device)[rows]  # eps ~ N(0, I)
        x0, labels = x0[rows], None if labels is None else labels[rows]
        x_t = flow_sample(x0, t, eps)
        output = self.network(x_t, t * T, labels)
        target = flow_velocity(x0, eps).to(output.dtype)
        index = (t * T).ceil().long().clamp(1, T) - 1
        return (output - target).pow(2).flatten(1).mean(1), index

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (this rank's per-sample loss, its t, gradient norm before clipping), still on the device."""
        index = self.batch_index(self.step)
        x0 = self.x[index]
        labels = None
        if self.conditional:
            labels = self.labels[index]
            if self.null is not None:
                labels = drop_labels(labels, self.p_uncond, self.null, self.generator)  # the global batch's mask
        per_sample, t = self.loss_per_sample(x0, labels, self.shard(len(index)))
        # N / m times this rank's sum, and DDP averages over the N ranks: the global batch's mean loss (its gradient),
        # whatever the shards' sizes; with one process, the batch mean.
        loss = per_sample.sum() * (self.world_size / len(index))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema(self.ema_decay_at(self.step))
        self.step += 1
        return per_sample.detach(), t, grad_norm.detach()

    @torch.no_grad()
    def _update_ema(self, decay: float) -> None:
        assert self.ema is not None
        ema_params: list[torch.Tensor] = list(self.ema.parameters())
        params: list[torch.Tensor] = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)  # ema <- decay ema + (1 - decay) w
        for ema_buffer, buffer in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    def run(self, until: int | None = None) -> Iterator[TrainRecord]:
        """Train to step ``until`` (default: the end), yielding a record every ``log_every`` steps and at the last."""
        stop = self.total_steps if until is None else min(until, self.total_steps)
        buckets = self.config.loss_buckets
        sums = torch.zeros(buckets, dtype=torch.float64, device=self.device)
        counts = torch.zeros(buckets, dtype=torch.float64, device=self.device)
        grad_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        steps, seen = 0, 0
        while self.step < stop:
            if self.world_size > 1:
                distributed.kill_hook_for_tests(self.rank, self.step)
            with interrupts.whole():  # a Ctrl-C takes effect between steps: the state saved is one a resume continues exactly
                per_sample, t, grad_norm = self.train_step()
            k = bucket_of(t, self.schedule.T, buckets)
            sums.index_add_(0, k, per_sample.to(torch.float64))
            counts.index_add_(0, k, torch.ones_like(sums[k]))
            grad_sum += grad_norm.to(torch.float64)
            steps += 1
            seen += per_sample.shape[0]
            if self.step % self.config.log_every == 0 or self.step == stop:
                # Every rank's sums and counts (the gradient norm is the same on all of them, after DDP), so the row
                # is the global batch's: one all-reduce and one sync per record.
                summed = torch.cat([sums, counts, torch.stack([grad_sum, grad_sum.new_tensor(float(seen))])])
                totals = distributed.all_reduce_sum(summed).cpu().numpy()
                sums_np, counts_np = totals[:buckets], totals[buckets : 2 * buckets]
                with np.errstate(invalid="ignore", divide="ignore"):
                    by_bucket = np.where(counts_np > 0, sums_np / counts_np, np.nan)
                yield TrainRecord(
                    step=self.step,
                    epoch=(self.step - 1) // self.steps_per_epoch,
                    loss=float(sums_np.sum() / counts_np.sum()),
                    lr=self.lr_at(self.step - 1),
                    grad_norm=float(totals[-2]) / (steps * self.world_size),
                    loss_by_bucket=tuple(float(v) for v in by_bucket),
                    examples_seen=int(totals[-1]),
                )
                sums.zero_()
                counts.zero_()
                grad_sum.zero_()
                steps, seen = 0, 0

    # -- resume state: tensors and plain values only, so torch.load(weights_only=True) reads it ----------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "ema": None if self.ema is None else {k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": self.generator.get_state().cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ConfigError("the resume state has no EMA weights; resume with EMA off, as the run was trained")
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["rng"])
        self.step = int(state["step"])


# -- the whole run: data, model, trace, checkpoint, resume ------------------------------------------


@dataclass(frozen=True, eq=False)
class TrainResult:
    run_dir: Path
    model: nn.Module  # the sampling weights (EMA when on), eval mode
    schedule: Schedule
    model_config: ModelConfig
    steps: int
    loss: float  # loss of the last record (nan when no step ran)
    seconds: float  # wall time of this call's training loop
    checkpoint: Path
    trace: Path | None
    records: list[TrainRecord] = field(default_factory=list)


def load_training_data(data: DataConfig) -> tuple[Dataset, Dataset]:
    """(train, held-out) for ``data``: the data set, split by ``data.seed`` (held-out empty for fraction 0)."""
    dataset = load_dataset(data.dataset, seed=data.seed, size=data.size)
    return split(dataset, data.held_out_fraction, seed=data.seed)


def resolve_model_config(model: ModelConfig, dataset: Dataset) -> ModelConfig:
    """Fill the model's shape and classes from the data; ConfigError if the data does not fit what was set."""
    resolved = model.resolve(dataset.shape, dataset.num_classes)
    if resolved.sample_shape != dataset.shape:
        shape = "x".join(map(str, dataset.shape))
        raise ConfigError(f"the model takes samples of shape {resolved.sample_shape}, the data has {shape}")
    if resolved.num_classes not in (0, dataset.num_classes):
        raise ConfigError(f"the model has {resolved.num_classes} classes, the data {dataset.num_classes}")
    return resolved


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Check what RUN_DIR holds against resume/overwrite (writing nothing); True if a previous run's files stay until
    this one is done.

    Nothing is deleted: an overwriting run replaces each file only when its successor is complete.
    """
    if resume and overwrite:
        raise ConfigError("give --resume or --overwrite, not both")
    if resume:
        if not (run_dir / STATE_FILE).is_file():
            raise ConfigError(f"nothing to resume: {run_dir / STATE_FILE} does not exist")
        check_replaceable(run_dir / MODEL_FILE, overwrite=True)
        return False
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a directory")
    previous = False
    partials = {atomic.partial_path(run_dir / name).name for name in RUN_FILES}  # a killed run's leftovers, removed below
    if run_dir.is_dir() and any(p.name not in partials for p in run_dir.iterdir()):
        if not overwrite:
            raise ConfigError(f"{run_dir} exists and is not empty; pass --overwrite to replace the run or --resume to continue it")
        check_replaceable(run_dir / MODEL_FILE, overwrite=True)
        previous = any((run_dir / name).exists() for name in RUN_FILES)
    return previous


def _make_run_dir(run_dir: Path) -> None:
    """RUN_DIR made, without what a killed run left half-written (rank 0's job)."""
    if run_dir.is_dir():
        for name in RUN_FILES:
            atomic.stale_partial(run_dir / name)
    run_dir.mkdir(parents=True, exist_ok=True)


def _state_bytes(trainer: Trainer, configs: dict[str, str]) -> bytes:
    buffer = io.BytesIO()  # serialized in memory, so a full disk is a plain write error (tracer/atomic.py)
    torch.save({**trainer.state_dict(), "configs": configs}, buffer)
    return buffer.getvalue()


def _save_state(path: Path, trainer: Trainer, configs: dict[str, str]) -> None:
    atomic.write_bytes(path, _state_bytes(trainer, configs))


def _load_state(path: Path, configs: dict[str, str]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable state is one user-facing line
        raise ConfigError(f"{path} is not a readable resume state ({type(error).__name__})") from None
    saved = state.get("configs", {}) if isinstance(state, dict) else {}
    for key in ("model", "data", "schedule"):
        if saved.get(key) != configs[key]:
            raise ConfigError(f"cannot resume: the {key} config differs from the run's ({saved.get(key)})")
    return state  # type: ignore[no-any-return]


def _snapshot_inputs(trainer: Trainer, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ONE fixed x_T (seeded, drawn on the CPU so every device sees the same) and fixed labels 0, 1, ... cycling."""
    config = trainer.config
    x_T = torch.randn((config.snapshot_batch, *shape), generator=torch.Generator().manual_seed(config.seed + 1))  # noqa: N806
    classes = model_num_classes(trainer.model)
    labels = torch.arange(config.snapshot_batch, dtype=torch.int64) % classes if classes else None
    return x_T.to(trainer.device), None if labels is None else labels.to(trainer.device)


def _snapshot(trainer: Trainer, x_T: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:  # noqa: N803
    """Samples of the EMA model from the fixed x_T: a short deterministic DDIM run (Song et al. 2021, eta = 0), or
    Euler steps of the flow ODE for a flow network."""
    from tracer.samplers import ddim

    x = x_T
    if trainer.objective == "flow":
        from tracer.samplers import SamplerConfig
        from tracer.samplers.loop import run

        config = SamplerConfig("flow_euler", steps=trainer.config.snapshot_steps)
        for record in run(trainer.sampling_model, trainer.schedule, config, x_T, labels=labels):
            x = record.x_prev
        return x
    for record in ddim.sample(trainer.sampling_model, trainer.schedule, x_T, steps=trainer.config.snapshot_steps, labels=labels):
        x = record.x_prev
    return x


@torch.no_grad()
def _examples(trainer: Trainer, data: Dataset) -> list[dict[str, Any]]:
    """Worked examples of the loss with the sampling model: fixed x0, t spread over 0..T-1, fixed eps."""
    n = min(trainer.config.examples, len(data))
    generator = torch.Generator().manual_seed(trainer.config.seed + 2)
    index = torch.randperm(len(data), generator=generator)[:n]
    x0 = data.x[index].to(trainer.device)
    t = torch.linspace(0, trainer.schedule.T - 1, n).round().to(torch.int64).to(trainer.device)
    eps = torch.randn(x0.shape, generator=generator).to(trainer.device)
    labels = data.labels[index].to(trainer.device) if trainer.conditional else None
    if trainer.objective == "flow":
        return _flow_examples(trainer, x0, t, eps, labels)
    x_t = q_sample(trainer.schedule, x0, t, eps)  # Eq. 4
    output = trainer.sampling_model(x_t, t, labels)
    target = training_target(trainer.prediction, trainer.schedule, x0, t, eps).to(output.dtype)
    loss = (output - target).pow(2).flatten(1).mean(1)  # Eq. 14 per example (the MSE to the network's own target)
    alpha_bar = torch.tensor(trainer.schedule.alpha_bar, dtype=torch.float64)[t.cpu()].tolist()
    label_values = labels if labels is not None else torch.full_like(t, schema.NO_LABEL)
    rows = []
    for i in range(n):
        row = {"x0": x0[i], "label": label_values[i], "t": t[i], "eps": eps[i], "x_t": x_t[i], "loss": loss[i]}
        if trainer.prediction == "eps":
            row["eps_pred"] = output[i]
        else:  # eps_pred: the eps the output implies (tracer/samplers/prediction.py); the output and its target as they are
            row["eps_pred"] = eps_and_x0(output[i].double(), x_t[i].double(), alpha_bar[i], trainer.prediction)[0].to(output.dtype)
            row["model_output"], row["target"] = output[i], target[i]
        rows.append(row)
    return rows


def _flow_examples(trainer: Trainer, x0: torch.Tensor, index: torch.Tensor, eps: torch.Tensor,
                   labels: torch.Tensor | None) -> list[dict[str, Any]]:
    """Worked examples of the flow loss at the schedule's times t = (index + 1) / T: x_t = (1 - t) x0 + t eps, the
    velocity v_theta and its target eps - x0, and the eps it implies, x_t + (1 - t) v_theta."""
    T = trainer.schedule.T  # noqa: N806
    t = (index.to(torch.float64) + 1.0) / T
    x_t = flow_sample(x0, t, eps)
    output = trainer.sampling_model(x_t, t * T, labels)
    target = flow_velocity(x0, eps).to(output.dtype)
    loss = (output - target).pow(2).flatten(1).mean(1)
    label_values = labels if labels is not None else torch.full_like(index, schema.NO_LABEL)
    rows = []
    for i in range(x0.shape[0]):
        eps_pred = (x_t[i].double() + (1.0 - float(t[i])) * output[i].double()).to(output.dtype)
        rows.append({"x0": x0[i], "label": label_values[i], "t": index[i], "eps": eps[i], "x_t": x_t[i], "loss": loss[i],
                     "eps_pred": eps_pred, "model_output": output[i], "target": target[i]})
    return rows


def _series(config: TrainConfig, total: int, shape: tuple[int, ...], prediction: str = "eps", start: int = 0,
            carried: Mapping[str, int] | None = None) -> list[Series]:
    """The three series of a training trace, their fields as the schema spells them (an x0 or v network's
    worked examples also hold its output and target); a run resumed at step ``start`` plans the ``carried`` rows of
    the trace before it and the rows of its steps after ``start`` (each run ends on a row and a snapshot of its own)."""
    optional_examples = () if prediction == "eps" else ("model_output", "target")
    carried = carried or {}
    left = total - start
    return [
        Series(schema.TRAIN, schema.series_specs(schema.TRAIN, vector=config.loss_buckets),
               planned=carried.get(schema.TRAIN, 0) + left // config.log_every + 2),
        Series(
            schema.SNAPSHOTS,
            schema.series_specs(schema.SNAPSHOTS, sample=shape, batch=config.snapshot_batch),
            planned=(carried.get(schema.SNAPSHOTS, 0) + left // config.snapshot_every + 2) if config.snapshot_every else 0,
        ),
        Series(schema.EXAMPLES, schema.series_specs(schema.EXAMPLES, sample=shape, optional=optional_examples), planned=config.examples),
    ]


def _old_rows(path: Path, step: int) -> dict[str, list[dict[str, Any]]]:
    """Rows of an earlier trace up to ``step`` (train and snapshots), to carry into the resumed trace."""
    from tracer.trace.reader import TraceError, open_trace

    rows: dict[str, list[dict[str, Any]]] = {schema.TRAIN: [], schema.SNAPSHOTS: []}
    if not path.is_file():
        return rows
    try:
        with open_trace(path) as trace:
            for name in rows:
                if trace.has_series(name):
                    columns = trace.series(name)
                    keep = np.flatnonzero(columns["step"] <= step)
                    rows[name] = [{k: v[i] for k, v in columns.items()} for i in keep]
    except (TraceError, OSError, KeyError) as error:  # never replaced by a trace without its history
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"cannot resume: the training history {path} cannot be read ({first}); "
                          f"recover it (noisescope recover {path}) or move it away") from None
    return rows


@dataclass(frozen=True, eq=False)
class Plan:
    """What ``preflight`` checked and built: the data, the resolved model config, the initial network, the schedule,
    the configs as the resume state stores them, the resume state (None for a new run), and whether a previous
    run's files stay until this one is done."""

    train_set: Dataset
    model_config: ModelConfig
    network: nn.Module
    schedule: Schedule
    configs: dict[str, str]
    state: dict[str, Any] | None
    keep_previous: bool


def preflight(
    run_dir: str | os.PathLike[str],
    *,
    data: DataConfig,
    model: ModelConfig,
    schedule: ScheduleConfig,
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    world_size: int = 1,
) -> Plan:
    """Every check of a training run, writing nothing: the data, the model against it and the schedule, the run's
    length at the global batch ``config.batch * world_size``, RUN_DIR against resume/overwrite, and the resume
    state's configs. ``train`` runs it first; ``noisescope train --nproc N`` runs it before starting N processes."""
    run_dir = Path(run_dir)
    train_set, _ = load_training_data(data)
    model_config = resolve_model_config(model, train_set)
    check_fits(model_config)
    check_prediction_schedule(model_config, schedule)
    config.total_steps(len(train_set), world_size)  # refuses absurd lengths
    keep_previous = _check_run_dir(run_dir, resume, overwrite)
    torch.manual_seed(config.seed)  # reproducible initial weights (the same on every rank)
    network = build_model(model_config)
    sched = schedule.build()
    check_trainable(network, sched, train_set, config)
    configs = {
        "model": json.dumps(to_dict(model_config)),
        "data": json.dumps(to_dict(data)),
        "schedule": json.dumps(to_dict(schedule)),
        "train": json.dumps(to_dict(config)),
    }
    state = _load_state(run_dir / STATE_FILE, configs) if resume else None
    if state is not None and config.ema and state.get("ema") is None:
        raise ConfigError("the resume state has no EMA weights; resume with EMA off, as the run was trained")
    return Plan(train_set, model_config, network, sched, configs, state, keep_previous)


def train(
    run_dir: str | os.PathLike[str],
    *,
    data: DataConfig | None = None,
    model: ModelConfig | None = None,
    schedule: ScheduleConfig | None = None,
    config: TrainConfig | None = None,
    device: str = "cpu",
    trace: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    tensor_dtype: str = "float32",
) -> TrainResult:
    """Train a noise predictor into RUN_DIR (model.safetensors, train.h5, train_state.pt); see the module docstring.

    In a process group (torchrun, ``--nproc``) every rank calls it; rank 0 alone writes, the others train and return.
    """
    data = data or DataConfig()
    schedule_config = schedule or ScheduleConfig()
    config = config or TrainConfig()
    run_dir = Path(run_dir)
    rank, world_size = distributed.rank_and_world()
    plan = preflight(run_dir, data=data, model=model or ModelConfig(), schedule=schedule_config, config=config, resume=resume,
                     overwrite=overwrite, world_size=world_size)  # before anything is written
    model_config, train_set, sched, configs, keep_previous = plan.model_config, plan.train_set, plan.schedule, plan.configs, plan.keep_previous
    trainer = Trainer(plan.network, sched, train_set, config, device=device)
    if plan.state is not None:
        trainer.load_state_dict(plan.state)
    main = rank == 0
    if main:
        _make_run_dir(run_dir)
    trace_config = {
        "model": to_dict(model_config),
        "data": to_dict(data),
        "schedule": to_dict(schedule_config),
        "train": to_dict(config),
        "device": device,
        "world_size": world_size,
        "parameters": parameter_count(plan.network),
        "train_examples": len(train_set),
        "total_steps": trainer.total_steps,
        "p_uncond": trainer.p_uncond,
    }
    trace_path = run_dir / TRACE_FILE if trace else None
    records: list[TrainRecord] = []
    start = time.perf_counter()
    if not main:  # the other ranks train in step with rank 0 and write nothing
        for record in trainer.run():
            records.append(record)
        return TrainResult(run_dir, trainer.sampling_model.eval(), sched, model_config, trainer.step,
                           records[-1].loss if records else math.nan, time.perf_counter() - start, run_dir / MODEL_FILE, None, records)
    with _TraceSink(trace_path, trainer, train_set, trace_config, tensor_dtype, resume, live=not keep_previous) as sink:
        bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc=f"train {run_dir.name}", unit="step", disable=not progress)
        # An overwriting run saves no resume state until it is done: the previous run's stays whole.
        next_save = (trainer.step // config.save_every + 1) * config.save_every if config.save_every and not keep_previous else None
        last_step = trainer.step
        try:
            for record in trainer.run():
                records.append(record)
                sink.record(record)
                bar.update(record.step - last_step)
                bar.set_postfix(loss=f"{record.loss:.4f}", refresh=False)
                last_step = record.step
                if next_save is not None and record.step >= next_save and record.step < trainer.total_steps:
                    _save_state(run_dir / STATE_FILE, trainer, configs)
                    next_save += config.save_every
        except KeyboardInterrupt:
            if not keep_previous:  # an overwriting run leaves the previous run as it was instead
                _save_state(run_dir / STATE_FILE, trainer, configs)  # Ctrl-C: leave a resumable run behind
            raise
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        sink.finish()
    extra = {"step": trainer.step, "ema": config.ema, "data": to_dict(data), "train": to_dict(config),
             "loss": records[-1].loss if records else None}
    checkpoint = run_dir / MODEL_FILE
    # Every new file whole beside its predecessor first, then the replacements, model last.
    state_partial = atomic.write_partial(run_dir / STATE_FILE, _state_bytes(trainer, configs))
    try:
        model_bytes = encode_checkpoint(trainer.sampling_model, model_config=model_config, schedule_config=schedule_config, extra=extra)
        model_partial = atomic.write_partial(checkpoint, model_bytes)
    except BaseException:
        state_partial.unlink(missing_ok=True)
        raise
    sink.publish()
    atomic.replace(state_partial, run_dir / STATE_FILE)
    atomic.replace(model_partial, checkpoint)
    if keep_previous and trace_path is None:
        (run_dir / TRACE_FILE).unlink(missing_ok=True)  # the previous run's history, now that this run is complete
    sampling_model = trainer.sampling_model.eval()
    loss = records[-1].loss if records else math.nan
    return TrainResult(run_dir, sampling_model, sched, model_config, trainer.step, loss, seconds, checkpoint, trace_path, records)


class _TraceSink:
    """The training trace's consumer: train rows, snapshots at their cadence, examples at the end. A no-op without a path."""

    def __init__(
        self, path: Path | None, trainer: Trainer, data: Dataset, config: dict[str, Any], tensor_dtype: str, resume: bool,
        live: bool = True,
    ) -> None:
        self.path, self.trainer, self.data = path, trainer, data
        self.writer: TraceWriter | None = None
        every = trainer.config.snapshot_every
        self.next_snapshot = (trainer.step // every + 1) * every if every else None
        if path is None:
            return
        old = _old_rows(path, trainer.step) if resume else {}
        self.x_T, self.labels = _snapshot_inputs(trainer, data.shape)  # noqa: N806
        buckets = trainer.config.loss_buckets
        edges = [math.ceil(k * trainer.schedule.T / buckets) for k in range(buckets + 1)]
        self.writer = TraceWriter(
            path,
            kind="training",
            config=config,
            series=_series(trainer.config, trainer.total_steps, data.shape, trainer.prediction, start=trainer.step if resume else 0,
                           carried={name: len(rows) for name, rows in old.items()}),
            schedule=trainer.schedule,
            tensor_dtype=tensor_dtype,
            overwrite=True,
            live=live,  # an overwriting run puts nothing at the previous run's names until it is done
            attrs={schema.ATTR_LOSS_BUCKET_EDGES: edges, schema.ATTR_RESUMED_AT: trainer.step if resume else -1},
            finals={SNAPSHOT_X_T: (tuple(self.x_T.shape), schema.TENSOR), SNAPSHOT_LABELS: ((trainer.config.snapshot_batch,), "int64")},
        )
        labels = self.labels if self.labels is not None else torch.full((trainer.config.snapshot_batch,), schema.NO_LABEL)
        self.writer.write_final({SNAPSHOT_X_T: self.x_T, SNAPSHOT_LABELS: labels})
        for name, rows in old.items():
            for row in rows:
                self.writer.append(name, row)
        if resume:
            self.writer.publish()  # every old row is in: the new file replaces the old one, and grows at its path
        if every and trainer.step == 0:
            self._snapshot()  # step 0: what the untrained network makes of x_T

    def _snapshot(self) -> None:
        assert self.writer is not None
        samples = _snapshot(self.trainer, self.x_T, self.labels)
        self.writer.append(schema.SNAPSHOTS, {"step": self.trainer.step, "samples": samples})

    def record(self, record: TrainRecord) -> None:
        if self.writer is None:
            return
        self.writer.append(
            schema.TRAIN,
            {"step": record.step, "epoch": record.epoch, "loss": record.loss, "lr": record.lr,
             "grad_norm": record.grad_norm, "loss_by_bucket": np.asarray(record.loss_by_bucket)},
        )
        last = record.step == self.trainer.total_steps
        if self.next_snapshot is not None and (record.step >= self.next_snapshot or last):
            self._snapshot()
            while self.next_snapshot <= record.step:
                self.next_snapshot += self.trainer.config.snapshot_every

    def finish(self) -> None:
        if self.writer is None:
            return
        for row in _examples(self.trainer, self.data):
            self.writer.append(schema.EXAMPLES, row)

    def __enter__(self) -> _TraceSink:
        return self

    def publish(self) -> None:
        """Put the closed, complete trace at its path (a no-op where it is there already)."""
        if self.writer is not None:
            self.writer.publish()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self.writer is not None:  # a complete trace beside a previous one waits for publish()
            self.writer.close("failed" if exc_type is not None else "complete", replace=False)
