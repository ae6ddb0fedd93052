"""Data sets: ranges, shapes, determinism, and every file loader on small files written here."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tracer.config import ConfigError, DataConfig
from tracer.data import (
    CIFAR_ROW,
    TOY_SETS,
    load_cifar10,
    load_dataset,
    load_digits,
    parse_spec,
    read_idx,
    split,
)


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08, gz: bool = False) -> Path:
    """An IDX file: 0x00 0x00 <type> <ndim>, big-endian uint32 dims, big-endian data."""
    big = array.astype(array.dtype.newbyteorder(">"))
    raw = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def one_line(error: pytest.ExceptionInfo[BaseException]) -> None:
    assert str(error.value) and "\n" not in str(error.value)


# -- digits ------------------------------------------------------------------------------------------


def test_digits_at_8x8_is_the_affine_map_of_the_raw_pixels() -> None:
    from sklearn.datasets import load_digits as raw_digits

    raw = raw_digits()
    data = load_digits(size=8)
    expected = torch.as_tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16 * 2 - 1
    assert torch.equal(data.x, expected)
    assert torch.equal(data.labels, torch.as_tensor(raw.target, dtype=torch.int64))


def test_digits_default_is_16x16_in_range_with_ten_classes() -> None:
    data = load_dataset("digits")
    assert data.x.shape == (1797, 1, 16, 16) and data.x.dtype == torch.float32
    assert data.shape == (1, 16, 16) and data.num_classes == 10
    assert data.labels.dtype == torch.int64 and set(data.labels.tolist()) == set(range(10))
    assert data.x.min() >= -1 and data.x.max() <= 1
    assert data.x.min() == -1  # the blank background stays exactly -1 after bilinear upsampling


def test_split_is_deterministic_disjoint_and_complete() -> None:
    data = load_digits()
    train_a, held_a = split(data, 0.2, seed=3)
    train_b, held_b = split(data, 0.2, seed=3)
    assert torch.equal(train_a.x, train_b.x) and torch.equal(held_a.labels, held_b.labels)
    assert len(held_a) == round(0.2 * len(data)) and len(train_a) + len(held_a) == len(data)
    # Disjoint and complete: every image lands on exactly one side (match by content and label).
    rows = {(bytes(x.numpy().tobytes()), int(y)) for x, y in zip(data.x, data.labels, strict=True)}
    both = [(bytes(x.numpy().tobytes()), int(y)) for part in (train_a, held_a) for x, y in zip(part.x, part.labels, strict=True)]
    assert set(both) == rows
    _, held_c = split(data, 0.2, seed=4)
    assert not torch.equal(held_a.x, held_c.x)


def test_data_config_holds_out_digits_only_by_default() -> None:
    assert DataConfig("digits").held_out_fraction == 0.2
    assert DataConfig("moons").held_out_fraction == 0.0
    with pytest.raises(ConfigError):
        DataConfig("digits", held_out=1.0)


# -- 2-D toys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOY_SETS)
def test_toys_are_seeded_2d_and_roughly_in_unit_square(name: str) -> None:
    a, b, c = load_dataset(name, seed=1, size=2000), load_dataset(name, seed=1, size=2000), load_dataset(name, seed=2, size=2000)
    assert a.x.shape == (2000, 2) and a.x.dtype == torch.float32 and a.labels.shape == (2000,)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert a.x.abs().max() < 1.3
    assert (a.x.abs() <= 1.0).float().mean() > 0.97


def test_moons_and_gaussians_label_which_component() -> None:
    moons = load_dataset("moons", seed=0, size=4000)
    assert moons.num_classes == 2 and set(moons.labels.tolist()) == {0, 1}
    # Before scaling, moon 0 is the unit upper half circle and moon 1 the shifted lower one (noise 0.05).
    raw = moons.x.numpy() * 1.5 + np.array([0.5, 0.25])
    centre = np.where(moons.labels.numpy()[:, None] == 0, [0.0, 0.0], [1.0, 0.5])
    radius = np.linalg.norm(raw - centre, axis=1)
    assert np.abs(radius - 1).max() < 0.3

    gauss = load_dataset("gaussians8", seed=0, size=4000)
    assert gauss.num_classes == 8 and set(gauss.labels.tolist()) == set(range(8))
    angle = gauss.labels.numpy() * 2 * np.pi / 8
    centres = 0.8 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    assert np.linalg.norm(gauss.x.numpy() - centres, axis=1).max() < 6 * 0.05 * np.sqrt(2)


def test_checkerboard_points_lie_on_dark_squares_and_unlabelled_toys_use_minus_one() -> None:
    board = load_dataset("checkerboard", seed=0, size=4000)
    cells = np.floor(board.x.numpy() * 2).astype(int)  # 4x4 board of half-unit squares
    assert len(set(((cells[:, 0] + cells[:, 1]) % 2).tolist())) == 1
    for name in ("checkerboard", "swissroll"):
        data = load_dataset(name, seed=0, size=10)
        assert data.num_classes == 0 and torch.equal(data.labels, torch.full((10,), -1))


# -- IDX -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_images_load_back_scaled(tmp_path: Path, gz: bool, name: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=gz)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz=gz)
    data = load_dataset(f"{name}:{tmp_path}")
    assert data.name == name and data.x.shape == (5, 1, 28, 28) and data.num_classes == 10
    assert torch.allclose(data.x[:, 0], torch.as_tensor(images, dtype=torch.float32) / 255 * 2 - 1)
    assert data.x[0, 0, 0, 0] == -1 and data.x[0, 0, 0, 1] == 1
    assert data.labels.tolist() == [3, 1, 4, 1, 5] and data.labels.dtype == torch.int64


def test_read_idx_parses_other_element_types_and_dims(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 7
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", array, type_code=0x0C)), array)
    floats = np.linspace(-1, 1, 6).astype(np.float64).reshape(6)
    assert np.array_equal(read_idx(write_idx(tmp_path / "b", floats, type_code=0x0E, gz=True)), floats)


def test_idx_errors_are_one_line_config_errors(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ConfigError, match="magic") as error:
        read_idx(tmp_path / "bad")
    one_line(error)
    raw = bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 3, 3) + b"\x00" * 8  # 9 bytes promised, 8 given
    (tmp_path / "short").write_bytes(raw)
    with pytest.raises(ConfigError, match="need 9"):
        read_idx(tmp_path / "short")
    (tmp_path / "code").write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 0]))
    with pytest.raises(ConfigError, match="element type"):
        read_idx(tmp_path / "code")

    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(ConfigError, match="2 labels for 3 images") as error:
        load_dataset(f"mnist:{tmp_path}")
    one_line(error)
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset(f"mnist:{tmp_path / 'nowhere'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="train-images"):
        load_dataset(f"fashion-mnist:{empty}")


# -- CIFAR-10 ------------------------------------------------------------------------------------


def test_cifar10_rows_are_label_then_channel_major_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [rng.integers(0, 256, (n, CIFAR_ROW), dtype=np.uint8) for n in (3, 2)]
    for i, table in enumerate(rows, start=1):
        table[:, 0] = rng.integers(0, 10, len(table))
        (tmp_path / f"data_batch_{i}.bin").write_bytes(table.tobytes())
    data = load_dataset(f"cifar10:{tmp_path}")
    table = np.concatenate(rows)
    assert data.x.shape == (5, 3, 32, 32) and data.num_classes == 10
    assert data.labels.tolist() == table[:, 0].tolist()
    # Pixel byte 1 + c*1024 + h*32 + w is channel c, row h, column w.
    c, h, w = 2, 5, 7
    assert data.x[4, c, h, w] == torch.tensor(table[4, 1 + c * 1024 + h * 32 + w] / 255 * 2 - 1, dtype=torch.float32)
    assert data.x.min() >= -1 and data.x.max() <= 1


def test_cifar10_bad_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x00" * (CIFAR_ROW + 1))
    with pytest.raises(ConfigError, match="multiple") as error:
        load_cifar10(tmp_path)
    one_line(error)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="data_batch_1"):
        load_cifar10(empty)


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["nope", "mnist", "digits:/tmp", "cifar10:"])
def test_bad_specs_raise_one_line(spec: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_spec(spec)
    one_line(error)
