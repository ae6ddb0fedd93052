"""Networks: shapes, conditioning, the seed U-Net's exact layout and forward pass, and the registry's checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from tracer.config import ConfigError, ModelConfig
from tracer.models import NoisePredictor, null_label, num_classes
from tracer.models.mlp import MLP
from tracer.models.registry import build_model, check_fits, parameter_count
from tracer.models.seed_unet import SeedUNet, cos_first_embedding
from tracer.models.unet import UNet, sinusoidal_embedding
from tracer.samplers.guidance import check_guidance

# The report program's table of state_dict keys and shapes at 1 channel and 128 channels.
SEED_SHAPES: dict[str, tuple[int, ...]] = {
    "down_block1.weight": (128, 1, 3, 3), "down_block1.bias": (128,),
    "down_block2.conv.weight": (128, 128, 3, 3), "down_block2.conv.bias": (128,),
    "down_block3.weight": (256, 128, 3, 3), "down_block3.bias": (256,),
    "down_block4.conv.weight": (256, 256, 3, 3), "down_block4.conv.bias": (256,),
    "middle_block.conv1.weight": (256, 256, 3, 3), "middle_block.conv1.bias": (256,),
    "middle_block.conv2.weight": (256, 256, 3, 3), "middle_block.conv2.bias": (256,),
    "noise_embedding.weight": (256, 128), "noise_embedding.bias": (256,),
    "up_block1.conv.weight": (256, 256, 3, 3), "up_block1.conv.bias": (256,),
    "up_block2.weight": (128, 256, 3, 3), "up_block2.bias": (128,),
    "up_block3.conv.weight": (128, 128, 3, 3), "up_block3.conv.bias": (128,),
    "up_block4.weight": (1, 128, 3, 3), "up_block4.bias": (1,),
}  # fmt: skip


def test_sinusoidal_embedding_closed_form() -> None:
    t = torch.tensor([0, 1, 37, 999])
    emb = sinusoidal_embedding(t, 8)
    for i in range(4):
        w = 10000 ** (-i / 4)
        assert torch.allclose(emb[:, i], torch.sin(t.double() * w).float(), atol=1e-5)
        assert torch.allclose(emb[:, 4 + i], torch.cos(t.double() * w).float(), atol=1e-5)


def test_cos_first_embedding_closed_form() -> None:
    t = torch.tensor([0, 5, 299])
    emb = cos_first_embedding(t, 128)
    assert emb.shape == (3, 128)
    freq = torch.exp(-math.log(10000) * torch.arange(64, dtype=torch.float32) / 64)
    assert torch.equal(emb[:, :64], torch.cos(t.float()[:, None] * freq))
    assert torch.equal(emb[:, 64:], torch.sin(t.float()[:, None] * freq))
    assert torch.equal(emb[0, :64], torch.ones(64))  # cos(0) first


@pytest.mark.parametrize("shape", [(1, 16, 16), (1, 28, 28), (3, 32, 32)])
def test_unet_keeps_the_sample_shape(shape: tuple[int, ...]) -> None:
    model = UNet(in_channels=shape[0], channels=(8, 16, 16), num_classes=10)
    x = torch.randn(2, *shape)
    assert model(x, torch.tensor([0, 999]), torch.tensor([3, 10])).shape == x.shape
    assert isinstance(model, NoisePredictor)
    assert num_classes(model) == 10 and null_label(model) == 10


def test_default_unet_is_small() -> None:
    model = build_model(ModelConfig("unet", (1, 16, 16), 10))
    assert 100_000 < parameter_count(model) < 400_000


@pytest.mark.parametrize("make", [lambda: UNet(1, (8, 16), 4), lambda: MLP(2, (32, 32), 4)])
def test_no_labels_means_the_null_label_and_labels_matter(make: object) -> None:
    torch.manual_seed(0)
    model = make()  # type: ignore[operator]
    x = torch.randn(4, 1, 8, 8) if isinstance(model, UNet) else torch.randn(4, 2)
    t = torch.tensor([1, 2, 3, 4])
    null = torch.full((4,), model.null_label)
    assert torch.equal(model(x, t, None), model(x, t, null))
    assert not torch.allclose(model(x, t, torch.zeros(4, dtype=torch.int64)), model(x, t, torch.ones(4, dtype=torch.int64)))
    with pytest.raises(IndexError):
        model(x, t, torch.full((4,), model.null_label + 1))


def test_unconditional_models_have_no_null_label_and_refuse_labels() -> None:
    for model in (UNet(1, (8, 16), 0), MLP(2, (16,), 0)):
        assert null_label(model) is None and num_classes(model) == 0
        x = torch.randn(2, 1, 8, 8) if isinstance(model, UNet) else torch.randn(2, 2)
        assert model(x, torch.tensor([0, 1]), None).shape == x.shape
        with pytest.raises(ValueError):
            model(x, torch.tensor([0, 1]), torch.tensor([0, 0]))


# -- seed-unet -----------------------------------------------------------------------------------


def test_seed_unet_state_dict_matches_the_documented_table() -> None:
    model = SeedUNet()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == SEED_SHAPES
    assert parameter_count(model) == 3_281_153 and not list(model.buffers())
    conditional = SeedUNet(num_classes=10)
    assert parameter_count(conditional) == 3_283_713
    assert tuple(conditional.state_dict()["class_emb.weight"].shape) == (10, 256)


def test_a_state_dict_with_exactly_the_documented_keys_loads_strictly() -> None:
    state = {k: torch.randn(shape) for k, shape in SEED_SHAPES.items()}
    model = SeedUNet()
    model.load_state_dict(state, strict=True)
    out = model(torch.randn(2, 1, 28, 28), torch.tensor([0, 299]), None)
    assert out.shape == (2, 1, 28, 28)
    with pytest.raises(RuntimeError):
        SeedUNet().load_state_dict({**state, "extra.weight": torch.zeros(1)}, strict=True)


def reference_seed_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The report program's forward pass, steps 1-11, written out functionally from the state_dict."""

    def conv(name: str, h: torch.Tensor, stride: int = 1) -> torch.Tensor:
        return F.conv2d(h, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=stride, padding=1)

    def block(h: torch.Tensor) -> torch.Tensor:
        return F.relu(F.group_norm(h, 32, eps=1e-5))

    def up(h: torch.Tensor) -> torch.Tensor:
        return h.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest x2

    x1 = block(conv("down_block1", x))
    x2 = block(conv("down_block2.conv", x1, 2))
    x3 = block(conv("down_block3", x2))
    x4 = block(conv("down_block4.conv", x3, 2))
    h = block(conv("middle_block.conv1", x4))
    h = block(conv("middle_block.conv2", h))
    mid = h + x4
    half = sd["noise_embedding.weight"].shape[1] // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freq
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    mid = mid + F.relu(F.linear(emb, sd["noise_embedding.weight"], sd["noise_embedding.bias"]))[:, :, None, None]
    if y is not None:
        mid = mid + F.relu(sd["class_emb.weight"][y])[:, :, None, None]
    x5 = block(conv("up_block1.conv", up(mid + x4)))
    x6 = block(conv("up_block2", x5 + x3))
    x7 = block(conv("up_block3.conv", up(x6 + x2)))
    return conv("up_block4", x7 + x1)


@pytest.mark.parametrize("classes", [0, 10])
def test_seed_unet_forward_follows_the_documented_steps(classes: int) -> None:
    torch.manual_seed(0)
    model = SeedUNet(channels=32, num_classes=classes)  # same layout, fewer channels: fast
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0, 123])
    y = torch.tensor([4, 7]) if classes else None
    expected = reference_seed_forward(model.state_dict(), x, t, y)
    assert torch.allclose(model(x, t, y), expected, atol=1e-5)


def test_guidance_refuses_seed_unet() -> None:
    model = SeedUNet(channels=32, num_classes=10)
    assert null_label(model) is None and num_classes(model) == 10
    with pytest.raises(ConfigError):
        check_guidance(model, 3.0, torch.tensor([1]))


# -- registry ------------------------------------------------------------------------------------


def test_build_model_by_name() -> None:
    assert isinstance(build_model(ModelConfig("unet", (3, 32, 32), 10, (8, 16))), UNet)
    assert isinstance(build_model(ModelConfig("mlp", (2,), 8)), MLP)
    seed = build_model(ModelConfig("seed-unet", (1, 28, 28), 0))
    assert isinstance(seed, SeedUNet) and parameter_count(seed) == 3_281_153


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (ModelConfig("unet", (1, 15, 15), 10), "divisible by 4"),
        (ModelConfig("unet", (1, 20, 20), 10, (8, 8, 8, 8)), "divisible by 8"),
        (ModelConfig("unet", (2,), 0), "images"),
        (ModelConfig("mlp", (1, 16, 16), 10), "points"),
        (ModelConfig("seed-unet", (1, 30, 30), 0), "divisible by 4"),
        (ModelConfig("seed-unet", (1, 28, 28), 3), "10 classes"),
        (ModelConfig("seed-unet", (1, 28, 28), 0, (100,)), "multiple of 32"),
        (ModelConfig("unet"), "sample shape"),
    ],
)
def test_shapes_that_do_not_fit_raise_one_line(config: ModelConfig, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as error:
        check_fits(config)
    assert "\n" not in str(error.value)


def test_model_config_validates_and_round_trips_through_json_lists() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        ModelConfig("transformer")
    with pytest.raises(ConfigError):
        ModelConfig(channels=(8, 0))
    config = ModelConfig("unet", [1, 16, 16], 10, [8, 16])  # type: ignore[arg-type]
    assert config == ModelConfig("unet", (1, 16, 16), 10, (8, 16))
    assert ModelConfig().resolve((2,), 8) == ModelConfig("unet", (2,), 8)
