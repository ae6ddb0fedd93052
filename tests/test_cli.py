"""The command line end to end: train, sample and demo on a tiny 2-D model, and every kind of bad input
answered with one line on stderr, exit code 2, no traceback and nothing written or overwritten."""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from tracer.cli import main
from tracer.cli.demo import GUIDANCE_SCALES, demo_runs
from tracer.trace.reader import open_trace

T = 50  # timesteps of the tiny run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class-conditional MLP on moons (two classes: which moon), trained for a few steps."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--dataset", "moons", "--steps", "20", "--timesteps", str(T), "--channels", "32,32",
                 "--snapshot-every", "10", "--batch", "64", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, fragment: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and fragment in lines[0], err
    return lines[0]


def nothing_written(path: Path) -> bool:
    return not path.exists() and not any(path.parent.glob(f".{path.name}*"))


def test_train_writes_a_checkpoint_and_a_training_trace(run_dir: Path) -> None:
    assert (run_dir / "model.safetensors").is_file()
    with open_trace(run_dir / "train.h5") as trace:
        assert trace.kind == "training" and trace.status == "complete"
        assert trace.series("train")["step"].tolist() == [10, 20]
        assert trace.series("snapshots")["step"].tolist() == [0, 10, 20]


@pytest.mark.parametrize(
    "args",
    [
        ["--sampler", "ddpm"],
        ["--sampler", "ddim", "--steps", "7", "--eta", "0.5", "--spacing", "trailing"],
        ["--sampler", "ddim", "--steps", "10", "--guidance", "3", "--labels", "all", "--batch", "6", "--dtype", "float16"],
        ["--sampler", "ddim", "--steps", "9", "--preset", "seed-report"],
    ],
    ids=["ddpm", "ddim-eta-trailing", "ddim-guided-fp16", "seed-report"],
)
def test_sample_records_a_complete_trace_that_passes_check(run_dir: Path, tmp_path: Path, args: list[str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trace.h5"
    assert main(["sample", "--checkpoint", str(run_dir), *args, "--out", str(out), "--quiet"]) == 0
    with open_trace(out) as trace:
        assert trace.status == "complete" and trace.num_steps == trace.planned()
        sampler = trace.config["sampler"]
        assert trace.config["model"]["name"] == "mlp" and trace.config["schedule"]["name"] == "linear"
        if "--guidance" in args:
            assert sampler["guidance"] == 3.0 and {"eps_cond", "eps_uncond"} <= set(trace.tensor_names())
            assert trace.final("labels").tolist() == [0, 1, 0, 1, 0, 1]
            assert trace.tensor_dtype == "float16"
        expected_steps = T if args[1] == "ddpm" else int(args[args.index("--steps") + 1])
        if "seed-report" in args:  # the report's timesteps range(0, T, T // S) + 1: 10 of them for S = 9, T = 50
            expected_steps = len(range(0, T, T // expected_steps))
        assert trace.num_steps == expected_steps
    capsys.readouterr()
    # The report's DDIM ends at alpha_bar_0, not the clean end: every check passes, and check says noise is left (exit 4).
    code = main(["check", str(out)])
    text = capsys.readouterr().out
    assert code == (4 if "seed-report" in args else 0), text
    assert text.splitlines()[-1].startswith("NOISE LEFT: " if "seed-report" in args else "PASS: ")


def sample_args(run_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", "--checkpoint", str(run_dir), "--sampler", "ddim", "--out", str(out), "--quiet", *extra]


BAD_SAMPLE_ARGS = {
    "eta above 1": (["--eta", "1.5"], "eta"),
    "eta below 0": (["--eta", "-0.1"], "eta"),
    "steps 0": (["--steps", "0"], "at least 1"),
    "steps above T": (["--steps", str(T + 1)], "steps"),
    "NaN guidance": (["--guidance", "nan", "--labels", "all"], "finite"),
    "negative guidance": (["--guidance", "-1", "--labels", "all"], "guidance"),
    "unknown sampler": (["--sampler", "lms"], "unknown sampler"),
    "unknown spacing": (["--spacing", "random"], "unknown spacing"),
    "unknown variance": (["--sampler", "ddpm", "--variance", "large"], "unknown variance"),
    "unknown preset": (["--preset", "sd15"], "unknown preset"),
    "label outside the classes": (["--labels", "0,2"], "outside this model's classes"),
    "labels not numbers": (["--labels", "one,two"], "--labels"),
    "unknown device": (["--device", "tpu"], "unknown device"),
}


@pytest.mark.parametrize("case", list(BAD_SAMPLE_ARGS), ids=list(BAD_SAMPLE_ARGS))
def test_bad_sample_arguments_get_one_line_and_write_nothing(run_dir: Path, tmp_path: Path, case: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    extra, fragment = BAD_SAMPLE_ARGS[case]
    out = tmp_path / "trace.h5"
    one_line_error(capsys, main(sample_args(run_dir, out, *extra)), fragment)
    assert nothing_written(out)


def test_missing_and_corrupt_checkpoints_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trace.h5"
    one_line_error(capsys, main(sample_args(tmp_path / "nowhere", out)), "nowhere")
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(struct.pack("<Q", 40) + b"{this is not a safetensors header}" + bytes(64))
    one_line_error(capsys, main(sample_args(corrupt, out)), str(corrupt))
    assert nothing_written(out)


def test_an_existing_trace_is_kept_without_overwrite(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trace.h5"
    assert main(sample_args(run_dir, out, "--steps", "3")) == 0
    before = out.read_bytes()
    one_line_error(capsys, main(sample_args(run_dir, out, "--steps", "5")), "--overwrite")
    assert out.read_bytes() == before
    assert main(sample_args(run_dir, out, "--steps", "5", "--overwrite")) == 0
    with open_trace(out) as trace:
        assert trace.num_steps == 5


def test_bad_train_arguments_get_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--quiet", "--steps", "2"]
    one_line_error(capsys, main([*base, "--dataset", "imagenet", "--out", str(tmp_path / "a")]), "imagenet")
    one_line_error(capsys, main(["train", "--dataset", "moons", "--epochs", "0", "--out", str(tmp_path / "a")]), "at least 1")
    one_line_error(capsys, main([*base, "--dataset", "moons", "--schedule", "quadratic", "--out", str(tmp_path / "a")]), "quadratic")
    one_line_error(capsys, main([*base, "--dataset", "moons", "--model", "transformer", "--out", str(tmp_path / "a")]), "transformer")
    assert not (tmp_path / "a").exists()
    # 30x30 images in the MNIST format: the U-Net halves the size twice, so they do not fit.
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for name, array in (("train-images-idx3-ubyte", np.zeros((4, 30, 30), np.uint8)), ("train-labels-idx1-ubyte", np.zeros(4, np.uint8))):
        (mnist / name).write_bytes(bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())
    one_line_error(capsys, main([*base, "--dataset", f"mnist:{mnist}", "--out", str(tmp_path / "b")]), "divisible by 4")
    assert not (tmp_path / "b").exists()


def test_an_existing_run_dir_is_kept_without_overwrite(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    one_line_error(capsys, main(["train", "--dataset", "moons", "--steps", "5", "--out", str(run_dir), "--quiet"]), "--overwrite")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_demo_on_moons_records_every_run_from_one_x_T(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--dataset", "moons", "--steps", "20", "--batch", "6", "--out", str(out), "--no-view", "--quiet"]) == 0
    printed = capsys.readouterr().out
    runs = demo_runs()
    assert len(runs) == 3 + len(GUIDANCE_SCALES)
    first_x_t = None
    for demo in runs:
        path = out / demo.file
        assert f"wrote {path}" in printed
        with open_trace(path) as trace:
            assert trace.status == "complete" and trace.num_steps == trace.planned()
            assert trace.final("labels").tolist() == [0, 1, 0, 1, 0, 1]
            x_T = trace.tensor("x_t", 0)  # noqa: N806
            first_x_t = x_T if first_x_t is None else first_x_t
            assert np.array_equal(x_T, first_x_t), demo.file  # every run starts from the same noise
            assert (demo.config.guidance is not None) == ("eps_cond" in trace.tensor_names())
    with open_trace(out / "ddpm.h5") as trace:
        assert trace.num_steps == 1000
    # The flow-matching model, in DIR/flow, sampled by flow_euler from the same x_T; its trace passes check.
    assert f"wrote {out / 'flow_euler.h5'}" in printed and (out / "flow" / "model.safetensors").is_file()
    with open_trace(out / "flow_euler.h5") as trace:
        assert trace.status == "complete" and trace.num_steps == 50 and trace.config["model"]["objective"] == "flow"
        assert np.array_equal(trace.tensor("x_t", 0), first_x_t)
    assert main(["check", str(out / "flow_euler.h5")]) == 0
    # A second run reuses the model and keeps every trace: nothing is overwritten without --overwrite.
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["demo", "--dataset", "moons", "--out", str(out), "--no-view", "--quiet"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    assert "using the model already in" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "sample", "demo", "view", "inspect", "check", "recover"])
def test_every_command_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: noisescope " + command) and len(text.splitlines()) > 5


def test_the_same_seed_gives_a_bit_identical_trace(run_dir: Path, tmp_path: Path) -> None:
    args = ("--steps", "8", "--eta", "1", "--guidance", "2", "--labels", "all", "--batch", "4")
    paths = [tmp_path / name for name in ("a.h5", "b.h5", "c.h5")]
    for path, seed in zip(paths, ("5", "5", "6"), strict=True):
        assert main(sample_args(run_dir, path, *args, "--seed", seed)) == 0

    def datasets(path: Path) -> dict[str, bytes]:
        found: dict[str, bytes] = {}

        def keep(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                found[name] = obj[()].tobytes()

        with h5py.File(path, "r") as f:
            f.visititems(keep)
        return found

    a, b, c = (datasets(p) for p in paths)
    assert a.keys() == b.keys() and "steps/noise" in a
    assert all(a[name] == b[name] for name in a)  # every dataset, byte for byte
    assert a["steps/x_t"] != c["steps/x_t"] and a["steps/noise"] != c["steps/noise"]
