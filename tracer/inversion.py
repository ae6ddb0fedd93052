"""DDIM inversion with a trace of both ways: data -> x_T (the ``ddim-inversion`` sampler), then x_T -> data (DDIM, eta 0).

``record_round_trip`` records the inversion into one trace and the re-sampling from the x_T it
found into a second, over the same timesteps (tracer/samplers/ddim_inversion.py says which),
and links them: each trace's config names the other (``linked``: its role and the other's file,
relative to its own folder). The round-trip error, resample - input, is what Compare in the
viewer shows step by step (docs/inversion.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tracer import recording
from tracer.config import ConfigError
from tracer.models import prediction_type
from tracer.samplers import ddim_inversion
from tracer.samplers.config import SamplerConfig
from tracer.schedules import Schedule

INVERSION, RESAMPLE = "inversion", "resample"


@dataclass(frozen=True)
class RoundTrip:
    """What one inversion and its re-sampling gave: the x_T found, the data sampled back from it, and the error."""

    x_T: torch.Tensor  # noqa: N815 - the paper's symbol
    resampled: torch.Tensor
    max_error: float  # max |resampled - input| over every element of the batch
    rms_error: float  # sqrt(mean (resampled - input)^2)
    steps: int  # updates each way
    t_end: int  # the largest timestep: where the inversion lands and the re-sampling starts


def default_resample_path(out: str | os.PathLike[str]) -> Path:
    """``inv.h5`` -> ``inv.resample.h5``, beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}.resample{out.suffix or '.h5'}")


def resample_config(inversion: SamplerConfig, T: int) -> SamplerConfig:  # noqa: N803
    """DDIM with eta 0 over the inversion's timesteps, descending, ending at alpha_bar_0 where the inversion began."""
    if inversion.sampler != ddim_inversion.NAME:
        raise ConfigError(f"a round trip inverts with the {ddim_inversion.NAME} sampler, not {inversion.sampler}")
    return SamplerConfig("ddim", **ddim_inversion.resample_options(inversion.resolve(T)))


def check_round_trip(model: Any, schedule: Schedule, inversion: SamplerConfig) -> SamplerConfig:
    """Both configs against this model's schedule before anything runs; returns the re-sampling's config."""
    resolved = inversion.resolve(schedule.T)
    resample = resample_config(inversion, schedule.T)
    resample.resolve(schedule.T)
    assert resolved.timesteps is not None
    if prediction_type(model) == "eps" and float(schedule.alpha_bar[resolved.timesteps[-1]]) == 0.0:
        raise ConfigError(f"alpha_bar is 0 at t = {resolved.timesteps[-1]} (zero terminal SNR): sampling back from there with an eps "
                          "prediction divides by sqrt(alpha_bar) = 0; choose fewer steps or a v-prediction model")
    return resample


def _link(role: str, this: Path, other: Path) -> dict[str, str]:
    return {"role": role, "trace": os.path.relpath(other.absolute(), this.absolute().parent)}


def record_round_trip(
    model: Any,
    schedule: Schedule,
    config: SamplerConfig,
    *,
    x0: torch.Tensor,
    labels: torch.Tensor | None,
    out: str | os.PathLike[str],
    out_resample: str | os.PathLike[str] | None = None,
    tensor_dtype: str = "float32",
    overwrite: bool = False,
    extra_config: dict[str, Any] | None = None,
    progress: bool = True,
) -> RoundTrip:
    """Invert ``x0`` [B, *D] into ``out``, sample back from the x_T found into ``out_resample``; return both ends and the error."""
    out = Path(out)
    back = Path(out_resample) if out_resample is not None else default_resample_path(out)
    resample = check_round_trip(model, schedule, config)
    extra = dict(extra_config or {})
    x_T = recording.record_run(  # noqa: N806
        model, schedule, config, x_T=x0, labels=labels, generator=None, out=out, tensor_dtype=tensor_dtype,
        overwrite=overwrite, extra_config={**extra, "linked": _link(INVERSION, out, back)}, progress=progress,
    )
    resampled = recording.record_run(
        model, schedule, resample, x_T=x_T, labels=labels, generator=None, out=back, tensor_dtype=tensor_dtype,
        overwrite=overwrite, extra_config={**extra, "linked": _link(RESAMPLE, back, out)}, progress=progress,
    )
    error = (resampled.to(torch.float64) - x0.to(torch.float64)).cpu()
    resolved = config.resolve(schedule.T)
    return RoundTrip(
        x_T=x_T,
        resampled=resampled,
        max_error=float(error.abs().max()) if error.numel() else 0.0,
        rms_error=float(error.pow(2).mean().sqrt()) if error.numel() else 0.0,
        steps=len(config.plan(schedule.T)),
        t_end=int(resolved.timesteps[-1]),
    )
