"""Verdicts in both directions: no PASS for what was not checked, no FAIL for a good trace.

A trace that does not name its sampler is identified by the step equation its rows
satisfy; a trace whose update no registered equation verifies is INCOMPLETE (exit 3),
never PASS. The hand-made traces here are written with plain h5py from the layout of
docs/trace-format.md, as a user's own loop would write them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.equations.traces import edit, record
from tests.trace.synthetic import records
from tracer.check import check_trace
from tracer.cli import main
from tracer.samplers.config import SamplerConfig
from tracer.equations import unchecked_for
from tracer.equations.context import TraceFacts
from tracer.schedules import make_schedule
from tracer.trace.reader import open_trace
from tracer.trace.sampling import record_sampling

SCHEDULE = make_schedule("linear", 1000)


def handmade_ddim(path: Path, *, steps: int = 10, eta: float = 0.0, wrong_prev_at: tuple[int, ...] = (), declare: bool = False) -> Path:
    """A DDIM loop (Song et al. 2021, Eq. 12 and 16) recorded with plain h5py; at the steps in ``wrong_prev_at``
    the update uses alpha_bar of t_prev - 20 while the trace records the schedule's alpha_bar at t_prev."""
    rng = np.random.default_rng(0)
    ab = SCHEDULE.alpha_bar
    ts = list(range(999, 0, -1000 // steps))[:steps]
    x = rng.standard_normal((2, 1, 4, 4))
    rows: dict[str, list] = {k: [] for k in ("t", "t_prev", "alpha_bar_t", "alpha_bar_prev", "sigma", "x_t", "eps", "x0_pred", "noise")}
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        a, b = float(ab[t]), (1.0 if t_prev < 0 else float(ab[t_prev]))
        used = b if i not in wrong_prev_at else float(ab[max(t_prev - 20, 0)])
        eps = 0.3 * x + rng.standard_normal(x.shape) * 0.5  # any prediction will do
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        sigma = eta * math.sqrt((1 - used) / (1 - a)) * math.sqrt(max(1 - a / used, 0.0))
        z = rng.standard_normal(x.shape) if sigma > 0 else np.zeros(x.shape)
        x_prev = math.sqrt(used) * x0 + math.sqrt(max(1 - used - sigma**2, 0.0)) * eps + sigma * z
        for name, value in zip(rows, (t, t_prev, a, b, sigma, x, eps, x0, z)):
            rows[name].append(value)
        x = x_prev
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "noisescope-trace", "schema_version": 1, "kind": "sampling"})
        f.attrs["config"] = json.dumps({"sampler": {"sampler": "ddim", "eta": eta}} if declare else {"my_loop": "v1"})
        f["status"] = np.array(b"complete", dtype="S16")
        f["progress/steps"] = np.int64(len(ts))
        f["progress/final"] = np.int64(1)
        for name in ("beta", "alpha", "alpha_bar"):
            f[f"schedule/{name}"] = getattr(SCHEDULE, name)
        for name, values in rows.items():
            dtype = np.int64 if name in ("t", "t_prev") else (np.float64 if np.ndim(values[0]) == 0 else np.float32)
            f[f"steps/{name}"] = np.asarray(values, dtype=dtype)
        f["samples"] = x.astype(np.float32)
        f["labels"] = np.full(2, -1, dtype=np.int64)
    return path


def run_check(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, dict]:
    code = main(["check", str(path), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_handmade_ddim_loop_is_identified_and_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for eta in (0.0, 0.6):
        code, report = run_check(capsys, handmade_ddim(tmp_path / f"good{eta}.h5", eta=eta))
        assert (code, report["verdict"], report["unchecked"]) == (0, "PASS", [])
        assert report["sampler"] == "ddim" and report["identification"].startswith("identified as ddim")
        checked = {c["id"]: c["checked"] for c in report["checks"]}
        assert checked["ddim.step"] == 10 and checked["ddim.sigma"] == 10  # every step, eta inferred then verified
        assert f"eta inferred from sigma: {eta:g}" in report["identification"]


def test_a_wrong_alpha_bar_prev_at_every_step_is_never_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = handmade_ddim(tmp_path / "bad.h5", wrong_prev_at=tuple(range(9)))
    code, report = run_check(capsys, path)
    assert code == 3 and report["verdict"] == "INCOMPLETE"  # it used to say PASS, exit 0
    [(what, why)] = [(u["what"], u["why"]) for u in report["unchecked"]]
    assert what == "the step update" and "ddim.step holds at 0 of 8 probed steps" in why
    code = main(["check", str(path)])
    text = capsys.readouterr().out
    assert code == 3 and "INCOMPLETE" in text.splitlines()[-1] and "PASS" not in text
    # Declared, the same trace fails Eq. 12 at exactly the steps whose update used another alpha_bar.
    code, report = run_check(capsys, handmade_ddim(tmp_path / "declared.h5", wrong_prev_at=(2, 5), declare=True))
    assert code == 1 and {c["id"]: c["failing"] for c in report["checks"] if c["failing"]} == {"ddim.step": [2, 5]}


def test_a_wrong_step_among_good_ones_fails_where_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_check(capsys, handmade_ddim(tmp_path / "one.h5", wrong_prev_at=(6,)))
    assert code == 1 and report["verdict"] == "FAIL" and report["sampler"] == "ddim"
    assert {c["id"]: c["failing"] for c in report["checks"] if c["failing"]} == {"ddim.step": [6]}


def test_record_sampling_without_a_sampler_name_is_identified(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    record_sampling(records(SCHEDULE, 12), path, schedule=SCHEDULE, config={}, planned=12, labels=None)
    with open_trace(path) as trace:
        report = check_trace(trace)
        assert report.verdict == "PASS" and report.sampler == "ddim" and unchecked_for(trace) == []


def test_guidance_without_a_declared_scale_is_incomplete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "guided.h5"
    record_sampling(records(SCHEDULE, 8, guided=True), path, schedule=SCHEDULE, config={}, planned=8, labels=None)
    code, report = run_check(capsys, path)
    assert code == 3 and [u["what"] for u in report["unchecked"]] == ["guidance.combine"]
    assert "no guidance scale" in report["unchecked"][0]["why"]


def test_a_declared_sampler_without_a_step_equation_is_incomplete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lms.h5"
    record_sampling(records(SCHEDULE, 6), path, schedule=SCHEDULE, config={"sampler": {"sampler": "lms"}}, planned=6, labels=None)
    code, report = run_check(capsys, path)
    assert code == 3 and report["unchecked"] == [{"what": "the step update", "why": "no step equation is registered for the 'lms' sampler"}]
    with open_trace(path) as trace:
        assert unchecked_for(trace) == [("the step update", "no step equation is registered for the 'lms' sampler")]


@pytest.mark.parametrize("config", [
    SamplerConfig(sampler="ddpm"), SamplerConfig(sampler="ddpm", variance="beta", clip=False),
    SamplerConfig(sampler="ddim", steps=10, eta=1.0), SamplerConfig(sampler="ddim", steps=8, eta=0.0, clip=True),
], ids=["ddpm", "ddpm-beta-noclip", "ddim-eta1", "ddim-clip"])
def test_our_traces_with_their_sampler_name_removed_are_identified_alike(tmp_path: Path, config: SamplerConfig) -> None:
    path = record(tmp_path / "ours.h5", config)
    with open_trace(path) as trace:
        declared = check_trace(trace)
    with h5py.File(path, "r+") as f:  # a user's loop records the same tensors but names no sampler
        f.attrs["config"] = json.dumps({})
        if "sampler" in f.attrs:
            del f.attrs["sampler"]
    with open_trace(path) as trace:
        facts = TraceFacts.of(trace)
        found = check_trace(trace)
    assert declared.verdict == "PASS" and found.verdict == "PASS", found.unchecked
    assert facts.sampler_source == "identified"
    step = {c.id: c.checked for c in found.checks}
    assert max(step.get("ddim.step", 0), step.get("ddpm.step", 0)) == found.rows  # an update checked at every step
    if config.sampler == "ddpm":
        assert facts.variance == config.variance


def test_a_tampered_identified_trace_fails_at_the_step(tmp_path: Path) -> None:
    path = record(tmp_path / "ddim.h5", SamplerConfig(sampler="ddim", steps=10))
    with h5py.File(path, "r+") as f:
        f.attrs["config"] = json.dumps({})
    edit(path, "x_t", 6, 1e-3)  # step 5's output no longer follows Eq. 12; x0 at step 6 no longer follows Eq. 15
    with open_trace(path) as trace:
        report = check_trace(trace)
    assert report.verdict == "FAIL" and {c.id: c.failing for c in report.failed} == {"ddim.step": [5], "x0_from_eps": [6]}


def test_check_exit_codes_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--help"]) == 0
    text = capsys.readouterr().out
    for code in ("0 PASS", "1 FAIL", "2 bad input", "3 INCOMPLETE"):
        assert code in text


def test_a_declared_trace_is_not_identified(tmp_path: Path) -> None:
    path = record(tmp_path / "ddim.h5", SamplerConfig(sampler="ddim", steps=5, eta=0.3))
    with open_trace(path) as trace:
        assert TraceFacts.of(trace) == TraceFacts.declared(trace)
        assert TraceFacts.of(trace).eta == 0.3 and TraceFacts.of(trace).identification == ""


def test_a_row_no_check_reads_is_still_read_before_a_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A running trace's last step is not judged (its output is unknown), so no check reads its noise; once, a
    damaged row there passed unseen. check reads every committed row before it gives a verdict."""
    from tracer.trace import reader

    path = tmp_path / "cut.h5"

    def cut():
        for step in records(SCHEDULE, 8):
            if step.index == 6:
                raise RuntimeError("killed")
            yield step

    with pytest.raises(RuntimeError):
        record_sampling(cut(), path, schedule=SCHEDULE, config={}, planned=8, labels=None)
    assert main(["check", str(path)]) == 3  # INCOMPLETE: the end of the run (steps 6, 7 and the samples) is not in it
    assert "6 of 8 planned steps recorded" in capsys.readouterr().out
    real = reader.Trace.tensor

    def damaged(self, name, i, series="steps", dtype=np.float32):
        if (name, i) == ("noise", 5):
            raise reader.TraceError(f"{self.path} is truncated or corrupt: row 5 of steps/noise cannot be read")
        return real(self, name, i, series, dtype)

    monkeypatch.setattr(reader.Trace, "tensor", damaged)
    assert main(["check", str(path)]) == 2
    assert "row 5 of steps/noise" in capsys.readouterr().err
