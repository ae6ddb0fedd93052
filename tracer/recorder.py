"""The recording API: trace a sampling loop you wrote yourself, one ``step(...)`` call per step.

    from tracer import record

    with record("ddim.h5", alpha_bar) as rec:
        for t, t_prev in steps:
            ...                                    # your loop, unchanged
            rec.step(t=t, t_prev=t_prev, x_t=x, eps=eps, x0_pred=x0, x_prev=x_next, sigma=0.0)
            x = x_next

``record(path, schedule, ...)`` takes the schedule as alpha_bar (a 1-D tensor or array, the
running product of Ho et al. 2020, Eq. 4), a noisescope schedule name (``"linear"``,
``"seed-report"``...) with ``T``, or a ``Schedule``. ``step`` takes the step's tensors and
scalars by their trace names (the schema's field table, docs/trace-format.md) and fills in
what follows from the schedule: alpha_bar_t and alpha_bar_prev (the schedule's at t and
t_prev, 1 at t_prev = -1), the step's effective alpha_t and beta_t, sigma where a declared
sampler defines it (DDIM's Eq. 16 from its eta, DDPM's posterior std), and the noise z where
sigma is 0 (zeros, as the trace format defines it). docs/recording.md is the user's guide.

It writes the same crash-safe trace as noisescope's own samplers (tracer/trace/rows.py, shared
with the diffusers integration): every step is committed as it is recorded, the trace is
complete when the ``with`` block ends normally and failed when it raises, and every step
committed before stays readable by ``noisescope inspect``, ``check`` and the viewer. The
last ``x_prev`` becomes ``samples``.

Bad input raises ``RecordError`` (a ValueError; ``RecordTypeError`` is also a TypeError) in
one line that starts with the offending argument's name, before anything of that step is
written: a name that is not a step field, a tensor whose shape differs from x_t's or from
the first step's, a t or t_prev outside the schedule, a schedule that is not a 1-D array of
alpha_bar in (0, 1) decreasing strictly. ``check`` verifies what the trace lets it: with
no ``sampler`` declared it identifies the update from the rows (tracer/equations/identify.py),
and what it cannot verify makes its verdict INCOMPLETE, never PASS.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch

from tracer.config import ConfigError
from tracer.samplers.base import SamplerModule, effective_step, option_fields, space
from tracer.schedules import SCHEDULE_NAMES, Schedule, betas_valid, make_schedule
from tracer.trace import schema
from tracer.trace.rows import RowTrace, TraceStart
from tracer.trace.writer import TraceExistsError

__all__ = ["RecordError", "RecordTypeError", "Recorder", "record", "schedule_from"]

# Names of the steps series (the schema's field table: the one place they are spelled).
STEP_NAMES: tuple[str, ...] = schema.names_of(schema.STEPS)
TENSOR_NAMES = frozenset(f.name for f in schema.fields_of(schema.STEPS) if f.dtype == schema.TENSOR)
INT_NAMES = frozenset(f.name for f in schema.fields_of(schema.STEPS) if f.dtype == "int64")
X_T, EPS, T_NAME, T_PREV = schema.known(schema.STEPS, "x_t", "eps", "t", "t_prev")
SIGMA, NOISE = schema.known(schema.STEPS, "sigma", "noise")
ALPHA_BAR_T, ALPHA_BAR_PREV = schema.known(schema.STEPS, "alpha_bar_t", "alpha_bar_prev")
MODEL_OUTPUT = schema.MODEL_OUTPUT
# Filled in from the schedule (and the declared sampler) where the step does not give them.
FROM_SCHEDULE = (ALPHA_BAR_T, ALPHA_BAR_PREV, *schema.known(schema.STEPS, "alpha_t", "beta_t"))
# Options that describe the timesteps a noisescope sampler would choose; a loop of your own chooses its own.
PLAN_OPTIONS = ("steps", "spacing", "timesteps")
PREDICTIONS = ("eps", "x0", "v")
RECORDER = "tracer.record"


class RecordError(ValueError):
    """Bad input to the recording API; the message is one line and starts with the offending argument."""


class RecordTypeError(RecordError, TypeError):
    """An argument of the wrong type (a string where a tensor goes, ...)."""


# -- the schedule -------------------------------------------------------------------------------------------


def schedule_from(schedule: Any, T: int | None = None) -> Schedule:  # noqa: N803
    """A ``Schedule`` from alpha_bar (a 1-D tensor or array), a noisescope schedule name (with ``T``), or a Schedule.

    From alpha_bar: alpha_t = alpha_bar_t / alpha_bar_{t-1} (alpha_bar_{-1} = 1) and beta_t = 1 - alpha_t,
    so that alpha_bar is their running product (Ho et al. 2020, Eq. 4); it must lie in (0, 1) and decrease
    strictly (every beta in (0, 1), as a trace's schedule must).
    """
    if isinstance(schedule, Schedule):
        if T is not None and T != schedule.T:
            raise RecordError(f"T: {T} differs from the schedule's {schedule.T} steps")
        return schedule
    if isinstance(schedule, str):
        if schedule not in SCHEDULE_NAMES:
            raise RecordError(f"schedule: unknown schedule name {schedule!r}; choose one of {', '.join(SCHEDULE_NAMES)}, "
                              "or pass alpha_bar as a 1-D array")
        try:
            return make_schedule(schedule, T)
        except ValueError as error:
            raise RecordError(f"T: {error}") from None
    if isinstance(schedule, torch.Tensor):
        schedule = schedule.detach().to("cpu", torch.float64).numpy()
    if isinstance(schedule, np.ndarray) and schedule.dtype.kind not in "fiu":
        raise RecordTypeError(f"schedule: alpha_bar must be an array of real numbers, got dtype {schedule.dtype}")
    if not isinstance(schedule, (np.ndarray, list, tuple)):
        raise RecordTypeError(f"schedule: expected alpha_bar as a 1-D tensor or array, or a schedule name, got {type(schedule).__name__}")
    try:
        alpha_bar = np.array(schedule, dtype=np.float64)
    except (TypeError, ValueError):
        raise RecordTypeError("schedule: alpha_bar is not an array of numbers") from None
    if alpha_bar.ndim != 1 or alpha_bar.size == 0:
        raise RecordError(f"schedule: alpha_bar must be a non-empty 1-D array, got shape {alpha_bar.shape}")
    if T is not None and T != alpha_bar.size:
        raise RecordError(f"T: {T} differs from the {alpha_bar.size} values of alpha_bar")
    bad = np.flatnonzero(~(np.isfinite(alpha_bar) & (alpha_bar > 0) & (alpha_bar <= 1)))
    if bad.size:
        raise RecordError(f"schedule: alpha_bar must lie in (0, 1]; alpha_bar[{bad[0]}] is {float(alpha_bar[bad[0]]):g}")
    alpha = alpha_bar / np.concatenate([[1.0], alpha_bar[:-1]])  # alpha_t = alpha_bar_t / alpha_bar_{t-1}
    beta = 1.0 - alpha
    if not betas_valid(beta):
        k = int(np.flatnonzero(beta <= 0)[0])
        where = "alpha_bar[0] is 1" if k == 0 else f"alpha_bar[{k}] = {float(alpha_bar[k]):g} is not below alpha_bar[{k - 1}] = {float(alpha_bar[k - 1]):g}"
        raise RecordError(f"schedule: alpha_bar must decrease strictly from below 1 (every beta in (0, 1)); {where}")
    for array in (alpha_bar, alpha, beta):
        array.setflags(write=False)
    return Schedule(name="custom", beta=beta, alpha=alpha, alpha_bar=alpha_bar)


# -- one step's values --------------------------------------------------------------------------------------


def _tensor(name: str, value: Any, dtype: torch.dtype) -> torch.Tensor | np.ndarray:
    """A tensor argument as it will be written: a torch tensor (detached) or a NumPy array of real numbers."""
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise RecordTypeError(f"{name}: expected a tensor of real numbers, got {value.dtype}")
        if value.dtype not in (torch.float32, torch.float16, torch.float64):
            value = value.to(dtype)  # bfloat16 and integers have no NumPy view
        return value.detach()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiu":
            raise RecordTypeError(f"{name}: expected an array of real numbers, got dtype {value.dtype}")
        return value
    raise RecordTypeError(f"{name}: expected a torch tensor or NumPy array, got {type(value).__name__}")


def _number(name: str, value: Any) -> float:
    """A scalar argument: a Python or NumPy number, or a tensor or array holding one value (or one value repeated)."""
    if isinstance(value, bool) or isinstance(value, str):
        raise RecordTypeError(f"{name}: expected a number, got {type(value).__name__}")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        flat = value.detach().reshape(-1).cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value).reshape(-1)
        if flat.size == 0 or flat.dtype.kind not in "fiu":
            raise RecordTypeError(f"{name}: expected one number, got a tensor of shape {tuple(value.shape)} and dtype {value.dtype}")
        if flat.size > 1 and not np.all(flat == flat[0]):
            other = flat[flat != flat[0]][0]
            raise RecordError(f"{name}: its {flat.size} values differ ({flat[0].item()} and {other.item()}); a step has one")
        return float(flat[0])
    raise RecordTypeError(f"{name}: expected a number, got {type(value).__name__}")


def _index(name: str, value: Any, low: int, T: int) -> int:  # noqa: N803
    number = _number(name, value)
    if not number.is_integer():
        raise RecordError(f"{name}: {number} is not a schedule index (an integer)")
    index = int(number)
    if not low <= index < T:
        where = f"-1 (the clean end) or 0..{T - 1}" if low < 0 else f"0..{T - 1}"
        raise RecordError(f"{name}: {index} is outside the schedule ({where} for its T = {T})")
    return index


def _unknown_name(name: str) -> RecordError:
    close = difflib.get_close_matches(name, STEP_NAMES, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return RecordError(f"{name}: not a field of a step; {hint}the names are those of docs/trace-format.md: {', '.join(STEP_NAMES)}")


# -- the recorder -------------------------------------------------------------------------------------------


class Recorder:
    """The trace of one sampling loop at ``path`` (``record`` is this class): use it in ``with``, call ``step`` once a step.

    ``schedule``: alpha_bar as a 1-D tensor or array, a noisescope schedule name (with ``T``, default the schedule's), or
    a Schedule. ``sampler``: declare the update (ddpm, ddim, ddim-inversion) with its options (``eta=``, ``clip=``,
    ``final_alpha_bar=``, ``variance=``), so that check verifies against them; left out, check identifies it.
    ``prediction``: what the network outputs (eps, x0 or v). ``guidance``: the scale, when eps_cond and eps_uncond are
    recorded. ``labels``: class labels of the batch. ``steps``: how many steps the loop will make (sizes the file; the
    viewer shows progress against it). ``tensor_dtype``: float32 or float16. ``overwrite``: replace an existing trace
    (only once the new one is complete). ``config``: merged into the trace's config. Bad input raises RecordError.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schedule: Any,
        *,
        T: int | None = None,  # noqa: N803
        sampler: str | None = None,
        prediction: str = "eps",
        guidance: float | None = None,
        labels: Any = None,
        steps: int | None = None,
        tensor_dtype: str = "float32",
        overwrite: bool = False,
        config: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self.schedule = schedule_from(schedule, T)
        if prediction not in PREDICTIONS:
            raise RecordError(f"prediction: {prediction!r} is not one of {', '.join(PREDICTIONS)}")
        if guidance is not None and (isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not math.isfinite(guidance)):
            raise RecordError(f"guidance: expected a finite number (the scale s of classifier-free guidance), got {guidance!r}")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise RecordError(f"steps: expected the number of steps the loop will make (an integer >= 1), got {steps!r}")
        if tensor_dtype not in schema.TENSOR_DTYPES:
            raise RecordError(f"tensor_dtype: {tensor_dtype!r} is not one of {', '.join(schema.TENSOR_DTYPES)}")
        if config is not None and not isinstance(config, Mapping):
            raise RecordTypeError(f"config: expected a mapping, got {type(config).__name__}")
        self.prediction = prediction
        self.module, self.options = _sampler(sampler, options)
        self.labels = None if labels is None else _labels(labels)
        self.planned = int(steps or 0)
        self._float = torch.float16 if tensor_dtype == "float16" else torch.float32
        self._np_float = np.dtype(tensor_dtype)
        self._sampler_config = self._config_of(sampler, guidance, options)
        try:
            self._trace = RowTrace(path, tensor_dtype=tensor_dtype, overwrite=overwrite, config=config)
        except TraceExistsError as error:
            raise TraceExistsError(f"path: {error}") from None
        self._names: frozenset[str] | None = None  # the names the first step gave: every step gives the same
        self._shapes: dict[str, tuple[int, ...]] = {}  # x_t's at the first step: every tensor of every step has it
        self._fill_noise = False  # noise not given but recorded: zeros where sigma is 0
        self._derive_sigma = False
        self._zeros: np.ndarray | None = None

    def _config_of(self, sampler: str | None, guidance: float | None, given: Mapping[str, Any]) -> dict[str, Any]:
        """The trace config's ``sampler`` entry: what was declared, in noisescope's terms (docs/trace-format.md)."""
        entry: dict[str, Any] = {}
        if self.module is not None:
            entry["sampler"] = sampler
            for f in option_fields(self.module):
                value = getattr(self.options, f.name)
                if (f.name not in PLAN_OPTIONS or f.name in given) and value is not None:
                    entry[f.name] = list(value) if isinstance(value, tuple) else value
        entry["guidance"] = None if guidance is None else float(guidance)
        entry["prediction"] = self.prediction
        return entry

    # -- what the trace is ----------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """The trace being written."""
        return self._trace.path

    @property
    def steps(self) -> int:
        """Steps recorded (committed) so far."""
        return self._trace.rows

    def _start(self) -> TraceStart:
        schedule = self.schedule
        config = {
            "sampler": self._sampler_config,
            "schedule": {"name": schedule.name, "timesteps": schedule.T, "zero_terminal_snr": schedule.zero_terminal_snr},
            "recorder": {"api": RECORDER},
        }
        attrs = {"sampler": self._sampler_config["sampler"]} if "sampler" in self._sampler_config else {}
        return TraceStart(schedule, config, self.planned, attrs, self.labels)

    # -- one step -------------------------------------------------------------------------------------------
    def step(self, **values: Any) -> None:
        """Record one step, given by trace names (x_t, eps or model_output, x0_pred, x_prev, t, t_prev, sigma, noise, ...).

        x_t, t, t_prev and eps or model_output are needed at every step; whatever else the first step gives, every
        step gives. Nothing of the step is written if an argument is wrong (RecordError names it).
        """
        if self._trace.closed:
            raise RecordError(f"step: the trace {self.path} is closed; record a new run with a new record(...)")
        row = self._row(values)
        self._trace.append(row, self._start)

    def _row(self, values: dict[str, Any]) -> dict[str, Any]:
        schedule = self.schedule
        if MODEL_OUTPUT in values and self.prediction == "eps":
            if EPS in values:
                raise RecordError(f"{MODEL_OUTPUT}: give eps or model_output, not both (the network predicts eps: they are the same)")
            values[EPS] = values.pop(MODEL_OUTPUT)  # an eps network's output is eps
        names = self._names
        first = names is None
        if names is None:
            for name in values:
                if name not in STEP_NAMES:
                    raise _unknown_name(name)
            for name in (X_T, T_NAME, T_PREV):
                if name not in values:
                    raise RecordError(f"{name}: missing; every step needs x_t, t, t_prev and eps or model_output")
            if EPS not in values and MODEL_OUTPUT not in values:
                raise RecordError("eps: missing (or model_output); every step needs x_t, t, t_prev and eps or model_output")
        elif values.keys() != names:
            extra = sorted(values.keys() - names)
            if extra:
                name = extra[0]
                if name not in STEP_NAMES:
                    raise _unknown_name(name)
                raise RecordError(f"{name}: not given at the first step, so the trace has no place for it; give it at every step or none")
            name = sorted(names - values.keys())[0]
            raise RecordError(f"{name}: missing; the first step gave it, so every step must")
        index = self.steps
        row: dict[str, Any] = {}
        t = _index(T_NAME, values[T_NAME], 0, schedule.T)
        t_prev = _index(T_PREV, values[T_PREV], -1, schedule.T)
        x_t = _tensor(X_T, values[X_T], self._float)
        shape = tuple(int(d) for d in x_t.shape)
        if not shape:
            raise RecordError(f"{X_T}: a 0-d tensor; x_t is a batch [B, *D] (one sample is [1, *D])")
        if not first and shape != self._shapes[X_T]:
            raise RecordError(f"{X_T}: shape {shape} at step {index} differs from {self._shapes[X_T]} at step 0 (the first step fixes every shape)")
        for name, value in values.items():
            if name in TENSOR_NAMES:
                tensor = x_t if name == X_T else _tensor(name, value, self._float)
                got = tuple(int(d) for d in tensor.shape)
                if got != shape:  # and so, x_t's being the first step's, every tensor's is
                    raise RecordError(f"{name}: shape {got} differs from x_t's {shape}; every tensor of a step is [B, *D] like x_t")
                row[name] = tensor
            elif name in INT_NAMES:
                row[name] = t if name == T_NAME else t_prev if name == T_PREV else _index(name, value, -1, schedule.T)
            else:
                row[name] = _number(name, value)
        # What follows from the schedule: the alpha_bars at t and t_prev (1 at -1), the effective alpha_t and beta_t.
        derived = effective_step(index, t, t_prev, schedule.alpha_bar, schedule.alpha, schedule.beta)
        if ALPHA_BAR_T in row or ALPHA_BAR_PREV in row:  # the values the loop says it used: alpha_t follows from them
            used_t, used_prev = row.get(ALPHA_BAR_T, derived.alpha_bar_t), row.get(ALPHA_BAR_PREV, derived.alpha_bar_prev)
            for name, used in ((ALPHA_BAR_T, used_t), (ALPHA_BAR_PREV, used_prev)):
                if not 0.0 < used <= 1.0:
                    raise RecordError(f"{name}: {used!r} is not in (0, 1]")
            derived = replace(derived, alpha_bar_t=used_t, alpha_bar_prev=used_prev, alpha_t=used_t / used_prev, beta_t=1.0 - used_t / used_prev)
        for name in FROM_SCHEDULE:
            row.setdefault(name, getattr(derived, name))
        module = self.module
        if first:
            self._derive_sigma = SIGMA not in values and module is not None
            if self.labels is not None and self.labels.shape != shape[:1]:
                raise RecordError(f"labels: {self.labels.shape[0]} labels for a batch of {shape[0]} (x_t is {shape})")
        if self._derive_sigma and module is not None:
            # The declared sampler's sigma: DDIM's Eq. 16 from its eta, DDPM's posterior std (0 at t = 0).
            row[SIGMA] = float(module.sigma(self.options, derived))
        if first:
            self._fill_noise = NOISE not in values and row.get(SIGMA) == 0.0
        if self._fill_noise:
            if row[SIGMA] != 0.0:
                raise RecordError(f"noise: step {index} adds noise (sigma = {row[SIGMA]:.6g}) but no noise was given; "
                                  "pass the z the step drew")
            if self._zeros is None:
                self._zeros = np.zeros(shape, dtype=self._np_float)
            row[NOISE] = self._zeros  # z is zeros where sigma is 0 (docs/trace-format.md)
        if schema.X_PREV in row:  # kept for samples: a copy, so that changing the tensor in place later changes nothing
            row[schema.X_PREV] = _copy(row[schema.X_PREV], self._np_float)
        if first:
            self._names = frozenset(values)
            self._shapes = {X_T: shape}
        return row

    # -- the end --------------------------------------------------------------------------------------------
    def close(self, status: schema.Status = "complete") -> None:
        """Finish the trace: the last x_prev written as samples (when complete), the status set; nothing if no step ran."""
        self._trace.close(status)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close("failed" if exc_type is not None else "complete")

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r}, steps={self.steps})"


def _copy(value: torch.Tensor | np.ndarray, dtype: np.dtype) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.cpu().numpy()
    return np.array(value, dtype=dtype, copy=True)


def _labels(labels: Any) -> np.ndarray:
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise RecordError(f"labels: expected a 1-D array of integer class labels (-1: unconditional), got shape {array.shape}, dtype {array.dtype}")
    return array.astype(np.int64)


def _sampler(name: str | None, options: Mapping[str, Any]) -> tuple[SamplerModule | None, Any]:
    """The declared sampler's module and its options, validated by the sampler's own ``Options``."""
    from tracer.samplers import SAMPLERS

    if name is None:
        if options:
            first = next(iter(options))
            raise RecordError(f"{first}: an option of a sampler; declare which (sampler='ddim', ...) or leave it out")
        return None, None
    vp = [n for n, m in SAMPLERS.items() if space(m) == "vp"]
    if name not in vp:
        raise RecordError(f"sampler: {name!r} is not one the recording API declares; choose one of {', '.join(vp)}, "
                          "or leave it out (check then identifies the update)")
    module = SAMPLERS[name]
    known = [f.name for f in option_fields(module)]
    for option in options:
        if option not in known:
            raise RecordError(f"{option}: not an option of the {name} sampler; its options: {', '.join(known)}")
    try:
        return module, module.Options(**options)
    except ConfigError as error:
        raise RecordError(_option_message(module, options, str(error))) from None


def _option_message(module: SamplerModule, options: Mapping[str, Any], text: str) -> str:
    """The sampler's own message, led by the option it is about (found by trying each option alone)."""
    for option, value in options.items():
        try:
            module.Options(**{option: value})
        except ConfigError:
            flag = "--" + option.replace("_", "-") + " "
            return f"{option}: {text[len(flag):] if text.startswith(flag) else text}"
    return f"{module.NAME} options: {text}"


record = Recorder  # ``from tracer import record``: ``with record(path, alpha_bar) as rec: ... rec.step(...)``
