"""Checkpoints: round trips, run directories, report state_dicts, and files that must be refused without running code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tracer.checkpoints import (
    CheckpointError,
    load_checkpoint,
    load_state_dict_file,
    save_checkpoint,
)
from tracer.config import ModelConfig, ScheduleConfig
from tracer.models.registry import build_model
from tracer.models.seed_unet import SeedUNet

MODEL = ModelConfig("unet", (1, 8, 8), 3, (8, 16))
SCHEDULE = ScheduleConfig("cosine", 50)


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(MODEL)


def one_line(error: pytest.ExceptionInfo[BaseException]) -> None:
    assert str(error.value) and "\n" not in str(error.value)


class RunsCode:
    """Unpickling this calls os.makedirs(marker): the test checks the directory never appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.makedirs, (str(self.marker),))


def test_round_trip_restores_weights_configs_and_schedule(tmp_path: Path) -> None:
    model = make_model()
    path = save_checkpoint(tmp_path / "m.safetensors", model, model_config=MODEL, schedule_config=SCHEDULE, extra={"step": 7})
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.model_config == MODEL and loaded.schedule_config == SCHEDULE and loaded.extra == {"step": 7}
    assert loaded.sample_shape == (1, 8, 8)
    assert loaded.schedule.name == "cosine" and loaded.schedule.T == 50
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 40]), torch.tensor([0, 3])
    model.eval()
    assert torch.equal(model(x, t, y), loaded.model(x, t, y))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind


def test_run_dir_resolves_to_model_safetensors(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "model.safetensors", make_model(), model_config=MODEL, schedule_config=SCHEDULE)
    assert load_checkpoint(tmp_path).model_config == MODEL
    with pytest.raises(CheckpointError, match="no checkpoint") as error:
        load_checkpoint(tmp_path / "empty")
    one_line(error)


def test_existing_path_needs_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, make_model(), model_config=MODEL, schedule_config=SCHEDULE)
    with pytest.raises(CheckpointError, match="exists"):
        save_checkpoint(path, make_model(), model_config=MODEL, schedule_config=SCHEDULE)
    save_checkpoint(path, make_model(), model_config=MODEL, schedule_config=SCHEDULE, extra={"again": True}, overwrite=True)
    assert load_checkpoint(path).extra == {"again": True}


def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", make_model(), model_config=MODEL, schedule_config=SCHEDULE)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # truncated
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    one_line(error)
    path.write_bytes(b"\xff" * 64)  # garbage header length
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["model.safetensors", "report.pth"])
def test_code_running_pickle_is_refused_and_never_runs(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"weight": RunsCode(marker)}))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    one_line(error)
    assert not marker.exists()


def test_torch_saved_object_with_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"down_block1.weight": RunsCode(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError):
        load_state_dict_file(tmp_path / "evil.pth")
    assert not marker.exists()


def test_safetensors_without_our_metadata_is_refused(tmp_path: Path) -> None:
    tensors = {k: v.contiguous() for k, v in make_model().state_dict().items()}
    save_file(tensors, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a noisescope checkpoint") as error:
        load_checkpoint(tmp_path / "plain.safetensors")
    one_line(error)
    save_file(tensors, str(tmp_path / "half.safetensors"), metadata={"format": "noisescope-checkpoint"})
    with pytest.raises(CheckpointError, match="model_config"):
        load_checkpoint(tmp_path / "half.safetensors")


def test_weights_that_do_not_fit_the_named_model_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    other = ModelConfig("unet", (1, 8, 8), 3, (8, 8))
    save_checkpoint(path, make_model(), model_config=other, schedule_config=SCHEDULE)  # metadata lies about the size
    with pytest.raises(CheckpointError, match="do not fit") as error:
        load_checkpoint(path)
    one_line(error)


@pytest.mark.parametrize("classes", [0, 10])
def test_report_state_dict_loads_as_seed_unet(tmp_path: Path, classes: int) -> None:
    torch.manual_seed(0)
    reference = SeedUNet(channels=32, num_classes=classes)
    torch.save(reference.state_dict(), tmp_path / "report.pth")
    assert set(load_state_dict_file(tmp_path / "report.pth")) == set(reference.state_dict())
    checkpoint = load_checkpoint(tmp_path / "report.pth")
    assert isinstance(checkpoint.model, SeedUNet) and not checkpoint.model.training
    assert checkpoint.model_config == ModelConfig("seed-unet", (1, 28, 28), classes, (32,))
    assert checkpoint.schedule.name == "seed-report" and checkpoint.schedule.T == 300
    x, t = torch.randn(1, 1, 28, 28), torch.tensor([17])
    y = torch.tensor([2]) if classes else None
    reference.eval()
    assert torch.equal(reference(x, t, y), checkpoint.model(x, t, y))


def test_state_dict_file_must_hold_tensors(tmp_path: Path) -> None:
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="state_dict"):
        load_state_dict_file(tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="no state_dict"):
        load_state_dict_file(tmp_path / "missing.pth")


def test_a_file_that_is_not_safetensors_is_never_replaced(tmp_path: Path) -> None:
    import h5py

    trace = tmp_path / "train.h5"
    with h5py.File(trace, "w") as f:
        f["steps"] = [1, 2, 3]
    notes = tmp_path / "notes.safetensors"
    notes.write_text("my notes")
    for path in (trace, notes):
        before = path.read_bytes()
        with pytest.raises(CheckpointError, match="is not a safetensors checkpoint; refusing to replace it") as error:
            save_checkpoint(path, make_model(), model_config=MODEL, schedule_config=SCHEDULE, overwrite=True)
        one_line(error)
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.safetensors", "train.h5"]  # no partial left


def test_a_killed_writers_partial_is_replaced_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    (tmp_path / ".m.safetensors.partial").write_bytes(b"half a checkpoint")
    save_checkpoint(path, make_model(), model_config=MODEL, schedule_config=SCHEDULE)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    assert load_checkpoint(path).model_config == MODEL
