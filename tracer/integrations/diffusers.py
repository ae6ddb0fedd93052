"""Tracing diffusers: record any diffusers scheduler's steps into a noisescope trace.

- ``TracedScheduler(scheduler, path)`` wraps DDPMScheduler or DDIMScheduler, the schedulers of
  noisescope's sigma-space and flow families (Euler, Euler ancestral, Heun, DPMSolverMultistep,
  FlowMatchEuler: recorded by tracer/integrations/diffusers_families.py in those families' names),
  or another sigma-based scheduler whose ``step`` returns ``pred_original_sample``. It behaves
  like the scheduler (every attribute is delegated; ``step`` takes the same arguments and returns
  the same result) and writes one row of the ``steps`` series per step: for DDPM and DDIM the
  input x_t, the model output (``eps`` when ``prediction_type`` is epsilon, else
  ``model_output``), x0_pred, the result (``x_prev``), t, the timestep the step really moved to
  (``t_prev``), the alpha_bar values it used, sigma and the noise z.
- ``PipelineRecorder(path)`` is a ``callback_on_step_end`` for pipelines: it records what the
  pipeline exposes (the latents after every step, and t, from which the scheduler's own
  arithmetic gives t_prev and the alpha_bars).

What "the timestep it moved to" means is the point (issue 5): DDIMScheduler moves from t to
``t - num_train_timesteps // num_inference_steps`` (Song et al. 2021, Eq. 12 with its own
previous alpha_bar), which is not the next timestep it visits when the spacing is
``linspace``, or ``trailing`` with a step count that does not divide num_train_timesteps.
``t_prev`` is taken from that arithmetic, not from the next timestep, so ``noisescope check``
(chain.t_prev) shows where the two differ.

Sigma-based schedulers are recorded in sigma space, x = x0 + sigma eps (Karras et al. 2022), as noisescope's own
sigma-space samplers record theirs (diffusers_families.py). ``PipelineRecorder`` records their latents rescaled to the
VP form, x * sqrt(alpha_bar) (what ``scale_model_input`` hands the model), as before.

The trace is created lazily, at the first ``step`` (when the shapes are known: every dataset of
an SWMR file must exist before the first row; tracer/trace/rows.py, shared with the recording
API of tracer/recorder.py), and is complete when the context manager exits
normally, failed on an exception. diffusers is imported lazily: without it, using this module
raises ModuleNotFoundError with the install hint. docs/diffusers.md shows it at work.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, TypeVar

import numpy as np
import torch

from tracer.schedules import Schedule
from tracer.trace import schema
from tracer.trace.rows import RowTrace, TraceStart

INSTALL_HINT = "tracing diffusers needs the diffusers package: pip install 'noisescope[diffusers]'"
X_PREV = schema.X_PREV
MODEL_OUTPUT = schema.MODEL_OUTPUT
ETA = schema.ETA


def require_diffusers() -> ModuleType:
    """The diffusers module, or ModuleNotFoundError with one line saying how to install it."""
    try:
        import diffusers
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(INSTALL_HINT, name="diffusers") from error
    return diffusers


def _randn_tensor() -> Any:
    require_diffusers()
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor


def _float(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


def family(scheduler: Any) -> str:
    """ddim, ddpm, euler or sigma: which arithmetic the scheduler's step follows; ValueError for others."""
    name = type(scheduler).__name__
    if hasattr(scheduler, "final_alpha_cumprod") and hasattr(scheduler, "_get_variance") and "eta" in inspect.signature(scheduler.step).parameters:
        return "ddim"
    if hasattr(scheduler, "previous_timestep") and hasattr(scheduler, "alphas_cumprod") and hasattr(scheduler.config, "variance_type"):
        return "ddpm"
    if hasattr(scheduler, "sigmas") and hasattr(scheduler, "step_index"):
        return "euler" if name.startswith("EulerDiscrete") else "sigma"
    raise ValueError(f"{name} is not supported: TracedScheduler records DDPM-, DDIM- and sigma-based (Euler) schedulers")


def schedule_of(scheduler: Any) -> Schedule:
    """The scheduler's training schedule as stored in a trace: betas, alphas, alphas_cumprod (float64 copies)."""
    beta = np.asarray(scheduler.betas.detach().cpu().double().numpy())
    alpha = np.asarray(scheduler.alphas.detach().cpu().double().numpy()) if hasattr(scheduler, "alphas") else 1.0 - beta
    alpha_bar = np.asarray(scheduler.alphas_cumprod.detach().cpu().double().numpy())
    name = f"diffusers:{scheduler.config.get('beta_schedule', 'custom')}"
    return Schedule(name=name, beta=beta, alpha=alpha, alpha_bar=alpha_bar)


def _variance_name(variance_type: str) -> str:
    return {"fixed_small": "beta_tilde", "fixed_small_log": "beta_tilde", "fixed_large": "beta"}.get(variance_type, variance_type)


@dataclass(frozen=True)
class StepScalars:
    """What one scheduler step used, in our trace's terms."""

    t: int
    t_prev: int  # the timestep the step moves to (-1: the clean end; 0 where the scheduler's end is alpha_bar_0)
    alpha_bar_t: float
    alpha_bar_prev: float
    sigma: float  # std of the noise the step adds (VP units); nan where the scheduler does not say
    scale_t: float = 1.0  # x_t = scale_t * sample (sigma-based schedulers: sqrt(alpha_bar_t))
    scale_prev: float = 1.0  # x_prev = scale_prev * prev_sample

    def row(self) -> dict[str, Any]:
        alpha_t = self.alpha_bar_t / self.alpha_bar_prev  # the step's effective alpha (StepRecord)
        return {
            "t": self.t, "t_prev": self.t_prev, "alpha_bar_t": self.alpha_bar_t, "alpha_bar_prev": self.alpha_bar_prev,
            "alpha_t": alpha_t, "beta_t": 1.0 - alpha_t, "sigma": self.sigma,
        }


def ddim_scalars(scheduler: Any, timestep: Any, eta: float) -> tuple[StepScalars, int]:
    """DDIMScheduler.step's own arithmetic: prev = t - num_train_timesteps // num_inference_steps, its alpha_bars and sigma."""
    t = int(timestep)
    prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps  # as DDIMScheduler.step computes it
    alpha_bar_t = _float(scheduler.alphas_cumprod[t])
    final = _float(scheduler.final_alpha_cumprod)
    alpha_bar_prev = _float(scheduler.alphas_cumprod[prev]) if prev >= 0 else final
    t_prev = prev if prev >= 0 else (-1 if final == 1.0 else 0)  # final_alpha_cumprod is 1, or alphas_cumprod[0]
    sigma = _float(eta * scheduler._get_variance(t, prev) ** 0.5) if eta else 0.0  # std_dev_t, in the scheduler's float32
    return StepScalars(t, t_prev, alpha_bar_t, alpha_bar_prev, sigma), prev


def ddpm_scalars(scheduler: Any, timestep: Any) -> StepScalars:
    """DDPMScheduler.step's arithmetic: prev = previous_timestep(t), its alpha_bars, and the std of its noise."""
    t = int(timestep)
    prev = int(scheduler.previous_timestep(t))
    alpha_bar_t = _float(scheduler.alphas_cumprod[t])
    alpha_bar_prev = _float(scheduler.alphas_cumprod[prev]) if prev >= 0 else 1.0
    variance_type = scheduler.config.variance_type
    if t == 0:
        sigma = 0.0  # no noise at t = 0
    elif variance_type in ("fixed_small", "fixed_large"):
        sigma = math.sqrt(_float(scheduler._get_variance(t)))
    elif variance_type == "fixed_small_log":
        sigma = _float(scheduler._get_variance(t))  # already a std for this variance type
    else:
        sigma = float("nan")  # learned variances: per element, not one number
    return StepScalars(t, prev if prev >= 0 else -1, alpha_bar_t, alpha_bar_prev, sigma)


def sigma_scalars(scheduler: Any, index: int) -> StepScalars:
    """Sigma-based schedulers: step ``index`` goes from sigmas[index] to sigmas[index + 1]; alpha_bar = 1 / (1 + sigma^2)."""
    sigma_t, sigma_next = _float(scheduler.sigmas[index]), _float(scheduler.sigmas[index + 1])
    timesteps = scheduler.timesteps
    t = int(round(_float(timesteps[index])))
    t_prev = int(round(_float(timesteps[index + 1]))) if index + 1 < len(timesteps) else -1
    alpha_bar_t, alpha_bar_prev = 1.0 / (1.0 + sigma_t**2), 1.0 / (1.0 + sigma_next**2)
    return StepScalars(t, t_prev, alpha_bar_t, alpha_bar_prev, float("nan"), math.sqrt(alpha_bar_t), math.sqrt(alpha_bar_prev))


def sampler_config(scheduler: Any, kind: str, eta: float | None = None) -> dict[str, Any]:
    """The ``sampler`` part of the trace config, in the terms of noisescope's own (SamplerConfig) where they exist."""
    config = scheduler.config
    final = "one"
    if kind == "ddim" and _float(scheduler.final_alpha_cumprod) != 1.0:
        final = "alpha_bar_0"
    return {
        "sampler": kind,
        "steps": getattr(scheduler, "num_inference_steps", None),
        "eta": eta,
        "spacing": config.get("timestep_spacing"),
        "clip": bool(config.get("clip_sample", False)),
        "clip_range": float(config.get("clip_sample_range", 1.0)),
        "thresholding": bool(config.get("thresholding", False)),
        "final_alpha_bar": final,
        "variance": _variance_name(config.get("variance_type", "")) if kind == "ddpm" else None,
        "guidance": None,
        "prediction_type": config.get("prediction_type", "epsilon"),
    }


def integration_config(scheduler: Any, recorder: str) -> dict[str, Any]:
    diffusers = require_diffusers()
    return {
        "library": "diffusers",
        "version": diffusers.__version__,
        "recorder": recorder,
        "scheduler": type(scheduler).__name__,
        "scheduler_config": {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")},
    }


def _tensor(value: Any) -> torch.Tensor:
    return value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)


def _scaled(x: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * x in float64 (an exact copy when scale is 1)."""
    return x if scale == 1.0 else x.double() * scale


def _rng_state(generator: Any, device: torch.device) -> tuple[str, Any] | None:
    """The state of the random stream a scheduler will draw its noise from, to draw the same noise again."""
    if isinstance(generator, torch.Generator):
        return ("generator", generator.get_state())
    if isinstance(generator, (list, tuple)):
        return ("generators", [g.get_state() for g in generator])
    if device.type == "cpu":
        return ("cpu", torch.get_rng_state())
    if device.type == "cuda":
        return ("cuda", torch.cuda.get_rng_state(device))
    return None


def _replay_noise(state: tuple[str, Any], generator: Any, like: torch.Tensor) -> torch.Tensor:
    """The noise randn_tensor drew from ``state``: drawn again from a copy of that state (the caller's stream is untouched)."""
    randn_tensor = _randn_tensor()
    kind, saved = state
    if kind in ("generator", "generators"):
        originals = generator if kind == "generators" else [generator]
        states = saved if kind == "generators" else [saved]
        copies = []
        for original, generator_state in zip(originals, states, strict=True):
            copy = torch.Generator(device=original.device)
            copy.set_state(generator_state)
            copies.append(copy)
        return randn_tensor(like.shape, generator=copies if kind == "generators" else copies[0], device=like.device, dtype=like.dtype)
    if kind == "cpu":
        now = torch.get_rng_state()
        torch.set_rng_state(saved)
        try:
            return randn_tensor(like.shape, generator=None, device=like.device, dtype=like.dtype)
        finally:
            torch.set_rng_state(now)
    now = torch.cuda.get_rng_state(like.device)
    torch.cuda.set_rng_state(saved, like.device)
    try:
        return randn_tensor(like.shape, generator=None, device=like.device, dtype=like.dtype)
    finally:
        torch.cuda.set_rng_state(now, like.device)


def _new_recording(path: str | os.PathLike[str], *, overwrite: bool, tensor_dtype: str, config: Mapping[str, Any] | None) -> RowTrace:
    """Check what both recorders are given, and set up the (not yet created) trace (tracer/trace/rows.py)."""
    require_diffusers()
    return RowTrace(path, tensor_dtype=tensor_dtype, overwrite=overwrite, config=config)


_Recorder = TypeVar("_Recorder", bound="_OneRun")


class _OneRun:
    """What both recorders share: one trace for one run, complete on leaving ``with``, failed on an exception."""

    _trace_recording: RowTrace

    @property
    def path(self) -> Path:
        """The trace being written."""
        return self._trace_recording.path

    def close(self, status: schema.Status = "complete") -> None:
        """Finish the trace: samples (the last result) written, status set. Nothing is written if no step ran."""
        self._trace_recording.close(status)

    def __enter__(self: _Recorder) -> _Recorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close("failed" if exc_type is not None else "complete")


class TracedScheduler(_OneRun):
    """A diffusers scheduler that records every ``step`` into a noisescope trace at ``path``.

    Use it where the scheduler was used, inside ``with``::

        with TracedScheduler(DDIMScheduler(), "ddim.h5") as scheduler:
            scheduler.set_timesteps(50)
            for t in scheduler.timesteps:
                x = scheduler.step(unet(x, t).sample, t, x).prev_sample

    Options: ``overwrite`` (replace an existing trace), ``tensor_dtype`` (float32 or float16),
    ``config`` (merged into the trace's config). DDIM with eta > 0 and no ``variance_noise``:
    the noise is drawn here exactly as the scheduler would draw it (same generator, shape,
    device, dtype) and passed as ``variance_noise``, so the result is unchanged and z is
    recorded. DDPM: the noise is drawn again from a saved copy of the generator's state.
    """

    def __init__(
        self,
        scheduler: Any,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        tensor_dtype: str = "float32",
        config: Mapping[str, Any] | None = None,
        model_prediction: str | None = None,
    ) -> None:
        from tracer.integrations import diffusers_families  # it builds on this module's helpers

        recording = _new_recording(path, overwrite=overwrite, tensor_dtype=tensor_dtype, config=config)
        if model_prediction is not None and model_prediction not in diffusers_families.PREDICTIONS:
            raise ValueError(f"model_prediction must be epsilon, v_prediction or sample, got {model_prediction!r}")
        declared = None if model_prediction is None else diffusers_families.PREDICTIONS[model_prediction]
        noisescope_family = diffusers_families.family_of(scheduler)
        kind = noisescope_family or family(scheduler)  # ValueError for a scheduler this cannot record
        if kind == diffusers_families.GENERIC:  # other sigma-based schedulers: in sigma space too
            noisescope_family = kind
        families = None if noisescope_family is None else diffusers_families.FamilyRecording(scheduler, noisescope_family, declared)
        object.__setattr__(self, "_trace_scheduler", scheduler)
        object.__setattr__(self, "_trace_family", kind)
        object.__setattr__(self, "_trace_families", families)
        object.__setattr__(self, "_trace_model_prediction", declared)
        object.__setattr__(self, "_trace_recording", recording)
        object.__setattr__(self, "_trace_signature", inspect.signature(scheduler.step))

    # -- behaving like the scheduler -------------------------------------------------------------------
    @property
    def scheduler(self) -> Any:
        """The wrapped scheduler."""
        return self._trace_scheduler

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_trace_"):
            raise AttributeError(name)
        return getattr(self._trace_scheduler, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._trace_scheduler, name, value)

    def __repr__(self) -> str:
        return f"TracedScheduler({self._trace_scheduler!r}, path={str(self.path)!r})"

    # -- the step -----------------------------------------------------------------------------------------
    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """The wrapped scheduler's ``step`` with the same arguments and result; records the step."""
        scheduler, kind = self._trace_scheduler, self._trace_family
        bound = self._trace_signature.bind(model_output, timestep, sample, *args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        families = self._trace_families
        if families is not None:  # recorded in the names of a noisescope family (diffusers_families.py)
            output, row = families.step(scheduler, model_output, timestep, sample, arguments, lambda: scheduler.step(*bound.args, **bound.kwargs))
            if row is not None:
                self._trace_recording.append(row, lambda: TraceStart(
                    families.schedule(scheduler),
                    {"sampler": families.sampler_config(scheduler), "integration": integration_config(scheduler, "TracedScheduler")},
                    families.planned(scheduler),
                    {"sampler": kind},
                ))
            return output
        eta = float(arguments.get("eta", 0.0) or 0.0)
        noise: torch.Tensor | None = None
        rng = None
        if kind == "ddim":
            scalars, _ = ddim_scalars(scheduler, timestep, eta)
            noise = arguments.get("variance_noise")
            if eta > 0 and noise is None:
                # Drawn as DDIMScheduler.step would draw it, and handed over instead of the generator.
                noise = _randn_tensor()(model_output.shape, generator=arguments.get("generator"), device=model_output.device, dtype=model_output.dtype)
                arguments["variance_noise"], arguments["generator"] = noise, None
        else:  # ddpm: every other scheduler is recorded by diffusers_families
            scalars = ddpm_scalars(scheduler, timestep)
            if scalars.t > 0:
                rng = _rng_state(arguments.get("generator"), model_output.device)
                if rng is None:
                    raise ValueError(f"cannot replay the noise of a DDPM step on device {model_output.device.type}")
        output = scheduler.step(*bound.args, **bound.kwargs)
        if isinstance(output, tuple):
            if len(output) < 2:
                raise TypeError(f"{type(scheduler).__name__}.step returns no pred_original_sample: it cannot be traced")
            prev_sample, x0_pred = output[0], output[1]
        else:
            prev_sample, x0_pred = output.prev_sample, getattr(output, "pred_original_sample", None)
            if x0_pred is None:
                raise TypeError(f"{type(scheduler).__name__}.step returns no pred_original_sample: it cannot be traced")
        if kind == "ddpm" and rng is not None:
            noise = _replay_noise(rng, arguments.get("generator"), model_output)
        self._record(kind, scalars, eta, arguments, _tensor(model_output), _tensor(sample), _tensor(x0_pred), _tensor(prev_sample), noise)
        return output

    def _record(
        self, kind: str, scalars: StepScalars, eta: float, arguments: Mapping[str, Any],
        model_output: torch.Tensor, sample: torch.Tensor, x0_pred: torch.Tensor, prev_sample: torch.Tensor, noise: torch.Tensor | None,
    ) -> None:
        scheduler = self._trace_scheduler
        prediction = scheduler.config.get("prediction_type", "epsilon")
        clipped_eps = bool(arguments.get("use_clipped_model_output", False))
        row: dict[str, Any] = scalars.row()
        if kind == "ddim":
            row[ETA] = eta
        row["x_t"] = sample
        declared = self._trace_model_prediction  # what the network predicts, where the caller said
        if prediction == "epsilon" and not clipped_eps:
            row["eps"] = model_output  # the eps the update used
            if declared not in (None, "eps"):
                row[MODEL_OUTPUT] = model_output  # the network's own output, to check against what it predicts
        else:
            row[MODEL_OUTPUT] = model_output
        row["x0_pred"] = x0_pred
        row["noise"] = noise if noise is not None else torch.zeros_like(model_output)
        row[X_PREV] = prev_sample
        self._trace_recording.append(row, lambda: TraceStart(
            schedule_of(scheduler),
            {"sampler": {**sampler_config(scheduler, kind, eta if kind == "ddim" else None), **({"prediction": declared} if declared else {})},
             "integration": integration_config(scheduler, "TracedScheduler")},
            len(scheduler.timesteps),
            {"sampler": kind},
        ))


class PipelineRecorder(_OneRun):
    """A ``callback_on_step_end`` for diffusers pipelines: records the latents after every step, and t.

    ``pipe(..., callback_on_step_end=recorder)`` inside ``with recorder:``. Row i holds t (and
    t_prev and the alpha_bars from the pipeline scheduler's own arithmetic, as TracedScheduler
    computes them), x_t (the latents step i started from) and x_prev (the latents it left).
    The latents step 0 started from are not exposed to the callback: pass them as ``x_T``
    (the ``latents`` you give the pipeline, times the scheduler's ``init_noise_sigma``) to record
    step 0; without ``x_T`` the trace starts at step 1. Record one pipeline call per recorder.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        x_T: torch.Tensor | None = None,  # noqa: N803
        overwrite: bool = False,
        tensor_dtype: str = "float32",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._trace_recording = _new_recording(path, overwrite=overwrite, tensor_dtype=tensor_dtype, config=config)
        self.previous: torch.Tensor | None = None if x_T is None else _tensor(x_T).clone()
        self.previous_scale = 1.0

    def __call__(self, pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        scheduler = pipe.scheduler
        if isinstance(scheduler, TracedScheduler):
            scheduler = scheduler.scheduler
        kind = family(scheduler)
        latents = _tensor(callback_kwargs["latents"]).clone()
        if kind == "ddim":
            scalars, _ = ddim_scalars(scheduler, timestep, 0.0)
        elif kind == "ddpm":
            scalars = ddpm_scalars(scheduler, timestep)
        else:
            scalars = sigma_scalars(scheduler, int(step_index))
        scalars = StepScalars(scalars.t, scalars.t_prev, scalars.alpha_bar_t, scalars.alpha_bar_prev, float("nan"), scalars.scale_t, scalars.scale_prev)
        if self.previous is not None:
            row: dict[str, Any] = scalars.row()
            row["x_t"] = _scaled(self.previous, scalars.scale_t)
            row[X_PREV] = _scaled(latents, scalars.scale_prev)
            self._trace_recording.append(row, lambda: TraceStart(
                schedule_of(scheduler),
                {"sampler": {**sampler_config(scheduler, kind), "eta": None, "first_step": int(step_index)},
                 "integration": integration_config(scheduler, "PipelineRecorder")},
                len(scheduler.timesteps) - int(step_index),
                {"sampler": kind},
            ))
        self.previous = latents
        return {}
