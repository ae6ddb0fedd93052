"""``noisescope invert``: the three inputs, the linked traces it writes, and bad input refused before any work.

The checkpoints are untrained (the command's plumbing is under test here; the round trip's
accuracy is tests/test_inversion.py's, with the exact predictor): a small U-Net on 1x16x16
images whose config names the digits data set, and an MLP on 2-D points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.equations.traces import record
from tracer.checkpoints import save_checkpoint
from tracer.cli import main
from tracer.config import DataConfig, ModelConfig, ScheduleConfig, to_dict
from tracer.models.registry import build_model
from tracer.samplers.config import SamplerConfig
from tracer.trace.reader import open_trace

T = 40


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _checkpoint(path: Path, config: ModelConfig, data: DataConfig) -> Path:
    torch.manual_seed(0)
    save_checkpoint(path, build_model(config), model_config=config, schedule_config=ScheduleConfig("linear", T),
                    extra={"data": to_dict(data)})
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("invert-inputs")
    gray = np.tile(np.linspace(0, 255, 20, dtype=np.uint8), (20, 1))
    Image.fromarray(gray, mode="L").save(root / "gray.png")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8), mode="RGB").save(root / "rgb.png")
    (root / "notes.png").write_text("not an image")
    return {
        "images": _checkpoint(root / "images.safetensors", ModelConfig("unet", (1, 16, 16), 0, (8, 16)), DataConfig("digits")),
        "points": _checkpoint(root / "points.safetensors", ModelConfig("mlp", (2,), 0, (16, 16)), DataConfig("moons", size=64)),
        "points_trace": record(root / "points.h5", SamplerConfig("ddim", steps=4)),
        "gray": root / "gray.png",
        "rgb": root / "rgb.png",
        "notes": root / "notes.png",
    }


def invert(*args: str) -> int:
    return main(["invert", *args, "--quiet"])


def test_index_inverts_a_data_item_into_two_linked_traces_that_pass_check(inputs: dict[str, Path], tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "inv.h5"
    assert invert("--checkpoint", str(inputs["images"]), "--index", "5", "--steps", "5", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    back = tmp_path / "inv.resample.h5"
    assert f"wrote {out}" in printed and f"wrote {back}" in printed and "round trip, resample - input: max |error|" in printed
    with open_trace(out) as inv, open_trace(back) as res:
        assert inv.config["sampler"]["sampler"] == "ddim-inversion" and res.config["sampler"]["sampler"] == "ddim"
        assert inv.config["linked"] == {"role": "inversion", "trace": "inv.resample.h5"}
        assert res.config["linked"] == {"role": "resample", "trace": "inv.h5"}
        assert inv.config["input"] == {"kind": "dataset", "dataset": "digits", "index": 5}
        assert list(inv.column("t")) == [0, 8, 16, 24] and int(inv.column("t_prev")[-1]) == 32
        from tracer.data import load_digits

        np.testing.assert_allclose(inv.tensor("x_t", 0)[0], load_digits().x[5].numpy(), atol=1e-6)
    for path in (out, back):
        assert main(["check", str(path)]) == 0, capsys.readouterr().out


def test_an_image_is_resized_and_scaled_like_the_data(inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, back = tmp_path / "img.h5", tmp_path / "back.h5"
    assert invert("--checkpoint", str(inputs["images"]), "--image", str(inputs["gray"]), "--steps", "4", "--spacing", "trailing",
                  "--out", str(out), "--out-resample", str(back)) == 0
    with open_trace(out) as inv:
        x = inv.tensor("x_t", 0)[0]
        assert x.shape == (1, 16, 16) and -1.0 <= x.min() < -0.9 and 0.9 < x.max() <= 1.0
        assert np.all(np.diff(x[0, 0]) > 0)  # the left-to-right ramp survives the resize
        assert int(inv.column("t_prev")[-1]) == T - 1  # trailing spacing ends at the last timestep
    assert main(["check", str(back)]) == 0, capsys.readouterr().out


def test_a_sample_of_a_trace_is_inverted(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "inv.h5"
    assert invert("--checkpoint", str(inputs["points"]), "--from-trace", str(inputs["points_trace"]), "--sample", "2", "--out", str(out)) == 0
    with open_trace(inputs["points_trace"]) as source, open_trace(out) as inv:
        np.testing.assert_allclose(inv.tensor("x_t", 0)[0], source.final("samples")[2])
        assert inv.config["input"] == {"kind": "trace", "file": str(inputs["points_trace"]), "sample": 2}


# -- bad input: one line, exit 2, nothing written, no work started -----------------------------------------


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr("tracer.recording.record_run", boom)


def refused(capsys: pytest.CaptureFixture[str], code: int, fragment: str) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("noisescope: error: ") and "Traceback" not in err, err
    assert fragment in err, err


BAD = {
    "wrong channel count": (["--checkpoint", "images", "--image", "rgb"], "has 3 channels (RGB); this model takes 1 (1x16x16)"),
    "not an image": (["--checkpoint", "images", "--image", "notes"], "cannot be read as an image"),
    "no such image": (["--checkpoint", "images", "--image", "missing.png"], "no such file"),
    "an image for a 2-D model": (["--checkpoint", "points", "--image", "gray"], "--image applies to image models"),
    "wrong sample shape": (["--checkpoint", "images", "--from-trace", "points_trace"], "have shape 2; this model takes 1x16x16"),
    "sample out of range": (["--checkpoint", "points", "--from-trace", "points_trace", "--sample", "4"], "--sample 4 is out of range"),
    "index out of range": (["--checkpoint", "points", "--index", "64"], "--index 64 is out of range: the data set moons has 64 items"),
    "two inputs": (["--checkpoint", "points", "--index", "0", "--from-trace", "points_trace"], "not --from-trace and --index"),
    "no input": (["--checkpoint", "points"], "give one input to invert"),
    "sample without a trace": (["--checkpoint", "points", "--index", "0", "--sample", "1"], "--sample does not apply"),
    "labels on an unconditional model": (["--checkpoint", "points", "--index", "0", "--labels", "1"], "unconditional"),
    "one step": (["--checkpoint", "points", "--index", "0", "--steps", "1"], "at least --steps 2"),
    "more steps than T": (["--checkpoint", "points", "--index", "0", "--steps", "41"], "--steps must lie in [1, 40]"),
    "unknown spacing": (["--checkpoint", "points", "--index", "0", "--spacing", "sideways"], "unknown spacing"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_refused_before_any_work(case: str, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              no_work: None) -> None:
    args, fragment = BAD[case]
    argv = [str(inputs[a]) if a in inputs else (str(tmp_path / a) if a.endswith(".png") else a) for a in args]
    out = tmp_path / "out" / "inv.h5"
    refused(capsys, invert(*argv, "--out", str(out)), fragment)
    assert not out.parent.exists()


def test_outputs_onto_an_input_or_each_other_or_an_existing_file_are_refused(inputs: dict[str, Path], tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    checkpoint, trace = inputs["points"], inputs["points_trace"]
    before = checkpoint.read_bytes(), trace.read_bytes()
    base = ["--checkpoint", str(checkpoint), "--overwrite"]
    refused(capsys, invert(*base, "--index", "0", "--out", str(checkpoint)), "is the checkpoint")
    refused(capsys, invert(*base, "--from-trace", str(trace), "--out", str(trace)), "is the --from-trace input")
    refused(capsys, invert(*base, "--from-trace", str(trace), "--out", str(tmp_path / "a.h5"), "--out-resample", str(trace)),
            "--out-resample")
    refused(capsys, invert(*base, "--index", "0", "--out", str(tmp_path / "a.h5"), "--out-resample", str(tmp_path / "a.h5")), "is --out")
    refused(capsys, invert(*base, "--image", str(inputs["gray"]), "--out", str(inputs["gray"])), "is the --image input")
    existing = tmp_path / "inv.resample.h5"
    existing.write_text("mine")
    refused(capsys, invert("--checkpoint", str(checkpoint), "--index", "0", "--out", str(tmp_path / "inv.h5")), "exists; pass --overwrite")
    assert existing.read_text() == "mine" and not (tmp_path / "inv.h5").exists()
    assert (checkpoint.read_bytes(), trace.read_bytes()) == before


def test_sample_refuses_the_inversion_sampler(inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              no_work: None) -> None:
    refused(capsys, main(["sample", "--checkpoint", str(inputs["points"]), "--sampler", "ddim-inversion", "--out", str(tmp_path / "x.h5")]),
            "use noisescope invert")
