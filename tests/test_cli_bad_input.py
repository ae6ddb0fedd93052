"""Bad input to every command: one line on stderr, exit code 2, no traceback, and refused before any work
(no training, no sampling, nothing written). Also --version, bare ``noisescope``, the help examples, and a
closed stdout pipe. The viewer's own refusals and signals: tests/viewer/test_cli_view.py."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import h5py
import pytest
import torch

import tracer.cli.common
from tracer.cli import COMMANDS, main
from tracer.cli.sample import EPILOG as SAMPLE_EPILOG
from tracer.config import ModelConfig
from tracer.models.registry import build_model

ROOT = Path(__file__).resolve().parents[1]
T = 50
GB = 1000**3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class-conditional MLP on moons, trained for a few steps, and a short DDIM trace in it."""
    out = tmp_path_factory.mktemp("bad-input") / "run"
    assert main(["train", "--dataset", "moons", "--steps", "10", "--timesteps", str(T), "--channels", "16,16",
                 "--snapshot-every", "0", "--out", str(out), "--quiet"]) == 0
    assert main(["sample", "--checkpoint", str(out), "--sampler", "ddim", "--steps", "4", "--batch", "4",
                 "--out", str(out / "ddim.h5"), "--quiet"]) == 0
    return out


@pytest.fixture
def memory_16gb(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same size refusals on every machine: pretend it has 16 GB."""
    monkeypatch.setattr(tracer.cli.common, "memory_bytes", lambda: 16 * GB)


def refused(capsys: pytest.CaptureFixture[str], code: int, fragment: str) -> str:
    """Exit code 2 and exactly one line on stderr, naming ``fragment``, with no traceback and no warning before it."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and "Warning" not in err, err
    assert err.startswith("noisescope: error: "), err  # the same prefix for usage errors and the rest
    assert fragment in err, err
    return err.strip()


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


# -- the cases of the issue, one by one -------------------------------------------------------------


def test_train_channels_that_are_not_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    refused(capsys, main(["train", "--channels", "a,b", "--out", str(tmp_path / "run")]), "--channels")
    assert nothing_in(tmp_path)


def test_sample_batch_1e9_is_refused_with_the_memory_it_would_need(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 no_work: None, memory_16gb: None) -> None:
    out = tmp_path / "t.h5"
    for batch in ("1e9", "1000000000"):
        err = refused(capsys, main(["sample", "--checkpoint", str(run_dir), "--sampler", "ddim", "--batch", batch, "--out", str(out)]),
                      "batch 1000000000 of 2 needs 8.0 GB per tensor")
        assert "16.0 GB" in err and "--batch" in err
    assert nothing_in(tmp_path)


def test_demo_port_and_batch_are_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None,
                                                         memory_16gb: None) -> None:
    out = tmp_path / "demo"
    refused(capsys, main(["demo", "--port", "-1", "--out", str(out)]), "--port")
    refused(capsys, main(["demo", "--batch", "1e9", "--out", str(out)]), "batch 1000000000 of 1x16x16 needs 1.0 TB per tensor")
    refused(capsys, main(["demo", "--no-view", "--port", "8600", "--out", str(out)]), "--port does not apply with --no-view")
    assert not out.exists()


INAPPLICABLE = {
    "eta with ddpm": (["--sampler", "ddpm", "--eta", "0.5"], "--eta does not apply to --sampler ddpm"),
    "steps with ddpm": (["--sampler", "ddpm", "--steps", str(T)], "--steps does not apply to --sampler ddpm"),
    "spacing with ddpm": (["--sampler", "ddpm", "--spacing", "trailing"], "--spacing does not apply to --sampler ddpm"),
    "final alpha_bar with ddpm": (["--sampler", "ddpm", "--final-alpha-bar", "one"], "--final-alpha-bar does not apply"),
    "variance with ddim": (["--sampler", "ddim", "--variance", "beta"], "--variance does not apply to --sampler ddim"),
    "eta with the preset": (["--sampler", "ddim", "--preset", "seed-report", "--eta", "0"], "--eta does not apply with --preset"),
    "spacing with the preset": (["--sampler", "ddim", "--preset", "seed-report", "--spacing", "leading"], "--spacing does not apply"),
    "variance with the preset": (["--sampler", "ddpm", "--preset", "seed-report", "--variance", "beta_tilde"], "--variance"),
}


@pytest.mark.parametrize("case", list(INAPPLICABLE), ids=list(INAPPLICABLE))
def test_an_option_the_sampler_does_not_use_is_refused(run_dir: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str],
                                                       no_work: None) -> None:
    args, fragment = INAPPLICABLE[case]
    out = tmp_path / "t.h5"
    refused(capsys, main(["sample", "--checkpoint", str(run_dir), *args, "--out", str(out)]), fragment)
    assert nothing_in(tmp_path)


RECORD_CHOICE = {  # noisescope sample --record/--every/--samples (tracer/trace/choice.py), on a batch of 4
    "unknown tensor": (["--record", "x_t,eps_pred"], "unknown tensor 'eps_pred' in --record; choose from x_t, eps, "),
    "empty record": (["--record", ""], "--record is empty"),
    "only commas": (["--record", ",,"], "--record is empty"),
    "every 0": (["--every", "0"], "--every must be at least 1"),
    "every negative": (["--every", "-2"], "--every must be at least 1"),
    "every not a number": (["--every", "ten"], "--every must be a whole number of steps"),
    "samples past the batch": (["--samples", "2:9"], "--samples 2:9 stops outside the batch of 4"),
    "samples outside the batch": (["--samples", "6:8"], "--samples 6:8 starts outside the batch of 4"),
    "one sample outside": (["--samples", "4"], "--samples 4 is outside the batch of 4"),
    "empty range": (["--samples", "3:1"], "--samples 3:1 keeps no sample of the batch of 4"),
    "malformed slice": (["--samples", "0-4"], "--samples '0-4' is not a slice of the batch"),
    "zero step": (["--samples", "0:4:0"], "the step must be at least 1"),
}


@pytest.mark.parametrize("case", list(RECORD_CHOICE), ids=list(RECORD_CHOICE))
def test_sample_refuses_a_bad_recording_choice_before_sampling(run_dir: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str],
                                                               no_work: None) -> None:
    args, fragment = RECORD_CHOICE[case]
    out = tmp_path / "t.h5"
    refused(capsys, main(["sample", "--checkpoint", str(run_dir), "--sampler", "ddim", "--batch", "4", *args, "--out", str(out)]), fragment)
    assert nothing_in(tmp_path)


def test_train_dataset_that_needs_files_names_the_real_syntax(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    for name in ("mnist", "fashion-mnist", "cifar10"):
        err = refused(capsys, main(["train", "--dataset", name, "--out", str(tmp_path / "run")]), f"--dataset {name}:DIR")
        assert "--data " not in err
    refused(capsys, main(["train", "--dataset", f"mnist:{tmp_path / 'nowhere'}", "--out", str(tmp_path / "run")]), "no such folder")
    assert nothing_in(tmp_path)


def test_a_trace_given_as_checkpoint_is_named_a_trace(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     no_work: None) -> None:
    out = tmp_path / "t.h5"
    for trace in (run_dir / "train.h5", run_dir / "ddim.h5"):
        refused(capsys, main(["sample", "--checkpoint", str(trace), "--sampler", "ddim", "--out", str(out)]),
                f"{trace} is a noisescope trace, not a checkpoint")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2, 3]
    refused(capsys, main(["sample", "--checkpoint", str(other), "--sampler", "ddim", "--out", str(out)]), "is an HDF5 file, not a checkpoint")
    assert not out.exists()


def test_train_epochs_that_come_to_absurd_steps_are_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    refused(capsys, main(["train", "--dataset", "moons", "--epochs", "100000", "--batch", "1", "--out", str(out), "--quiet"]),
            "is 819,200,000 steps, more than 10,000,000")
    assert nothing_in(out)  # (tracer/training.py makes the empty run directory before it counts the steps)


# -- --out onto an input ----------------------------------------------------------------------------------


def test_sample_out_onto_the_checkpoint_is_refused_even_with_overwrite(run_dir: Path, capsys: pytest.CaptureFixture[str],
                                                                       no_work: None) -> None:
    checkpoint = run_dir / "model.safetensors"
    before = checkpoint.read_bytes()
    base = ["sample", "--sampler", "ddim", "--overwrite"]
    refused(capsys, main([*base, "--checkpoint", str(run_dir), "--out", str(checkpoint)]), f"--out {checkpoint} is the checkpoint")
    other_spelling = run_dir.parent / "." / run_dir.name / ".." / run_dir.name / "model.safetensors"
    refused(capsys, main([*base, "--checkpoint", str(checkpoint), "--out", str(other_spelling)]), "is the checkpoint")
    refused(capsys, main([*base, "--checkpoint", str(run_dir), "--out", str(checkpoint / "t.h5")]), "lies inside the checkpoint")
    refused(capsys, main([*base, "--checkpoint", str(run_dir), "--out", str(run_dir)]), "is the checkpoint's run directory")
    assert checkpoint.read_bytes() == before and checkpoint.is_file()


def test_train_out_onto_a_file_or_the_data_folder_is_refused(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             no_work: None) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    refused(capsys, main(["train", "--dataset", "moons", "--out", str(file)]), "is a file, not a run directory")
    refused(capsys, main(["train", "--dataset", "moons", "--out", str(file / "run")]), "lies inside the file")
    refused(capsys, main(["train", "--dataset", "moons", "--overwrite", "--out", str(run_dir / "model.safetensors")]), "not a run directory")
    data = tmp_path / "mnist"
    data.mkdir()
    refused(capsys, main(["train", "--dataset", f"mnist:{data}", "--out", str(data)]), "is the data folder")
    refused(capsys, main(["train", "--dataset", "moons", "--resume", "--out", str(tmp_path / "fresh")]), "nothing to resume")
    refused(capsys, main(["train", "--dataset", "moons", "--resume", "--overwrite", "--out", str(run_dir)]), "not allowed with")
    assert file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["mnist", "notes.txt"] and nothing_in(data)


def test_demo_out_onto_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    file = tmp_path / "demo"
    file.write_text("mine")
    refused(capsys, main(["demo", "--no-view", "--out", str(file)]), "is a file, not a run directory")
    assert file.read_text() == "mine"


# -- every option: its type refuses bad values ------------------------------------------------------------

TRAIN_BAD = [
    ["--epochs", "0"], ["--epochs", "1e9"], ["--steps", "0"], ["--steps", "-1"], ["--steps", "1e9"], ["--steps", "2.5"],
    ["--timesteps", "1"], ["--timesteps", "1e9"], ["--channels", ""], ["--channels", "0,8"], ["--channels", "32,,32"],
    ["--channels", "100000"], ["--channels", ",".join(["8"] * 17)], ["--batch", "0"], ["--batch", "1.5"], ["--lr", "0"],
    ["--lr", "-1"], ["--lr", "inf"], ["--lr", "nan"], ["--p-uncond", "1.5"], ["--p-uncond", "nan"], ["--ema-decay", "1"],
    ["--ema-decay", "-0.1"], ["--grad-clip", "-1"], ["--grad-clip", "inf"], ["--seed", "-1"], ["--seed", "1e20"],
    ["--log-every", "0"], ["--snapshot-every", "-1"], ["--dataset", "moons:somewhere"], ["--dataset", "imagenet"],
    ["--dtype", "float64"], ["--steps", "5", "--epochs", "5"],
]
SAMPLE_BAD = [
    ["--steps", "0"], ["--steps", "1e9"], ["--eta", "nan"], ["--eta", "inf"], ["--eta", "2"], ["--guidance", "inf"],
    ["--guidance", "-1"], ["--guidance", "nan"], ["--batch", "0"], ["--batch", "-3"], ["--batch", "1.5"], ["--batch", "1e10"],
    ["--seed", "-1"], ["--seed", str(2**32)], ["--seed", "nan"], ["--dtype", "float64"], ["--clip", "--no-clip"],
]
DEMO_BAD = [["--steps", "0"], ["--steps", "1e9"], ["--batch", "0"], ["--batch", "1e10"], ["--seed", "-1"], ["--port", "0"],
            ["--port", "70000"], ["--port", "abc"], ["--dataset", "imagenet"]]
VIEW_BAD = [["--port", "0"], ["--port", "-1"], ["--port", "1e9"], ["--port", "nan"]]
INSPECT_BAD = [["--rows", "-5"], ["--rows", "nan"], ["--rows", "1.5"]]


def _ids(cases: list[list[str]]) -> list[str]:
    return [" ".join(case) or "empty" for case in cases]


@pytest.mark.parametrize("bad", TRAIN_BAD, ids=_ids(TRAIN_BAD))
def test_every_train_option_refuses_bad_values(bad: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    refused(capsys, main(["train", "--dataset", "moons", *bad, "--out", str(tmp_path / "run")]), bad[0].lstrip("-")[:4])
    assert nothing_in(tmp_path)


@pytest.mark.parametrize("bad", SAMPLE_BAD, ids=_ids(SAMPLE_BAD))
def test_every_sample_option_refuses_bad_values(bad: list[str], run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                no_work: None) -> None:
    out = tmp_path / "t.h5"
    refused(capsys, main(["sample", "--checkpoint", str(run_dir), "--sampler", "ddim", *bad, "--out", str(out)]), bad[0].lstrip("-")[:4])
    assert nothing_in(tmp_path)


@pytest.mark.parametrize("bad", DEMO_BAD, ids=_ids(DEMO_BAD))
def test_every_demo_option_refuses_bad_values(bad: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    refused(capsys, main(["demo", *bad, "--out", str(tmp_path / "demo")]), "")
    assert nothing_in(tmp_path)


@pytest.mark.parametrize("bad", VIEW_BAD, ids=_ids(VIEW_BAD))
def test_every_view_option_refuses_bad_values(bad: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    refused(capsys, main(["view", str(tmp_path), *bad]), "--port")


@pytest.mark.parametrize("bad", INSPECT_BAD, ids=_ids(INSPECT_BAD))
def test_every_inspect_option_refuses_bad_values(bad: list[str], run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, main(["inspect", str(run_dir / "ddim.h5"), *bad]), "--rows")


@pytest.mark.parametrize("argv", [["sample", "--checkpoint", "", "--sampler", "ddim", "--out", "t.h5"],
                                  ["sample", "--checkpoint", "RUN", "--sampler", "ddim", "--out", ""],
                                  ["train", "--out", ""], ["demo", "--out", ""], ["inspect", ""], ["view", ""]],
                         ids=["sample --checkpoint", "sample --out", "train --out", "demo --out", "inspect", "view"])
def test_an_empty_path_is_refused(argv: list[str], run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    monkeypatch.chdir(tmp_path)  # Path("") is the current folder: it must not be taken for it
    argv = [str(run_dir) if a == "RUN" else a for a in argv]
    refused(capsys, main(argv), "must not be empty")
    assert nothing_in(tmp_path)


# -- --version, no command, help examples ------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"noisescope {version('noisescope')}"


def test_no_command_lists_every_command_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    captured = capsys.readouterr()
    listed = [line.split()[0] for line in captured.out.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    assert captured.err.count("\n") == 1 and "no command" in captured.err


@pytest.fixture
def example_cwd(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder holding what sample's help examples name: runs/demo (a run directory) and report.pth (a report state_dict)."""
    shutil.copytree(run_dir, tmp_path / "runs" / "demo")
    torch.manual_seed(0)
    torch.save(build_model(ModelConfig("seed-unet", (1, 28, 28), 10, (32,))).state_dict(), tmp_path / "report.pth")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_every_example_in_sample_help_works(example_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SAMPLE_EPILOG.replace("\\\n", " ")  # an example continued on the next line
    examples = [shlex.split(line) for line in text.splitlines() if line.strip().startswith("noisescope sample")]
    assert len(examples) == 5
    for words in examples:
        assert main([*words[1:], "--quiet"]) == 0, (words, capsys.readouterr().err)
        out = example_cwd / words[words.index("--out") + 1]
        assert out.is_file()
        # The report's DDIM (--preset seed-report) ends at alpha_bar_0: check passes every equation and says noise is left.
        # A trace that records less (--record, --every) is INCOMPLETE: the equations of what it left out are not checked.
        expected = 4 if "seed-report" in words else 3 if "--record" in words else 0
        assert main(["check", str(out)]) == expected, capsys.readouterr().out


# -- a closed stdout pipe ---------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["sample", "--help"], ["inspect", "TRACE", "--json"], ["check", "TRACE", "--steps"]],
                         ids=["help", "sample-help", "inspect", "check"])
def test_a_closed_stdout_pipe_ends_quietly_with_exit_0(argv: list[str], run_dir: Path) -> None:
    argv = [str(run_dir / "ddim.h5") if a == "TRACE" else a for a in argv]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte: every write fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-c", "import sys; from tracer.cli import main; sys.exit(main())", *argv],
                                stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT, timeout=120, text=True)
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


# -- prediction types, zero terminal SNR, guidance rescale ------------------------------------------


PREDICTION_CASES = {
    "prediction not the checkpoint's": (["--prediction", "v"], "--prediction v does not match the checkpoint, whose network predicts eps"),
    "unknown prediction": (["--prediction", "score"], "unknown --prediction 'score'"),
    "rescale above 1": (["--guidance", "3", "--guidance-rescale", "1.5"], "--guidance-rescale must lie in [0, 1]"),
    "rescale below 0": (["--guidance", "3", "--guidance-rescale", "-0.1"], "--guidance-rescale must lie in [0, 1]"),
    "rescale without guidance": (["--guidance-rescale", "0.7"], "give --guidance too"),
}


@pytest.mark.parametrize("case", list(PREDICTION_CASES), ids=list(PREDICTION_CASES))
def test_prediction_and_rescale_options_are_checked_before_sampling(run_dir: Path, tmp_path: Path, case: str,
                                                                   capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    extra, fragment = PREDICTION_CASES[case]
    out = tmp_path / "t.h5"
    refused(capsys, main(["sample", "--checkpoint", str(run_dir), "--sampler", "ddim", "--steps", "4", *extra, "--out", str(out)]), fragment)
    assert nothing_in(tmp_path)


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--zero-terminal-snr"], "--zero-terminal-snr needs --prediction v"),
    (["--prediction", "score"], "unknown prediction type 'score'"),
])
def test_train_refuses_zero_snr_with_eps_and_unknown_prediction_types(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None,
                                                                       extra: list[str], fragment: str) -> None:
    refused(capsys, main(["train", "--dataset", "moons", *extra, "--out", str(tmp_path / "run")]), fragment)
    assert nothing_in(tmp_path)


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_tiny_x0_and_v_networks_train_sample_and_pass_check(tmp_path: Path, capsys: pytest.CaptureFixture[str], prediction: str) -> None:
    out = tmp_path / "run"
    zero_snr = ["--zero-terminal-snr"] if prediction == "v" else []
    assert main(["train", "--dataset", "moons", "--steps", "20", "--timesteps", str(T), "--channels", "16,16", "--prediction", prediction,
                 *zero_snr, "--snapshot-every", "10", "--out", str(out), "--quiet"]) == 0
    assert main(["check", str(out / "train.h5")]) == 0
    for sampler in (["--sampler", "ddpm"], ["--sampler", "ddim", "--steps", "5", "--spacing", "trailing", "--eta", "1"]):
        trace = tmp_path / f"{sampler[1]}.h5"
        assert main(["sample", "--checkpoint", str(out), *sampler, "--prediction", prediction, "--guidance", "2",
                     "--guidance-rescale", "0.5", "--batch", "4", "--out", str(trace), "--quiet"]) == 0
        capsys.readouterr()
        assert main(["check", str(trace)]) == 0, capsys.readouterr().out
