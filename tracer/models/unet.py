"""A small image U-Net that predicts the noise eps_theta(x_t, t, y) (Ho et al. 2020, Sec. 4 and App. B).

Shape: ``conv_in`` -> one residual block per level, a stride-2 convolution between
levels (two downsamplings for three levels: 16 -> 8 -> 4) -> two residual blocks in
the middle -> the mirror path with nearest upsampling and skip concatenation ->
GroupNorm, SiLU, ``conv_out``. Residual blocks are GroupNorm, SiLU, 3x3 conv, with
the conditioning vector added after the first conv.

Conditioning: the sinusoidal timestep embedding of the Transformer (Vaswani et al.
2017, Sec. 3.5), as DDPM uses it, on the raw integer t, then an MLP; plus a class
embedding with ``num_classes + 1`` rows whose last row is the null "no class" label
used by classifier-free guidance (Ho and Salimans 2022, Sec. 3.2): ``null_label =
num_classes``, and ``labels=None`` means the null label for the whole batch.
An unconditional network (``num_classes = 0``) has no class embedding and no null label.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_CHANNELS = (16, 32, 32)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[B] timesteps -> [B, dim]: sin(t w_i) and cos(t w_i), w_i = max_period^(-i / (dim/2)) (Vaswani et al. 2017, Sec. 3.5)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class Conditioning(nn.Module):
    """c = MLP(sinusoidal(t)) + E[y]: the vector every block is conditioned on; E has a null row y = num_classes."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.dim = dim
        self.num_classes = num_classes
        self.null_label: int | None = num_classes if num_classes > 0 else None
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.class_emb = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None

    def forward(self, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        c = self.time_mlp(sinusoidal_embedding(t, self.dim))
        if self.class_emb is None:
            if labels is not None:
                raise ValueError("this model is unconditional; pass labels=None")
            return c
        if labels is None:  # no class: the null label for every sample (Ho and Salimans 2022)
            labels = torch.full(t.shape, self.num_classes, dtype=torch.int64, device=t.device)  # t may be fractional
        return c + self.class_emb(labels)


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class ResBlock(nn.Module):
    """h = conv(SiLU(GN(x))) + W c; out = conv(SiLU(GN(h))) + skip(x)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.cond = nn.Linear(cond_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.cond(F.silu(c))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """eps_theta(x_t, t, y) for images [B, C, H, W]; H and W divisible by 2^(levels - 1)."""

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = DEFAULT_CHANNELS, num_classes: int = 10) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("the U-Net needs at least two levels of channels")
        self.in_channels = in_channels
        self.channels = tuple(channels)
        self.num_classes = num_classes
        cond_dim = 4 * channels[0]
        self.cond = Conditioning(cond_dim, num_classes)
        self.null_label = self.cond.null_label
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c_prev = channels[0]
        for i, c in enumerate(channels):
            self.down_blocks.append(ResBlock(c_prev, c, cond_dim))
            c_prev = c
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock(c_prev, c_prev, cond_dim), ResBlock(c_prev, c_prev, cond_dim)])
        self.up_blocks = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(channels))):
            c = channels[i]
            self.up_blocks.append(ResBlock(c_prev + c, c, cond_dim))  # concatenated skip of the same level
            c_prev = c
            if i > 0:
                self.upsample.append(nn.Conv2d(c, channels[i - 1], 3, padding=1))
                c_prev = channels[i - 1]
        self.norm_out = nn.GroupNorm(_groups(channels[0]), channels[0])
        self.conv_out = nn.Conv2d(channels[0], in_channels, 3, padding=1)

    @property
    def downsamplings(self) -> int:
        return len(self.channels) - 1

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        c = self.cond(t, labels)
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, c)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        for block in self.mid:
            h = block(h, c)
        for i, block in enumerate(self.up_blocks):
            h = block(torch.cat([h, skips.pop()], dim=1), c)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))  # type: ignore[no-any-return]
