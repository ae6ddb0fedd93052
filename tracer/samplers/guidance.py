"""The network output a sampler uses: one forward pass, with or without classifier-free guidance and its rescale.

Classifier-free guidance, Ho and Salimans 2022, Eq. 6, written with the guidance scale s of
the diffusers/Imagen convention (s = 1: the conditional prediction, s = 0: the unconditional
one; the paper's w is s - 1), applied to the network's output in its own prediction space
(eps, x0 or v; the mix is affine, so it is the same mix of the eps each output stands for):

    out_cfg = out_uncond + s * (out_cond - out_uncond)

Guidance rescale, Lin et al. 2023, Sec. 3.4 (their Alg. 2; diffusers' ``guidance_rescale``):
per sample, the guided output is scaled toward the conditional output's standard deviation,

    out = phi * out_cfg * std(out_cond) / std(out_cfg) + (1 - phi) * out_cfg,   phi in [0, 1].

Both predictions come from ONE batched forward pass: [x_t, x_t] with [labels, null_label],
so a guided step costs one model call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tracer.config import ConfigError
from tracer.models import NoisePredictor, null_label


@dataclass(frozen=True)
class Guided:
    """The output an update uses and, with guidance, the two outputs it mixes (and the mix before its rescale)."""

    output: torch.Tensor
    cond: torch.Tensor | None = None
    uncond: torch.Tensor | None = None
    cfg: torch.Tensor | None = None  # the guided output before the rescale, when rescaled


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


def rescale(cfg: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """out = phi cfg std(cond) / std(cfg) + (1 - phi) cfg, std per sample  (Lin et al. 2023, Sec. 3.4)."""
    dims = tuple(range(1, cfg.ndim))
    factor = cond.std(dim=dims, keepdim=True) / cfg.std(dim=dims, keepdim=True)
    return phi * (cfg * factor) + (1.0 - phi) * cfg


def predict(
    model: NoisePredictor,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    labels: torch.Tensor | None,
    guidance: float | None,
    guidance_rescale: float = 0.0,
) -> Guided:
    """The output for x_t at timestep t (an int, or a [B] int64 tensor); guided by scale ``guidance`` unless None."""
    batch = x_t.shape[0]
    t_batch = torch.full((batch,), t, dtype=torch.int64, device=x_t.device) if isinstance(t, int) else t
    if guidance is None:
        return Guided(output=model(x_t, t_batch, labels))
    check_guidance(model, guidance, labels)
    null_value = null_label(model)
    assert labels is not None and null_value is not None  # checked above
    null = torch.full_like(labels, null_value)
    both = model(torch.cat([x_t, x_t]), torch.cat([t_batch, t_batch]), torch.cat([labels, null]))
    cond, uncond = both[:batch], both[batch:]
    cfg = combine(cond, uncond, guidance)  # Ho and Salimans 2022, Eq. 6
    if not guidance_rescale:
        return Guided(output=cfg, cond=cond, uncond=uncond)
    return Guided(output=rescale(cfg, cond, guidance_rescale), cond=cond, uncond=uncond, cfg=cfg)
