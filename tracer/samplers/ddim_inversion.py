"""DDIM inversion: Song et al. 2021, Sec. 4.3, DDIM's Eq. 12 with sigma = 0 run from data towards noise
(a sampler plug-in, tracer/samplers/base.py).

With eta = 0 the DDIM update is the Euler step of an ODE (Sec. 4.3, Eq. 14), so it can be run
the other way: from the data to the x_T that DDIM sampling maps back to it. The plan visits the
DDIM timesteps of ``steps`` and ``spacing`` in ASCENDING order, starting from t = 0 (prepended
where the spacing does not visit it, as ``trailing`` does not): the data is x at t = 0
(alpha_bar_0), and step i goes from t_i to t_{i+1}, the larger timestep the next step starts at:

    x0_pred    = (x_{t_i} - sqrt(1 - alpha_bar_{t_i}) eps) / sqrt(alpha_bar_{t_i}),   eps = eps_theta(x_{t_i}, t_i)
    x_{t_{i+1}} = sqrt(alpha_bar_{t_{i+1}}) x0_pred + sqrt(1 - alpha_bar_{t_{i+1}}) eps      (Eq. 12, sigma = 0)

A step records t = t_i and t_prev = t_{i+1} (the timestep it moves to, now larger) with
alpha_bar_prev = alpha_bar[t_{i+1}]; the last step lands at the largest timestep of the plan
(980 for 50 leading steps of T = 1000, 999 for trailing) and the trace's ``samples`` is the x_T
found. Sampling back with DDIM (eta 0) over the same timesteps, descending, ending at
alpha_bar_0 (``resample_options``), returns to the data up to the error of evaluating eps at
t_i going up and at t_{i+1} coming down, which shrinks as the steps grow.

diffusers' DDIMInverseScheduler (and the pipelines that use it) differs: it starts the data at
alpha_bar = 1 (``set_alpha_to_one``) one step below the first timestep, and evaluates the network
at the timestep a step moves TO, on the x of the timestep it moves from. noisescope evaluates
eps_theta(x_t, t) at the x and t it has, as DDIM's sampler does (docs/inversion.md).

Torch-free, like ddim.py: the step is ``ddim.ddim_step``; the shared loop runs it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tracer.config import ConfigError
from tracer.samplers.base import Step, check_literals, check_steps, option, sampling
from tracer.samplers.ddim import DEFAULT_STEPS, ddim_step
from tracer.samplers.timesteps import ddim_timesteps

NAME = "ddim-inversion"
TITLE = "DDIM inversion"
REFERENCE = "Song et al. 2021, Sec. 4.3 and Eq. 12"
DIRECTION = "ascending"  # the plan moves from data (t = 0) towards noise; ddpm and ddim descend

Spacing = Literal["leading", "trailing", "linspace"]


@dataclass(frozen=True)
class Options:
    """DDIM inversion's options; ``steps`` None is min(50, T); ``timesteps`` an explicit ascending list from 0 instead."""

    steps: int | None = option(None, "DDIM's steps whose timesteps the inversion climbs through, 2..T (default 50, or T if "
                               "smaller); it starts at t = 0 and ends at the largest")
    spacing: str = option("leading", "which timesteps: leading, trailing or linspace (DDIM's spacings)", choices=Spacing)
    clip: bool = option(False, "clip x0_pred to [-1, 1] (the direction term keeps the raw eps)")
    timesteps: tuple[int, ...] | None = dataclasses.field(default=None, metadata={"help": "explicit timesteps, ascending from 0", "cli": False})

    def __post_init__(self) -> None:
        check_literals(self)
        check_steps(self.steps)
        if not isinstance(self.clip, bool):
            raise ConfigError(f"clip must be true or false, got {self.clip!r}")
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", tuple(int(t) for t in self.timesteps))


PRESETS: dict[str, dict[str, Any]] = {}


def check_ascending(timesteps: Sequence[int], T: int) -> None:  # noqa: N803
    """Raise unless ``timesteps`` starts at 0, has at least two entries, ascends strictly and stays inside [0, T-1]."""
    if len(timesteps) < 2:
        raise ConfigError(f"the inversion needs at least two timesteps to move between, got {list(timesteps)}")
    if timesteps[0] != 0:
        raise ConfigError(f"the inversion starts from the data at t = 0; its timesteps must start at 0, got {timesteps[0]}")
    if any(a >= b for a, b in zip(timesteps, timesteps[1:])):
        raise ConfigError(f"the inversion's timesteps must be strictly ascending, got {list(timesteps)}")
    if timesteps[-1] > T - 1:
        raise ConfigError(f"timesteps must lie in [0, {T - 1}], got up to {timesteps[-1]}")


def inversion_timesteps(T: int, steps: int, spacing: str = "leading") -> list[int]:  # noqa: N803
    """DDIM's timesteps for ``steps`` and ``spacing``, ascending, with t = 0 in front where the spacing does not visit it."""
    ascending = ddim_timesteps(T, steps, spacing)[::-1]
    if ascending[0] != 0:
        ascending = [0, *ascending]
    if len(ascending) < 2:
        raise ConfigError(f"--steps {steps} with {spacing} spacing visits only t = 0: the inversion needs at least --steps 2")
    return ascending


def resolve(options: Options, T: int, alpha_bar: Any = None) -> Options:  # noqa: N803
    """Every default filled in for a T-step schedule: ``steps`` and the visited ``timesteps`` (ascending, from 0)."""
    if options.timesteps is not None:
        check_ascending(options.timesteps, T)
        if options.steps is not None and options.steps != len(options.timesteps):
            raise ConfigError("give the inversion either steps or timesteps, not both")
        return dataclasses.replace(options, steps=len(options.timesteps))
    steps = options.steps if options.steps is not None else min(DEFAULT_STEPS, T)
    if not 1 <= steps <= T:
        raise ConfigError(f"--steps must lie in [1, {T}] for this model's T={T}, got {steps}")
    return dataclasses.replace(options, steps=steps, timesteps=tuple(inversion_timesteps(T, steps, options.spacing)))


def plan(resolved: Options, T: int) -> list[tuple[int, int]]:  # noqa: N803
    """(t_i, t_{i+1}) of every step: each moves up to the next timestep; the last lands at the largest."""
    assert resolved.timesteps is not None, "plan() takes resolve()'s options"
    ts = list(resolved.timesteps)
    check_ascending(ts, T)
    return list(zip(ts[:-1], ts[1:]))


def resample_options(resolved: Options) -> dict[str, Any]:
    """The ``ddim`` options that sample back over the same timesteps: descending from the largest, eta 0, the last
    step ending at alpha_bar_0 (t = 0, where the inversion started), with the inversion's clipping."""
    assert resolved.timesteps is not None, "resample_options() takes resolve()'s options"
    return {"timesteps": tuple(reversed(resolved.timesteps[1:])), "eta": 0.0, "spacing": resolved.spacing,
            "final_alpha_bar": "alpha_bar_0", "clip": resolved.clip}


def sigma(resolved: Options, step: Step) -> float:
    return 0.0  # deterministic: eta = 0


def update(resolved: Options, step: Step, x_t: Any, eps: Any, x0_pred: Any, noise: Any, sigma: float) -> Any:
    return ddim_step(x0_pred, eps, step.alpha_bar_prev, 0.0, noise)  # Eq. 12 towards alpha_bar of the next, larger t


# -- its equations (tracer/equations) ------------------------------------------------------------------------


def check_step(view: Any, i: int) -> Any:
    """DDIM's Eq. 12 (tracer.equations.checks.ddim_step) at the step, which must add no noise (sigma = 0)."""
    from tracer.equations import checks
    from tracer.equations.context import Residual

    residual = checks.ddim_step(view, i)
    if residual is not None and view.scalar("sigma", i) != 0.0:
        return Residual(math.inf, 0.0, 1.0, f"sigma {view.scalar('sigma', i):.6g} is not 0: DDIM inversion adds no noise (eta 0)")
    return residual


def _v_step(v: Any) -> str:
    a = v.n("alpha_bar_prev", r"\sqrt{\bar\alpha_{t_{i+1}}}", math.sqrt)
    b = v.n("alpha_bar_prev", r"\sqrt{1-\bar\alpha_{t_{i+1}}}", lambda x: math.sqrt(max(1.0 - x, 0.0)))
    return rf"x_{{{v.t('t_prev', 't_{i+1}')}}} = {a}\,\hat x_0 + {b}\,\epsilon_\theta(x_{{{v.t()}}}, {v.t()})"


STEP_EQUATION = "ddim_inversion.step"
STEP_NEEDS: tuple[str, ...] = ("x_t", "x0_pred", "eps", "noise", "sigma", "alpha_bar_prev")

LATEX = (r"x_{t_{i+1}} = \sqrt{\bar\alpha_{t_{i+1}}}\,\hat x_0(x_{t_i}) + \sqrt{1-\bar\alpha_{t_{i+1}}}\,\epsilon_\theta(x_{t_i}, t_i),"
         r"\quad t_{i+1} > t_i")


def equations() -> tuple[Any, ...]:
    """Its entries for the equation registry (tracer/equations/registry.py), which calls this once it loads."""
    from tracer.equations.equation import Equation

    return (
        Equation(
            STEP_EQUATION, "DDIM inversion step", "Song et al. 2021, Sec. 4.3 and Eq. 12 (sigma = 0)", LATEX,
            "tracer.samplers.ddim.ddim_step", ("x_t", "x0_pred", "eps"),
            check=check_step, applies_to=sampling("x0_pred", "eps", "noise", "sigma", sampler=NAME), values=_v_step,
        ),
    )
