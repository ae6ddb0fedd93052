"""The tiny diffusers ``UNet2DModel`` the diffusers tests sample with: random weights (seed 0), 1x8x8 samples, built
locally (nothing is downloaded)."""

from __future__ import annotations

from typing import Any

import torch


def tiny_unet() -> Any:
    import diffusers

    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    ).eval()
