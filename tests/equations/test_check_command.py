"""``noisescope check``: the table, the JSON, the exit codes (0 pass, 1 fail, 2 bad input with one line)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from tests.equations.traces import edit, record, set_scalar
from tracer.cli import main
from tracer.samplers.config import SamplerConfig


@pytest.fixture
def ddim_trace(tmp_path: Path) -> Path:
    return record(tmp_path / "ddim.h5", SamplerConfig(sampler="ddim", steps=8, eta=0.5, guidance=3.0))


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad_input(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:  # argparse errors exit, the others return 2
        raise SystemExit(main(["check", *args]))
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_good_trace_passes_with_exit_0(capsys: pytest.CaptureFixture[str], ddim_trace: Path) -> None:
    code, out, _ = check(capsys, str(ddim_trace))
    assert code == 0
    assert out.rstrip().splitlines()[-1].startswith("PASS")
    for eq_id in ("guidance.combine", "x0_from_eps", "ddim.sigma", "ddim.step", "chain.t_prev", "schedule.alpha_bar_prev"):
        assert eq_id in out


def test_json_has_every_step_of_every_check(capsys: pytest.CaptureFixture[str], ddim_trace: Path) -> None:
    code, out, _ = check(capsys, str(ddim_trace), "--json")
    report = json.loads(out)
    assert code == 0 and report["passed"] is True and report["tolerances"]["tensor"] == 1e-5
    for entry in report["checks"]:
        assert len(entry["steps"]) == 8
        for step in entry["steps"]:
            assert step["passed"] is True and step["residual"] <= step["threshold"]
    assert [s["t"] for s in report["checks"][0]["steps"]] == sorted((s["t"] for s in report["checks"][0]["steps"]), reverse=True)


def test_a_broken_trace_fails_with_exit_1_and_shows_the_numbers(capsys: pytest.CaptureFixture[str], ddim_trace: Path) -> None:
    edit(ddim_trace, "eps", 5, 0.01)
    set_scalar(ddim_trace, "t_prev", 2, 0)
    code, out, _ = check(capsys, str(ddim_trace))
    assert code == 1
    assert out.rstrip().splitlines()[-1].startswith("FAIL")
    assert "chain.t_prev fails at 1 of 8 steps" in out and "t_prev 0 (alpha_bar_prev" in out and "the next step's t" in out
    assert "ddim.step fails at 1 of 8 steps" in out and "lhs" in out and "rhs" in out
    code, out, _ = check(capsys, str(ddim_trace), "--json")
    failing = {c["id"]: c["failing"] for c in json.loads(out)["checks"] if c["failing"]}
    assert failing == {"guidance.combine": [5], "x0_from_eps": [5], "ddim.step": [5], "chain.t_prev": [2], "schedule.alpha_bar_prev": [2]}


def test_only_and_tol(capsys: pytest.CaptureFixture[str], ddim_trace: Path) -> None:
    edit(ddim_trace, "eps", 5, 1e-3)
    code, out, _ = check(capsys, str(ddim_trace), "--only", "ddim.step,chain.t_prev", "--json")
    report = json.loads(out)
    assert code == 1 and [c["id"] for c in report["checks"]] == ["ddim.step", "chain.t_prev"]
    code, out, _ = check(capsys, str(ddim_trace), "--only", "ddpm.step")  # does not apply: nothing verified, said so
    assert code == 3 and "ddpm.step: it does not apply" in out and "INCOMPLETE" in out
    code, _, _ = check(capsys, str(ddim_trace), "--tol", "1e-2")  # a looser tolerance lets the small error through
    assert code == 0


def test_steps_prints_a_row_per_step(capsys: pytest.CaptureFixture[str], ddim_trace: Path) -> None:
    code, out, _ = check(capsys, str(ddim_trace), "--steps")
    table = out.split("\n\n")[-1].splitlines()
    assert code == 0 and table[0].split()[:3] == ["step", "t", "schedule.alpha"] and len(table) == 1 + 8


def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, ddim_trace: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a trace\n")
    assert "not an HDF5 file" in assert_bad_input(capsys, str(text))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2, 3]
    assert "not a noisescope trace" in assert_bad_input(capsys, str(other))
    assert "no such file" in assert_bad_input(capsys, str(tmp_path / "missing.h5"))
    assert "unknown equation id 'ddim.stepp'" in assert_bad_input(capsys, str(ddim_trace), "--only", "ddim.step,ddim.stepp")
    assert "--tol" in assert_bad_input(capsys, str(ddim_trace), "--tol", "-1e-3")
    with h5py.File(ddim_trace, "r+") as f:
        del f["steps/x0_pred"]
    code, out, _ = check(capsys, str(ddim_trace))  # a tensor the step equation needs is missing: not checked, said why
    assert code == 3 and "ddim.step needs steps/x0_pred, which the trace does not record" in out
    with h5py.File(ddim_trace, "r+") as f:
        del f["steps/x_t"]
    assert "lacks steps/x_t" in assert_bad_input(capsys, str(ddim_trace))
    with h5py.File(ddim_trace, "r+") as f:
        del f["schedule/alpha_bar"]
    assert "schedule/alpha_bar" in assert_bad_input(capsys, str(ddim_trace))
