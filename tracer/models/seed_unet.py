"""The network of the report noisescope grew from (arXiv 2512.07201), as ``seed-unet``.

Facts of the report (docs/training.md), kept exactly so the report's published
state_dicts load with ``strict=True``: 22 tensors, 3,281,153 parameters at 1 input
channel and 128 channels (3,283,713 with the class-conditional ``class_emb``), no
buffers. Every conv is 3x3 with bias and padding 1; GN is a stateless group norm
(32 groups, eps 1e-5, no affine); upsampling is nearest x2. The time embedding is
the Transformer's sinusoid (Vaswani et al. 2017, Sec. 3.5) with cos first, on the
raw integer t. The class variant adds ReLU(class_emb(y)) to the middle; it has no
null label, so classifier-free guidance refuses it (``null_label = None``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

GN_GROUPS = 32
GN_EPS = 1e-5


def gn(x: torch.Tensor) -> torch.Tensor:
    """Stateless GroupNorm: 32 groups, eps 1e-5, no learned affine."""
    return F.group_norm(x, GN_GROUPS, eps=GN_EPS)


def cos_first_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """freq_i = exp(-ln(10000) i / (dim/2)); emb = [cos(t freq), sin(t freq)] on float(t)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class _Conv(nn.Module):
    """A conv held as ``.conv`` (the state_dict keys ``down_block2.conv.weight`` and the like)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # type: ignore[no-any-return]


class _Middle(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)


class SeedUNet(nn.Module):
    """The report's U-Net: input [B, C, H, W] with H and W divisible by 4 (1x28x28 in the report)."""

    def __init__(self, in_channels: int = 1, channels: int = 128, num_classes: int = 0) -> None:
        super().__init__()
        if channels % GN_GROUPS:
            raise ValueError(f"seed-unet channels must be a multiple of {GN_GROUPS}, got {channels}")
        if num_classes not in (0, 10):
            raise ValueError(f"seed-unet is unconditional or has 10 classes, got {num_classes}")
        c, c2 = channels, 2 * channels
        self.in_channels = in_channels
        self.channels = channels
        self.num_classes = num_classes
        self.null_label: int | None = None  # no "no class" row: guidance is refused
        self.down_block1 = nn.Conv2d(in_channels, c, 3, padding=1)
        self.down_block2 = _Conv(c, c, stride=2)
        self.down_block3 = nn.Conv2d(c, c2, 3, padding=1)
        self.down_block4 = _Conv(c2, c2, stride=2)
        self.middle_block = _Middle(c2)
        self.noise_embedding = nn.Linear(c, c2)
        self.up_block1 = _Conv(c2, c2)
        self.up_block2 = nn.Conv2d(c2, c, 3, padding=1)
        self.up_block3 = _Conv(c, c)
        self.up_block4 = nn.Conv2d(c, in_channels, 3, padding=1)
        self.class_emb = nn.Embedding(num_classes, c2) if num_classes else None

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x1 = F.relu(gn(self.down_block1(x)))  # 1. C -> c, H x W
        x2 = F.relu(gn(self.down_block2(x1)))  # 2. stride 2, H/2
        x3 = F.relu(gn(self.down_block3(x2)))  # 3. c -> 2c
        x4 = F.relu(gn(self.down_block4(x3)))  # 4. stride 2, H/4
        h = F.relu(gn(self.middle_block.conv1(x4)))  # 5.
        h = F.relu(gn(self.middle_block.conv2(h)))
        mid = h + x4
        temb = F.relu(self.noise_embedding(cos_first_embedding(t, self.channels)))  # 6.
        mid = mid + temb[:, :, None, None]
        if labels is not None:  # 7. class variant only
            if self.class_emb is None:
                raise ValueError("this seed-unet is unconditional; pass labels=None")
            mid = mid + F.relu(self.class_emb(labels))[:, :, None, None]
        x5 = F.relu(gn(self.up_block1(F.interpolate(mid + x4, scale_factor=2.0, mode="nearest"))))  # 8.
        x6 = F.relu(gn(self.up_block2(x5 + x3)))  # 9.
        x7 = F.relu(gn(self.up_block3(F.interpolate(x6 + x2, scale_factor=2.0, mode="nearest"))))  # 10.
        return self.up_block4(x7 + x1)  # type: ignore[no-any-return]  # 11. the predicted eps
