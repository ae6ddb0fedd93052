"""Model names to networks: ``build_model(ModelConfig) -> nn.Module``, after checking the data fits.

- ``unet``: tracer/models/unet.py, images [C, H, W] with H and W divisible by 2^(levels - 1).
- ``mlp``: tracer/models/mlp.py, points [dim].
- ``seed-unet``: tracer/models/seed_unet.py, the report's network: 1x28x28 as in the
  report (or C x H x W with H, W divisible by 4), unconditional or 10 classes.

A shape or class count a network cannot take raises ConfigError with one line.
"""

from __future__ import annotations

from torch import nn

from tracer.config import ConfigError, ModelConfig
from tracer.models.mlp import DEFAULT_HIDDEN, MLP
from tracer.models.seed_unet import GN_GROUPS, SeedUNet
from tracer.models.unet import DEFAULT_CHANNELS, UNet

MODEL_NAMES = ("unet", "mlp", "seed-unet")
SEED_CHANNELS = 128


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def check_fits(config: ModelConfig) -> None:
    """Raise ConfigError unless ``config`` (resolved) names a network that can take its data."""
    if config.sample_shape is None or config.num_classes is None:
        raise ConfigError("the model config needs a sample shape and a number of classes (resolve it from the data)")
    shape, name = config.sample_shape, config.name
    if name == "mlp":
        if len(shape) != 1:
            raise ConfigError(f"the mlp model takes points of shape [dim], not {_shape_text(shape)} images; use --model unet")
        if config.channels and len(set(config.channels)) != 1:
            raise ConfigError(f"the mlp's hidden widths must all be equal, got {list(config.channels)}")
        return
    if len(shape) != 3:
        raise ConfigError(f"the {name} model takes images [C, H, W], not shape {_shape_text(shape)}; use --model mlp")
    _, h, w = shape
    if name == "unet":
        channels = config.channels or DEFAULT_CHANNELS
        if len(channels) < 2:
            raise ConfigError(f"the unet needs channels for at least two levels, got {list(channels)}")
        factor = 2 ** (len(channels) - 1)
        if h % factor or w % factor:
            raise ConfigError(f"the unet with {len(channels)} levels needs H and W divisible by {factor}, got {_shape_text(shape)}")
        return
    # seed-unet
    if h % 4 or w % 4:
        raise ConfigError(f"seed-unet needs H and W divisible by 4 (the report uses 1x28x28), got {_shape_text(shape)}")
    if len(config.channels) > 1 or (config.channels and config.channels[0] % GN_GROUPS):
        raise ConfigError(f"seed-unet takes one channel count, a multiple of {GN_GROUPS}, got {list(config.channels)}")
    if config.num_classes not in (0, 10):
        raise ConfigError(f"seed-unet is unconditional or has 10 classes, not {config.num_classes}")


def build_model(config: ModelConfig) -> nn.Module:
    """The network ``config`` names, with ``prediction`` and ``objective`` set to what it predicts and was trained on
    (tracer/models/__init__.py)."""
    network = _network(config)
    object.__setattr__(network, "prediction", config.prediction)  # a plain attribute, not a parameter or buffer
    object.__setattr__(network, "objective", config.objective)
    return network


def _network(config: ModelConfig) -> nn.Module:
    """The network ``config`` names, freshly initialised (seed torch first for reproducible weights)."""
    check_fits(config)
    assert config.sample_shape is not None and config.num_classes is not None
    shape, classes = config.sample_shape, config.num_classes
    if config.name == "mlp":
        return MLP(dim=shape[0], hidden=config.channels or DEFAULT_HIDDEN, num_classes=classes)
    if config.name == "unet":
        return UNet(in_channels=shape[0], channels=config.channels or DEFAULT_CHANNELS, num_classes=classes)
    return SeedUNet(in_channels=shape[0], channels=config.channels[0] if config.channels else SEED_CHANNELS, num_classes=classes)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
