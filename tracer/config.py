"""Configuration: one frozen dataclass per concern, validated on construction.

Every config turns into plain JSON (``to_dict``) for the ``config`` attribute of
a trace and the metadata of a checkpoint, and back (``from_dict``).
Modes are ``Literal`` names; an unknown one raises, it is never corrected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

from tracer.schedules import DEFAULT_TIMESTEPS, SCHEDULE_NAMES

SamplerName = Literal["ddpm", "ddim"]
Spacing = Literal["leading", "trailing", "linspace"]
Variance = Literal["beta", "beta_tilde"]
FinalAlphaBar = Literal["one", "alpha_bar_0"]
Preset = Literal["none", "seed-report"]
TensorDtype = Literal["float32", "float16"]

C = TypeVar("C")


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
    name: str = "linear"
    timesteps: int | None = None  # None: the schedule's default (1000, 300 for seed-report)

    def __post_init__(self) -> None:
        if self.name not in SCHEDULE_NAMES:
            raise ConfigError(f"unknown schedule {self.name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
        if self.timesteps is not None and self.timesteps < 2:
            raise ConfigError(f"--timesteps must be at least 2, got {self.timesteps}")

    @property
    def T(self) -> int:  # noqa: N802
        return DEFAULT_TIMESTEPS[self.name] if self.timesteps is None else self.timesteps


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample. ``steps`` None means all T steps for DDPM and 50 for DDIM."""

    sampler: str = "ddim"
    steps: int | None = None
    eta: float = 0.0
    spacing: str = "leading"
    variance: str = "beta_tilde"  # DDPM only: sigma^2 = beta_t or the posterior variance beta_tilde_t
    clip: bool | None = None  # clip x0_pred to [-1, 1]; None: on for DDPM, off for DDIM
    final_alpha_bar: str = "one"  # DDIM: alpha_bar_prev of the last step, 1 or alpha_bar_0
    guidance: float | None = None  # classifier-free guidance scale s; None: no guidance
    preset: str = "none"

    def __post_init__(self) -> None:
        check_choice("sampler", self.sampler, SamplerName)
        check_choice("spacing", self.spacing, Spacing)
        check_choice("variance", self.variance, Variance)
        check_choice("final alpha_bar", self.final_alpha_bar, FinalAlphaBar)
        check_choice("preset", self.preset, Preset)
        if not (isinstance(self.eta, (int, float)) and 0.0 <= self.eta <= 1.0):
            raise ConfigError(f"--eta must lie in [0, 1], got {self.eta}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}")
        if self.guidance is not None and (math.isnan(self.guidance) or math.isinf(self.guidance) or self.guidance < 0):
            raise ConfigError(f"--guidance must be a finite number >= 0, got {self.guidance}")

    def steps_for(self, T: int) -> int:  # noqa: N803
        """The number of reverse steps for a T-step schedule; raises if out of [1, T]."""
        steps = self.steps if self.steps is not None else (T if self.sampler == "ddpm" else min(50, T))
        if not 1 <= steps <= T:
            raise ConfigError(f"--steps must lie in [1, {T}] for this model's T={T}, got {steps}")
        if self.sampler == "ddpm" and steps != T:
            raise ConfigError(f"DDPM runs all T={T} steps; use --sampler ddim for {steps} steps")
        return steps

    def clip_x0(self) -> bool:
        return (self.sampler == "ddpm") if self.clip is None else self.clip
