"""Data sets for training, every one scaled to [-1, 1] (Ho et al. 2020, Sec. 3.3: data in [-1, 1]).

A loader returns a ``Dataset``: ``x`` float32 ``[N, *D]``, ``labels`` int64 ``[N]``
(-1 for every point of an unconditional set), ``num_classes`` (0 when unconditional)
and ``shape`` (D). ``load_dataset(spec, seed)`` parses ``name`` or ``name:DIR``:

- ``digits``: scikit-learn's ``load_digits()`` (1,797 images, 8x8, values 0..16,
  10 classes; it ships inside scikit-learn, no download). The 8x8 images are
  upsampled to 16x16 with bilinear interpolation: they read better on screen, and
  16x16 gives the U-Net two downsamplings (16 -> 8 -> 4). Bilinear weights are a
  convex combination, so the range stays inside [-1, 1]. ``split`` gives a
  deterministic train / held-out split (the benchmark trains a classifier on the
  held-out digits to judge samples).
- 2-D toys drawn with a seed: ``moons`` (label = which moon), ``swissroll``,
  ``gaussians8`` (label = which of the 8 gaussians), ``checkerboard``; each
  scaled to roughly [-1, 1].
- ``mnist:DIR`` and ``fashion-mnist:DIR``: the standard IDX files
  ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (gzipped or not).
- ``cifar10:DIR``: the standard binary batches ``data_batch_1.bin`` ... ``data_batch_5.bin``,
  each row one label byte then 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tracer.config import ConfigError

NO_LABEL = -1
IMAGE_SETS = ("digits", "mnist", "fashion-mnist", "cifar10")
TOY_SETS = ("moons", "swissroll", "gaussians8", "checkerboard")
DATASET_NAMES: tuple[str, ...] = IMAGE_SETS + TOY_SETS
NEEDS_DIR = ("mnist", "fashion-mnist", "cifar10")
DEFAULT_TOY_SIZE = 8192

# IDX type codes (LeCun's MNIST page): the third magic byte names the element type.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CIFAR_ROW = 1 + 3 * 32 * 32


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training data: ``x`` [N, *D] float32 in [-1, 1], ``labels`` [N] int64 (-1: no class)."""

    name: str
    x: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: torch.Tensor, name: str | None = None) -> Dataset:
        return Dataset(name or self.name, self.x[index], self.labels[index], self.num_classes)


# -- digits -------------------------------------------------------------------------------------


def load_digits(size: int = 16) -> Dataset:
    """scikit-learn's 8x8 digits, upsampled (bilinear) to ``size`` x ``size`` and scaled to [-1, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0 * 2.0 - 1.0  # 0..16 -> [-1, 1]
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(-1.0, 1.0).contiguous()
    return Dataset("digits", x, torch.as_tensor(bunch.target, dtype=torch.int64), 10)


def split(dataset: Dataset, held_out: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A deterministic (train, held-out) split: a seeded permutation, ``held_out`` of it held out."""
    if not 0.0 <= held_out < 1.0:
        raise ConfigError(f"the held-out fraction must lie in [0, 1), got {held_out}")
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_held = int(round(n * held_out))
    held, kept = order[:n_held].sort().values, order[n_held:].sort().values
    return dataset.subset(kept, dataset.name), dataset.subset(held, f"{dataset.name}-held-out")


# -- 2-D toys -----------------------------------------------------------------------------------


def _toy(name: str, x: np.ndarray, labels: np.ndarray | None, num_classes: int) -> Dataset:
    y = np.full(len(x), NO_LABEL, dtype=np.int64) if labels is None else labels.astype(np.int64)
    return Dataset(name, torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y), num_classes)


def moons(n: int, seed: int, noise: float = 0.05) -> Dataset:
    """Two interleaved half circles; label = which moon. (x, y) in [-1, 2] x [-0.5, 1] mapped to about [-1, 1] x [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    angle = rng.uniform(0.0, math.pi, n)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    x = np.where(labels[:, None] == 0, upper, lower) + rng.normal(0.0, noise, (n, 2))
    return _toy("moons", (x - np.array([0.5, 0.25])) / 1.5, labels, 2)


def swissroll(n: int, seed: int, noise: float = 0.3) -> Dataset:
    """The 2-D swiss roll (t cos t, t sin t), t in [1.5 pi, 4.5 pi], scaled by 1/15 to about [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = 1.5 * math.pi * (1.0 + 2.0 * rng.uniform(0.0, 1.0, n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + rng.normal(0.0, noise, (n, 2))
    return _toy("swissroll", x / 15.0, None, 0)


def gaussians8(n: int, seed: int, radius: float = 0.8, std: float = 0.05) -> Dataset:
    """Eight gaussians on a circle of ``radius``; label = which gaussian."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, n)
    angle = labels * (2.0 * math.pi / 8.0)
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return _toy("gaussians8", centres + rng.normal(0.0, std, (n, 2)), labels, 8)


def checkerboard(n: int, seed: int) -> Dataset:
    """Uniform points on the dark squares of a 4x4 board over [-1, 1]^2."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(-2.0, 2.0, n)
    x2 = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2  # row parity follows column parity
    return _toy("checkerboard", np.stack([x1, x2], axis=1) / 2.0, None, 0)


_TOYS: dict[str, Callable[[int, int], Dataset]] = {"moons": moons, "swissroll": swissroll, "gaussians8": gaussians8, "checkerboard": checkerboard}


# -- IDX (MNIST, Fashion-MNIST) ----------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ConfigError(f"{path}: not a valid gzip file ({error})") from None
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX array: magic 0x00 0x00 <type code> <ndim>, ndim big-endian uint32 dims, then the data."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ConfigError(f"{path}: not an IDX file (bad magic number)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise ConfigError(f"{path}: unknown IDX element type 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ConfigError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise ConfigError(f"{path}: IDX dims {dims} need {expected} data bytes, the file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(directory: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (directory / name).is_file():
                return directory / name
    raise ConfigError(f"{directory}: no {stems[0]}[.gz] found")


def load_idx_images(name: str, directory: str | Path) -> Dataset:
    """MNIST-style IDX training images [N, 1, H, W] scaled from 0..255 to [-1, 1], with their labels."""
    directory = _existing_dir(name, directory)
    images = read_idx(_find(directory, ("train-images-idx3-ubyte", "train-images.idx3-ubyte")))
    labels = read_idx(_find(directory, ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")))
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ConfigError(f"{directory}: the images file must hold a 3-D ubyte array, got {images.ndim}-D {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ConfigError(f"{directory}: {len(labels)} labels for {len(images)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ConfigError(f"{directory}: labels must lie in 0..9")
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1) / 255.0 * 2.0 - 1.0
    return Dataset(name, x, torch.from_numpy(labels.astype(np.int64)), 10)


# -- CIFAR-10 binary ---------------------------------------------------------------------------


def load_cifar10(directory: str | Path) -> Dataset:
    """CIFAR-10 binary batches: rows of 1 label byte + 3,072 pixel bytes (C, H, W order), to [N, 3, 32, 32] in [-1, 1]."""
    directory = _existing_dir("cifar10", directory)
    if not (directory / "data_batch_1.bin").is_file() and (directory / "cifar-10-batches-bin").is_dir():
        directory = directory / "cifar-10-batches-bin"
    files = [directory / f"data_batch_{i}.bin" for i in range(1, 6) if (directory / f"data_batch_{i}.bin").is_file()]
    if not files:
        raise ConfigError(f"{directory}: no data_batch_1.bin found")
    rows = []
    for path in files:
        raw = path.read_bytes()
        if not raw or len(raw) % CIFAR_ROW:
            raise ConfigError(f"{path}: size {len(raw)} is not a positive multiple of a {CIFAR_ROW}-byte CIFAR-10 row")
        rows.append(np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_ROW))
    table = np.concatenate(rows)
    labels = table[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ConfigError(f"{directory}: CIFAR-10 labels must lie in 0..9, found {labels.max()}")
    x = torch.from_numpy(table[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32)) / 255.0 * 2.0 - 1.0
    return Dataset("cifar10", x, torch.from_numpy(labels), 10)


def _existing_dir(name: str, directory: str | Path) -> Path:
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{name}: data directory {str(path)!r} does not exist")
    return path


# -- by name ------------------------------------------------------------------------------------


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``name`` or ``name:DIR`` -> (name, DIR or None); raises ConfigError for an unknown name."""
    name, _, directory = spec.partition(":")
    name = name.strip().lower()
    if name not in DATASET_NAMES:
        raise ConfigError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)} (mnist, fashion-mnist, cifar10 as name:DIR)")
    if name in NEEDS_DIR and not directory:
        raise ConfigError(f"{name} needs a directory: --dataset {name}:DIR (the IDX or binary files, read locally)")
    if name not in NEEDS_DIR and directory:
        raise ConfigError(f"{name} takes no directory (it ships with the code or is generated)")
    return name, directory or None


def load_dataset(spec: str, seed: int = 0, size: int | None = None) -> Dataset:
    """The data set named by ``spec`` (``name`` or ``name:DIR``); ``size`` is the number of toy points."""
    name, directory = parse_spec(spec)
    if name == "digits":
        return load_digits()
    if name in _TOYS:
        n = DEFAULT_TOY_SIZE if size is None else size
        if n < 1:
            raise ConfigError(f"the number of points must be at least 1, got {n}")
        return _TOYS[name](n, seed)
    assert directory is not None
    if name == "cifar10":
        return load_cifar10(directory)
    return load_idx_images(name, directory)
