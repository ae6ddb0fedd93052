"""The sampler plug-in interface: what one sampler module declares, and the helpers they share.

A sampler is one module of ``tracer/samplers`` (docs/adding-a-sampler.md) that declares,
in one place:

- ``NAME``, ``TITLE`` and ``REFERENCE`` (the paper and its equation or algorithm);
- ``Options``: a frozen dataclass of its options, validated in ``__post_init__`` (the only
  place they are checked); each field's ``metadata["help"]`` is its ``--help`` line, and
  ``noisescope sample --sampler NAME`` takes one flag per field;
- ``PRESETS``: named option sets it supports (``{"seed-report": {...}}``);
- ``resolve(options, T, alpha_bar)``: the options with every default filled in for a T-step schedule
  (``steps``, ``clip``, the visited timesteps; a sigma-space sampler's noise levels, which need the
  schedule's ``alpha_bar``, None where only T is known): what the trace's config records;
- ``plan(resolved, T)``: the (t, t_prev) pair of every step, in order, where the last step lands;
- ``sigma(resolved, step)`` and ``update(resolved, step, x_t, eps, x0_pred, noise, sigma)``:
  the step, written on tensors and floats only (works on torch and NumPy alike);
- ``STEP_EQUATION``, ``STEP_NEEDS`` and ``equations()``: its equations for the registry
  (tracer/equations), torch-free, so the viewer starts without torch; built when the registry
  loads (the sampler modules load before it).

The shared loop (tracer/samplers/loop.py) runs the model, guidance and the prediction-type
conversions, clips x0_pred, draws the noise and builds the records; a sampler module never
imports torch.

A sampler in sigma space (Karras et al. 2022: x = x0 + sigma eps; tracer/samplers/karras.py)
declares ``SPACE = "sigma"`` and, instead of ``sigma`` and ``update``, one
``sigma_step(resolved, step, x, evaluate, draw, previous)`` that returns a ``SigmaUpdate``: it may
evaluate the network more than once (Heun), draw noise before the evaluation (churn) or after
it (ancestral steps), and read the previous step's update (multistep solvers). The loop gives it
``evaluate(x, sigma)`` (the network at that noise level, as an ``Evaluation``) and ``draw()``
(z ~ N(0, I) from the run's generator), and records what it returns.

A sampler of a flow-matching network (x_t = (1 - t) x0 + t eps; tracer/samplers/flow.py) declares ``SPACE = "flow"``
and one ``flow_step`` with the same signature: the same mechanism, its levels the flow times t_i (a ``SigmaStep``'s
``sigma_t`` and ``sigma_next`` hold t_i and t_{i+1}), ``evaluate(x, t)`` the velocity network at t, with the
velocity as the ``Evaluation``'s ``output``.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, get_args

from tracer.config import ConfigError


def option(default: Any, help: str, *, choices: object = None) -> Any:  # noqa: A002 - argparse's word
    """A dataclass field with its ``--help`` text (and, for a ``Literal``, its choices) in the metadata."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(get_args(choices))
    return field(default=default, metadata=metadata)


def check_unit_interval(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"--{name.replace('_', '-')} must lie in [0, 1], got {value!r}")


def check_literals(options: object) -> None:
    """Every field declared with ``choices`` holds one of them (``check_choice``'s one-line error otherwise)."""
    for f in dataclasses.fields(options):  # type: ignore[arg-type]
        choices = f.metadata.get("choices")
        if choices is not None and getattr(options, f.name) not in choices:
            raise ConfigError(f"unknown {f.name.replace('_', ' ', 1)} {getattr(options, f.name)!r}; choose one of {', '.join(map(str, choices))}")


def check_steps(steps: object, low: int = 1) -> None:
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < low):
        raise ConfigError(f"--steps must be at least {low}, got {steps!r}")


@dataclass(frozen=True)
class Step:
    """The scalars of one step of a plan, as the update uses them (float64, from the schedule).

    ``alpha_t`` and ``beta_t`` are the step's effective values: the schedule's own where the step
    spans one timestep, else alpha_bar_t / alpha_bar_prev and 1 - alpha_t.
    """

    index: int
    t: int
    t_prev: int
    alpha_bar_t: float
    alpha_bar_prev: float
    alpha_t: float
    beta_t: float


class SamplerModule(Protocol):
    """What ``SAMPLERS`` maps a name to: a module following the interface above."""

    NAME: str
    TITLE: str
    REFERENCE: str
    Options: type[Any]
    PRESETS: Mapping[str, Mapping[str, Any]]
    STEP_EQUATION: str
    STEP_NEEDS: tuple[str, ...]

    def equations(self) -> tuple[Any, ...]: ...

    def resolve(self, options: Any, T: int, alpha_bar: Any = None) -> Any: ...  # noqa: N803

    def plan(self, resolved: Any, T: int) -> list[tuple[int, int]]: ...  # noqa: N803

    # A vp sampler's step (a sigma-space one declares ``sigma_step`` instead: see ``space``):
    def sigma(self, resolved: Any, step: Step) -> float: ...

    def update(self, resolved: Any, step: Step, x_t: Any, eps: Any, x0_pred: Any, noise: Any, sigma: float) -> Any: ...


def space(module: SamplerModule | types.ModuleType) -> str:
    """The variable a sampler steps: ``vp`` (x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps; ``sigma`` and ``update``),
    ``sigma`` (x = x0 + sigma eps, Karras et al. 2022; ``sigma_step``) or ``flow`` (x_t = (1 - t) x0 + t eps of a
    flow-matching network; ``flow_step``)."""
    return str(getattr(module, "SPACE", "vp"))


@dataclass(frozen=True)
class SigmaStep:
    """The noise levels of one step of a sigma-space plan (float64): from ``sigma_t`` to ``sigma_next`` (for a flow
    sampler, the flow times t_i and t_{i+1}).

    ``sigma_prev`` is the previous step's sigma_t (None at the first step); ``steps`` is N, the plan's number of steps.
    """

    index: int
    sigma_t: float
    sigma_next: float
    sigma_prev: float | None
    steps: int


@dataclass(frozen=True)
class Evaluation:
    """The network at one point (x, sigma) of sigma space (or (x, t) of the flow path): its noise prediction and clean-sample
    estimate, and its output as the network gave it (after guidance: the velocity of a flow network)."""

    x: Any
    sigma: float
    eps: Any
    x0_pred: Any
    output: Any = None


@dataclass(frozen=True)
class SigmaUpdate:
    """What a sigma-space step did: its output, its first evaluation (the step's eps and x0_pred), the noise it drew
    (z, with ``sigma`` the std it was added with; zeros and 0 where it drew none), and its own recorded names
    (``fields``: StepRecord names such as sigma_hat, x_hat, x_euler, eps_2, sigma_up, h, r)."""

    x_next: Any
    first: Evaluation
    noise: Any = None
    sigma: float = 0.0
    fields: Mapping[str, Any] = field(default_factory=dict)


def sampling(*names: str, sampler: str | None = None) -> Callable[[Any], bool]:
    """An equation's applicability: a sampling trace that records ``names`` (and, if given, declares or was
    identified as ``sampler``); it takes the trace's ``TraceFacts`` (tracer/equations/context.py)."""

    def applies(facts: Any) -> bool:
        return bool(facts.kind == "sampling" and facts.has(*names) and (sampler is None or facts.sampler == sampler))

    return applies


def option_fields(module: SamplerModule | types.ModuleType) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(module.Options)


def make_options(module: SamplerModule, given: Mapping[str, Any], preset: str = "none") -> Any:
    """``module.Options`` from the options a user gave, on top of the preset's; refuses an option the
    sampler does not take, and one that contradicts the preset, in one line."""
    names = {f.name for f in option_fields(module)}
    unknown = [name for name in given if name not in names]
    if unknown:
        flag = "--" + unknown[0].replace("_", "-")
        raise ConfigError(f"{flag} does not apply to --sampler {module.NAME}: it is not one of its options "
                          f"(see noisescope sample --sampler {module.NAME} --help)")
    values: dict[str, Any] = {}
    if preset != "none":
        if preset not in module.PRESETS:
            raise ConfigError(f"the {module.NAME} sampler has no preset {preset!r}; its presets: {', '.join(module.PRESETS) or 'none'}")
        fixed = module.PRESETS[preset]
        for name in given:
            if name in fixed:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} does not apply with --preset {preset}, which fixes it to {fixed[name]!r}; drop {flag} or the preset")
        values.update(fixed)
    values.update(given)
    return module.Options(**values)


def effective_step(index: int, t: int, t_prev: int, alpha_bar: Any, alpha: Any, beta: Any) -> Step:
    """The float64 scalars of the step from t to t_prev (-1: the clean end, alpha_bar = 1)."""
    alpha_bar_t = float(alpha_bar[t])
    alpha_bar_prev = 1.0 if t_prev < 0 else float(alpha_bar[t_prev])
    if t_prev == t - 1:  # one timestep: the schedule's own alpha and beta (Ho et al. 2020, Sec. 2)
        alpha_t, beta_t = float(alpha[t]), float(beta[t])
    else:
        alpha_t = alpha_bar_t / alpha_bar_prev
        beta_t = 1.0 - alpha_t
    return Step(index, t, t_prev, alpha_bar_t, alpha_bar_prev, alpha_t, beta_t)


def resolved_dict(options: object) -> dict[str, Any]:
    """The JSON form of resolved options (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()}  # type: ignore[call-overload]

