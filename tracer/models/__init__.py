"""Noise-prediction networks and the interface every sampler calls.

A noise predictor is any callable ``model(x, t, labels) -> eps_pred`` where
``x`` is ``[B, *D]`` float, ``t`` is ``[B]`` int64 (0-based schedule indices),
and ``labels`` is ``[B]`` int64 class labels or None (unconditional). A
class-conditional model also exposes ``num_classes`` and ``null_label`` (the
extra "no class" label classifier-free guidance uses; Ho and Salimans 2022).
A network that predicts x0 or v instead of eps (tracer/samplers/prediction.py) says so
in its ``prediction`` attribute; without one it predicts eps. A flow-matching network
(``objective`` "flow": it predicts the velocity v = eps - x0 of x_t = (1 - t) x0 + t eps, called
at the time t T) says so in its ``objective`` attribute; without one it is a diffusion network.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class NoisePredictor(Protocol):
    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor: ...


def num_classes(model: object) -> int:
    """How many class labels the model accepts (0 for an unconditional model)."""
    return int(getattr(model, "num_classes", 0) or 0)


def null_label(model: object) -> int | None:
    """The label meaning "no class", or None if the model has none."""
    value = getattr(model, "null_label", None)
    return None if value is None else int(value)


def prediction_type(model: object) -> str:
    """What the network predicts: eps (the default), x0 or v."""
    return str(getattr(model, "prediction", None) or "eps")


def objective(model: object) -> str:
    """What the network was trained on: diffusion (the default) or flow (tracer/config.py, ModelConfig.objective)."""
    return str(getattr(model, "objective", None) or "diffusion")
