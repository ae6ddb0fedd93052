"""Checkpoints: one safetensors file of weights, with the configs as JSON in its metadata.

``save_checkpoint`` writes the weights a sampler should use (the EMA weights when
EMA is on; the caller passes that model) and the model and schedule configs, so
``load_checkpoint`` rebuilds the network and the schedule from the file alone.
Loading never executes code from the file: safetensors is a JSON header plus raw
tensor bytes, and anything else (a pickle, a truncated file) is refused with a
one-line ``CheckpointError``. Writes are atomic (tracer/atomic.py): the new file is written
beside the old one and replaces it only once complete, a full disk is one ``DiskFullError``
line with the old file unchanged, and a file that is not a safetensors file (a trace, say)
is never replaced.

The report's published checkpoints (arXiv 2512.07201) are plain PyTorch
state_dicts (``.pth``); ``load_state_dict_file`` reads them with
``torch.load(weights_only=True)``, which unpickles tensors only and refuses any
other object, and ``load_checkpoint`` turns a ``.pth``/``.pt`` file into the
``seed-unet`` model with the ``seed-report`` schedule.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from tracer import atomic
from tracer.config import ConfigError, ModelConfig, ScheduleConfig, from_dict, to_dict
from tracer.models.registry import build_model
from tracer.schedules import Schedule

FORMAT = "noisescope-checkpoint"
FORMAT_VERSION = "1"
MODEL_FILE = "model.safetensors"
STATE_DICT_SUFFIXES = (".pth", ".pt")


class CheckpointError(ValueError):
    """A checkpoint cannot be read or written; the message is one line."""


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, on the asked device), its schedule and configs."""

    model: nn.Module
    schedule: Schedule
    model_config: ModelConfig
    schedule_config: ScheduleConfig
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        assert self.model_config.sample_shape is not None
        return self.model_config.sample_shape

    def provenance(self, source: str | os.PathLike[str]) -> dict[str, Any]:
        """What a sampling trace records about the model it came from (JSON-ready)."""
        return {"checkpoint": str(source), "model": to_dict(self.model_config), "schedule": to_dict(self.schedule_config)}


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    # Own contiguous CPU copies: safetensors refuses tensors that share memory.
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model.state_dict().items()}


def is_safetensors_file(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file: an 8-byte header length, then that much JSON."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 8 + length <= size and head[8:9] == b"{"


def check_replaceable(path: Path, overwrite: bool) -> None:
    """CheckpointError unless ``path`` is free, or (with overwrite) a safetensors file a new checkpoint may replace."""
    if not path.exists():
        return
    if not overwrite:
        raise CheckpointError(f"{path} exists; pass --overwrite to replace it")
    if not is_safetensors_file(path):
        raise CheckpointError(f"{path} is not a safetensors checkpoint; refusing to replace it")


def encode_checkpoint(
    model: nn.Module, *, model_config: ModelConfig, schedule_config: ScheduleConfig, extra: dict[str, Any] | None = None
) -> bytes:
    """The bytes of a checkpoint file of ``model`` and the configs (what ``save_checkpoint`` writes)."""
    if not model_config.resolved:
        raise CheckpointError("the model config must name the sample shape and number of classes")
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": json.dumps(to_dict(model_config)),
        "schedule_config": json.dumps(to_dict(schedule_config)),
        "extra": json.dumps(extra or {}, default=str),
    }
    return save(_state_tensors(model), metadata=metadata)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_config: ModelConfig,
    schedule_config: ScheduleConfig,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model``'s weights and the configs to ``path`` (one safetensors file), atomically."""
    path = Path(path)
    check_replaceable(path, overwrite)
    data = encode_checkpoint(model, model_config=model_config, schedule_config=schedule_config, extra=extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_bytes(path, data)


def resolve_path(path_or_run_dir: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run directory's ``model.safetensors``; CheckpointError if neither exists."""
    path = Path(path_or_run_dir).expanduser()
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:  # type: ignore[no-untyped-call]
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({first})") from None
    return tensors, metadata


def _json_field(path: Path, metadata: dict[str, str], key: str) -> dict[str, Any]:
    if key not in metadata:
        raise CheckpointError(f"{path} has no {key!r} in its metadata; it was not written by noisescope")
    try:
        value = json.loads(metadata[key])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: the {key!r} metadata is not valid JSON") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: the {key!r} metadata is not a JSON object")
    return value


def _load_weights(path: Path, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: the weights do not fit the model its metadata names ({str(error).splitlines()[0]})") from None


def load_checkpoint(path_or_run_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> Checkpoint:
    """Load a noisescope checkpoint (or a run directory, or a report ``.pth`` state_dict) into an eval-mode model."""
    path = resolve_path(path_or_run_dir)
    if path.suffix in STATE_DICT_SUFFIXES:
        return load_report_checkpoint(path, device=device)
    tensors, metadata = _read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a noisescope checkpoint (no format={FORMAT!r} metadata)")
    try:
        model_config = from_dict(ModelConfig, _json_field(path, metadata, "model_config"))
        schedule_config = from_dict(ScheduleConfig, _json_field(path, metadata, "schedule_config"))
        model = build_model(model_config)
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"{path}: bad config in the metadata ({error})") from None
    extra = _json_field(path, metadata, "extra") if "extra" in metadata else {}
    _load_weights(path, model, tensors)
    model.to(device).eval()
    schedule = schedule_config.build()
    return Checkpoint(model, schedule, model_config, schedule_config, extra, path)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A plain PyTorch state_dict file, unpickled with ``weights_only=True`` (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no state_dict file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} holds objects other than tensors; refused, since unpickling them could run code") from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a plain tensor state_dict ({first})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return state


def load_report_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu", timesteps: int = 300) -> Checkpoint:
    """A report ``.pth`` state_dict as ``seed-unet`` with the ``seed-report`` schedule (T=300, as published)."""
    path = Path(path)
    state = load_state_dict_file(path)
    first = state.get("down_block1.weight")
    if first is None or first.dim() != 4:
        raise CheckpointError(f"{path} is not a seed-unet state_dict (no down_block1.weight)")
    channels, in_channels = int(first.shape[0]), int(first.shape[1])
    num_classes = int(state["class_emb.weight"].shape[0]) if "class_emb.weight" in state else 0
    shape = (1, 28, 28) if in_channels == 1 else (in_channels, 32, 32)  # MNIST / Fashion-MNIST, or CIFAR-10
    try:
        model_config = ModelConfig("seed-unet", shape, num_classes, (channels,))
        model = build_model(model_config)
    except ConfigError as error:
        raise CheckpointError(f"{path}: {error}") from None
    _load_weights(path, model, state)
    model.to(device).eval()
    schedule_config = ScheduleConfig("seed-report", timesteps)
    schedule = schedule_config.build()
    extra = {"source": "report state_dict", "file": path.name}
    return Checkpoint(model, schedule, model_config, schedule_config, extra, path)
