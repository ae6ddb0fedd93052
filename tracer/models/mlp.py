"""An MLP that predicts the noise eps_theta(x_t, t, y) for 2-D points (Ho et al. 2020, Eq. 14 objective).

The input point is concatenated with nothing: it is projected to the hidden width,
the conditioning vector (sinusoidal timestep embedding through an MLP, plus a
class embedding whose last row is the null label; see ``tracer.models.unet``) is
added, and residual SiLU layers follow. ``null_label = num_classes`` as in the
U-Net (Ho and Salimans 2022); ``num_classes = 0`` makes it unconditional.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tracer.models.unet import Conditioning

DEFAULT_HIDDEN = (128, 128, 128)


class MLP(nn.Module):
    """eps_theta(x_t, t, y) for points [B, dim]; ``hidden`` holds the widths, all equal."""

    def __init__(self, dim: int = 2, hidden: tuple[int, ...] = DEFAULT_HIDDEN, num_classes: int = 0) -> None:
        super().__init__()
        if not hidden or len(set(hidden)) != 1:
            raise ValueError(f"the MLP's hidden widths must be one or more equal numbers, got {hidden}")
        width = hidden[0]
        self.dim = dim
        self.num_classes = num_classes
        self.cond = Conditioning(width, num_classes)
        self.null_label = self.cond.null_label
        self.proj_in = nn.Linear(dim, width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in hidden)
        self.proj_out = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.proj_in(x) + self.cond(t, labels)
        for layer in self.layers:
            h = h + layer(F.silu(h))  # residual: h <- h + W SiLU(h)
        return self.proj_out(F.silu(h))  # type: ignore[no-any-return]
