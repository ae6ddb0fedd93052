"""Configuration: one frozen dataclass per concern, validated on construction.

Every config turns into plain JSON (``to_dict``) for the ``config`` attribute of
a trace and the metadata of a checkpoint, and back (``from_dict``).
Modes are ``Literal`` names; an unknown one raises, it is never corrected.
How to sample is each sampler's own module's business (tracer/samplers/config.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

from tracer.schedules import DEFAULT_TIMESTEPS, SCHEDULE_NAMES, Schedule, make_schedule

TensorDtype = Literal["float32", "float16"]

C = TypeVar("C")

# Beyond these a run would not finish (or its schedule not fit in memory): refused, never started.
MAX_TIMESTEPS = 100_000
MAX_TRAIN_STEPS = 10_000_000


class ConfigError(ValueError):
    """A configuration value is out of range or unknown; the message is one line for the user."""


def check_choice(field: str, value: object, literal: object) -> None:
    choices = get_args(literal)
    if value not in choices:
        raise ConfigError(f"unknown {field} {value!r}; choose one of {', '.join(map(str, choices))}")


def to_dict(config: object) -> dict[str, Any]:
    return dataclasses.asdict(config)  # type: ignore[call-overload, no-any-return]


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a config from ``to_dict`` output, ignoring keys a newer version added."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ScheduleConfig:
    """A beta schedule by name and length, optionally rescaled to zero terminal SNR (Lin et al. 2023, Alg. 1)."""

    name: str = "linear"
    timesteps: int | None = None  # None: the schedule's default (1000, 300 for seed-report)
    zero_terminal_snr: bool = False

    def __post_init__(self) -> None:
        if self.name not in SCHEDULE_NAMES:
            raise ConfigError(f"unknown schedule {self.name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
        if self.timesteps is not None and not 2 <= self.timesteps <= MAX_TIMESTEPS:
            raise ConfigError(f"--timesteps must lie in [2, {MAX_TIMESTEPS:,}], got {self.timesteps:,}")
        if not isinstance(self.zero_terminal_snr, bool):
            raise ConfigError(f"zero_terminal_snr must be true or false, got {self.zero_terminal_snr!r}")

    @property
    def T(self) -> int:  # noqa: N802
        return DEFAULT_TIMESTEPS[self.name] if self.timesteps is None else self.timesteps

    def build(self) -> Schedule:
        """The schedule this config names."""
        return make_schedule(self.name, self.T, zero_terminal_snr=self.zero_terminal_snr)


# -- models, data, training (tracer/models/registry.py, tracer/data.py, tracer/training.py) ---------

ModelName = Literal["unet", "mlp", "seed-unet"]
PredictionType = Literal["eps", "x0", "v"]  # what the network predicts (tracer/samplers/prediction.py)
Objective = Literal["diffusion", "flow"]  # what the network is trained on (tracer/training.py, tracer/forward.py)
DEFAULT_TRAIN_STEPS = 1200  # about 2.3 minutes for digits on 2 CPU cores (default U-Net, batch 128)


def _positive_ints(field: str, values: Any) -> tuple[int, ...]:
    items = tuple(values)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in items):
        raise ConfigError(f"{field} must be positive integers, got {list(items)}")
    return items


@dataclass(frozen=True)
class ModelConfig:
    """Which network and its size; ``build_model`` in tracer/models/registry.py makes it.

    ``sample_shape`` and ``num_classes`` None mean "from the data" (``resolve``).
    ``channels`` () is the model's default: the U-Net's channels per level, the MLP's
    hidden widths, or seed-unet's base channel count (one number). ``prediction`` is what
    the network is trained to predict: the noise eps (Ho et al. 2020), the clean sample x0,
    or v (Salimans and Ho 2022); the checkpoint records it and every sampler honours it.
    ``objective`` is the process it is trained on: ``diffusion`` (the VP forward process of Ho et al. 2020)
    or ``flow`` (flow matching, Lipman et al. 2023; rectified flow, Liu et al. 2023: x_t = (1 - t) x0 + t eps),
    whose network predicts the velocity v = eps - x0 (``prediction`` "v", meaning the flow's velocity) on the
    ``flow`` schedule; the flow samplers (tracer/samplers/flow.py) take such a network, the others refuse it.
    """

    name: str = "unet"
    sample_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    channels: tuple[int, ...] = ()
    prediction: str = "eps"  # eps, x0 or v: what the network is trained to predict
    objective: str = "diffusion"  # diffusion or flow (a flow network predicts v = eps - x0)

    def __post_init__(self) -> None:
        check_choice("model", self.name, ModelName)
        check_choice("prediction type", self.prediction, PredictionType)
        check_choice("objective", self.objective, Objective)
        if self.objective == "flow" and self.prediction != "v":
            raise ConfigError(f"--objective flow trains a velocity network (v = eps - x0): its prediction is v, not {self.prediction!r}")
        # JSON hands lists back; keep tuples so configs compare equal after a round trip.
        object.__setattr__(self, "channels", _positive_ints("--channels", self.channels))
        if self.sample_shape is not None:
            object.__setattr__(self, "sample_shape", _positive_ints("the sample shape", self.sample_shape))
        if self.num_classes is not None and (not isinstance(self.num_classes, int) or self.num_classes < 0):
            raise ConfigError(f"the number of classes must be an integer >= 0, got {self.num_classes}")

    @property
    def resolved(self) -> bool:
        return self.sample_shape is not None and self.num_classes is not None

    def resolve(self, sample_shape: tuple[int, ...], num_classes: int) -> ModelConfig:
        """Fill the fields left to the data; fields already set are kept (a mismatch is found when training)."""
        return dataclasses.replace(
            self,
            sample_shape=tuple(sample_shape) if self.sample_shape is None else self.sample_shape,
            num_classes=num_classes if self.num_classes is None else self.num_classes,
        )


def check_prediction_schedule(model: ModelConfig, schedule: ScheduleConfig) -> None:
    """Zero terminal SNR needs a network that predicts v or x0: from eps, x0 = (x_t - sqrt(1 - alpha_bar) eps) /
    sqrt(alpha_bar) divides by 0 at the last timestep (Lin et al. 2023, Sec. 3.2). A flow network trains on the
    ``flow`` schedule (its path), and only it does."""
    if model.objective == "flow" and schedule.name != "flow":
        raise ConfigError(f"--objective flow trains on the flow path x_t = (1 - t) x0 + t eps, not on a beta schedule; "
                          f"drop --schedule {schedule.name}")
    if model.objective == "flow" and schedule.zero_terminal_snr:
        raise ConfigError("--zero-terminal-snr does not apply to --objective flow: the flow path already ends at pure noise (t = 1)")
    if model.objective != "flow" and schedule.name == "flow":
        raise ConfigError("the flow schedule is the path of --objective flow; a diffusion network trains on linear, cosine or seed-report")
    if schedule.zero_terminal_snr and model.prediction == "eps":
        raise ConfigError("--zero-terminal-snr needs --prediction v (or x0): an eps network's x0 divides by "
                          "sqrt(alpha_bar) = 0 at the last timestep (Lin et al. 2023)")


@dataclass(frozen=True)
class DataConfig:
    """Which data: ``name`` or ``name:DIR`` (tracer/data.py), a seed for toys and the split.

    ``held_out`` is the fraction kept out of training (a deterministic split by
    ``seed``); None means 0.2 for digits (the benchmark's classifier trains on the
    held-out digits) and 0 for every other data set.
    """

    dataset: str = "digits"
    seed: int = 0
    size: int | None = None  # number of points of a 2-D toy set
    held_out: float | None = None

    def __post_init__(self) -> None:
        from tracer.data import parse_spec  # tracer.data imports ConfigError from here

        parse_spec(self.dataset)
        if self.size is not None and self.size < 1:
            raise ConfigError(f"--size must be at least 1, got {self.size}")
        if self.held_out is not None and not 0.0 <= self.held_out < 1.0:
            raise ConfigError(f"the held-out fraction must lie in [0, 1), got {self.held_out}")

    @property
    def held_out_fraction(self) -> float:
        if self.held_out is not None:
            return self.held_out
        return 0.2 if self.dataset.partition(":")[0].strip().lower() == "digits" else 0.0


@dataclass(frozen=True)
class TrainConfig:
    """How to train (tracer/training.py). ``steps`` or ``epochs`` (not both); neither: DEFAULT_TRAIN_STEPS.

    ``p_uncond`` None means 0.1 for a model with a null label, 0 for one without.
    ``snapshot_every`` 0 turns snapshots off; ``save_every`` 0 saves the resume state
    only at the end (and on Ctrl-C).
    """

    steps: int | None = None
    epochs: int | None = None
    batch: int = 128
    lr: float = 2e-3
    warmup: int = 100  # linear learning-rate warmup over this many steps, then constant
    p_uncond: float | None = None
    ema: bool = True
    ema_decay: float = 0.995
    grad_clip: float | None = 1.0
    seed: int = 0
    log_every: int = 10
    snapshot_every: int = 250
    snapshot_batch: int = 20
    snapshot_steps: int = 20
    examples: int = 8
    loss_buckets: int = 10
    save_every: int = 500

    def __post_init__(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("give --steps or --epochs, not both")
        for name in ("steps", "epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be at least 1, got {value}")
        if self.steps is not None and self.steps > MAX_TRAIN_STEPS:
            raise ConfigError(f"--steps must be at most {MAX_TRAIN_STEPS:,}, got {self.steps:,}")
        for name in ("batch", "log_every", "snapshot_batch", "snapshot_steps", "loss_buckets"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup", "snapshot_every", "save_every", "examples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.p_uncond is not None and not 0.0 <= self.p_uncond <= 1.0:
            raise ConfigError(f"--p-uncond must lie in [0, 1], got {self.p_uncond}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"--ema-decay must lie in [0, 1), got {self.ema_decay}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ConfigError(f"--grad-clip must be a finite number > 0 (or off), got {self.grad_clip}")

    def total_steps(self, num_examples: int, world_size: int = 1) -> int:
        """Optimizer steps of the whole run: ``steps``, or ``epochs`` passes over ``num_examples`` at the global
        batch ``batch * world_size`` (``batch`` is per process)."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            steps = self.epochs * math.ceil(num_examples / (self.batch * world_size))
            if steps > MAX_TRAIN_STEPS:
                processes = f" on {world_size} processes" if world_size > 1 else ""
                raise ConfigError(f"--epochs {self.epochs} of {num_examples:,} examples at --batch {self.batch}{processes} is {steps:,} "
                                  f"steps, more than {MAX_TRAIN_STEPS:,}; give fewer epochs or a larger batch")
            return steps
        return DEFAULT_TRAIN_STEPS
