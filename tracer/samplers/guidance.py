"""The noise prediction a sampler uses, with or without classifier-free guidance.

Ho and Salimans 2022, Eq. 6, written with the guidance scale s of the
diffusers/Imagen convention (s = 1: the conditional prediction, s = 0: the
unconditional one; the paper's w is s - 1):

    eps = eps_uncond + s * (eps_cond - eps_uncond)

Both predictions come from ONE batched forward pass: [x_t, x_t] with
[labels, null_label], so a guided step costs one model call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tracer.config import ConfigError
from tracer.models import NoisePredictor, null_label


@dataclass(frozen=True)
class Prediction:
    """The eps an update uses, and, with guidance, the two predictions it mixes."""

    eps: torch.Tensor
    eps_cond: torch.Tensor | None = None
    eps_uncond: torch.Tensor | None = None


def check_guidance(model: object, guidance: float | None, labels: torch.Tensor | None) -> None:
    """Raise ConfigError unless ``guidance`` can be applied to ``model`` with ``labels``."""
    if guidance is None:
        return
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
        raise ConfigError(f"guidance must be a finite number >= 0, got {guidance!r}")
    if null_label(model) is None:
        raise ConfigError("guidance needs a class-conditional model with a null label (classifier-free guidance); this one has none")
    if labels is None:
        raise ConfigError("guidance needs class labels to condition on")


def combine(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """eps = eps_uncond + s (eps_cond - eps_uncond)  (Ho and Salimans 2022, Eq. 6, with s = 1 + w)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def predict(
    model: NoisePredictor,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    labels: torch.Tensor | None,
    guidance: float | None,
) -> Prediction:
    """eps for x_t at timestep t (an int, or a [B] int64 tensor); guided by scale ``guidance`` unless None."""
    batch = x_t.shape[0]
    t_batch = torch.full((batch,), t, dtype=torch.int64, device=x_t.device) if isinstance(t, int) else t
    if guidance is None:
        return Prediction(eps=model(x_t, t_batch, labels))
    check_guidance(model, guidance, labels)
    null_value = null_label(model)
    assert labels is not None and null_value is not None  # checked above
    null = torch.full_like(labels, null_value)
    both = model(torch.cat([x_t, x_t]), torch.cat([t_batch, t_batch]), torch.cat([labels, null]))
    eps_cond, eps_uncond = both[:batch], both[batch:]
    eps = combine(eps_cond, eps_uncond, guidance)  # Ho and Salimans 2022, Eq. 6
    return Prediction(eps=eps, eps_cond=eps_cond, eps_uncond=eps_uncond)
