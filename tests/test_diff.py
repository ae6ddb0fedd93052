"""``noisescope diff`` (issue 14, point 5): where two traces part.

Against diffusers: noisescope's DDIM and diffusers' DDIMScheduler (traced by TracedScheduler) on one tiny
UNet2DModel from one x_T agree with leading spacing and part at the first step with linspace, where diffusers
visits other timesteps. Against a closed form: a model whose eps is moved by a known delta from a known step on
parts exactly there, in eps, by delta on the gap's scale; x_t is still equal at that step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tracer.cli import main
from tracer.diff import diff_traces, line_up
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers import SamplerConfig
from tracer.schedules import Schedule, make_schedule
from tracer.trace.choice import RecordChoice
from tracer.trace.reader import open_trace

MEAN, STD = torch.tensor([0.5, -0.3], dtype=torch.float64), 0.4


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return make_schedule("linear", 1000)


def record(model: Any, schedule: Schedule, path: Path, sampler: str = "ddim", batch: int = 8, samples: str | None = None,
           dims: int = 2, **options: Any) -> Path:
    """A run of ``model`` from a fixed x_T and noise, keeping the batch rows ``samples`` (--samples' syntax) or all."""
    z = torch.randn(batch, dims, generator=torch.Generator().manual_seed(3))
    record_run(model, schedule, SamplerConfig(sampler, **options), x_T=z, labels=None, generator=torch.Generator().manual_seed(4),
               out=path, progress=False, choice=RecordChoice.from_cli(samples=samples))
    return path


class Moved(torch.nn.Module):
    """The oracle's eps plus ``delta`` wherever t <= ``below``: two runs agree until the first such step."""

    def __init__(self, inner: GaussianOracle, delta: float, below: int) -> None:
        super().__init__()
        self.inner, self.delta, self.below = inner, delta, below

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        eps = self.inner(x, t, labels)
        return eps + self.delta * (t <= self.below).to(eps.dtype).reshape(-1, 1)


def test_a_moved_eps_parts_at_its_first_step_by_delta(schedule: Schedule, tmp_path: Path) -> None:
    oracle = GaussianOracle(schedule, MEAN, STD)
    a = record(oracle, schedule, tmp_path / "a.h5", steps=10)
    b = record(Moved(oracle, 0.25, below=500), schedule, tmp_path / "b.h5", steps=10)
    with open_trace(a) as ta, open_trace(b) as tb:
        t = ta.scalars()["t"]
        first = int(np.flatnonzero(t <= 500)[0])
        eps = ta.tensor("eps", first).astype(np.float64)
        result = diff_traces(ta, tb)
    assert result.lined_up_by == "step" and len(result.pairs) == 10 and not result.agree
    parts = result.parts
    assert parts is not None and parts.a == parts.b == first
    beyond = result.beyond(parts)
    assert "x_t" not in beyond and parts.gaps["x_t"] == 0  # the state is the same where the outputs first differ
    scale = max(1.0, float(np.abs(eps).max()), float(np.abs(eps + 0.25).max()))
    assert beyond["eps"] == pytest.approx(0.25 / scale, rel=1e-5)
    assert all(p.gaps["x_t"] == 0 for p in result.pairs[: first + 1]) and result.pairs[first + 1].gaps["x_t"] > 0


def test_a_trace_agrees_with_itself_and_check_exit_codes(schedule: Schedule, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    oracle = GaussianOracle(schedule, MEAN, STD)
    a = record(oracle, schedule, tmp_path / "a.h5", steps=10)
    b = record(Moved(oracle, 1e-3, below=1000), schedule, tmp_path / "b.h5", steps=10)
    assert main(["diff", str(a), str(a)]) == 0
    assert "AGREE" in capsys.readouterr().out
    assert main(["diff", str(a), str(b), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["agree"] is False and doc["parts"]["step_a"] == 0 and "eps" in doc["parts"]["beyond"]
    assert len(doc["pairs"]) == 10 and doc["final"]["final"] is True
    with open_trace(a) as ta, open_trace(b) as tb:
        largest = max(v for p in diff_traces(ta, tb).pairs for v in p.gaps.values())
    assert largest > 1e-3  # x0_pred carries the delta times sqrt((1 - alpha_bar) / alpha_bar): about 16 at t = 900
    assert main(["diff", str(a), str(b), "--tol", str(largest * 1.01)]) == 0
    assert main(["diff", str(a), str(b), "--tol", str(largest * 0.99)]) == 1


def test_steps_of_other_plans_are_lined_up_by_noise_level(schedule: Schedule, tmp_path: Path) -> None:
    oracle = GaussianOracle(schedule, MEAN, STD)
    ddim = record(oracle, schedule, tmp_path / "ddim.h5", steps=10)
    ddpm = record(oracle, schedule, tmp_path / "ddpm.h5", sampler="ddpm")
    with open_trace(ddim) as a, open_trace(ddpm) as b:
        by, pairs = line_up(a, b)
        t_a, t_b = a.scalars()["t"], b.scalars()["t"]
        result = diff_traces(a, b)
    assert by == "noise level" and len(pairs) == 10  # DDIM's 10 leading timesteps are among DDPM's 1,000
    assert all(t_a[i] == t_b[j] for i, j in pairs)
    assert pairs[0] == (0, 99)  # DDIM starts at t = 900, DDPM reaches it after 99 steps of its own
    assert result.parts is not None and (result.parts.a, result.parts.b) == (0, 99) and "x_t" in result.beyond(result.parts)
    assert "noise" not in result.parts.gaps  # DDIM eta 0 adds no noise (sigma = 0): z is not compared there
    assert result.unpaired == (0, 990)


def test_bad_input_is_one_line_and_exit_2(schedule: Schedule, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    oracle = GaussianOracle(schedule, MEAN, STD)
    a = record(oracle, schedule, tmp_path / "a.h5", steps=10)
    small = record(oracle, schedule, tmp_path / "small.h5", steps=10, batch=4)
    three = record(GaussianOracle(schedule, torch.zeros(3, dtype=torch.float64), STD), schedule, tmp_path / "three.h5", steps=10, dims=3)
    head, tail = (record(oracle, schedule, tmp_path / f"{n}.h5", steps=10, samples=rows) for n, rows in (("head", "0:3"), ("tail", "5:8")))
    other = record(oracle, schedule, tmp_path / "other.h5", steps=7, spacing="trailing")  # t = 999, 856, ..., 141: none of a's
    (tmp_path / "text.h5").write_text("not a trace")
    cases = [
        ([str(a), str(three)], "other shapes"),
        ([str(a), str(small)], "batches of other sizes (" + str(a) + " 8, " + str(small) + " 4)"),
        ([str(head), str(tail)], "keeps samples 0:3 and " + str(tail) + " samples 5:8 of the run's batch of 8: no sample in common"),
        ([str(a), str(other)], "share no noise level"),
        ([str(a), str(tmp_path / "missing.h5")], "missing.h5"),
        ([str(a), str(tmp_path / "text.h5")], "text.h5"),
        ([str(a), str(a), "--tol", "0"], "> 0"),
        ([str(a), str(a), "--tol", "nan"], "--tol"),
    ]
    for argv, words in cases:
        assert main(["diff", *argv]) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and words in captured.err, (argv, captured.err)


def test_samples_are_lined_up_by_their_index_in_the_run(schedule: Schedule, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--samples 2:6 against --samples 4:8 of one run: samples 4 and 5 are rows 2, 3 of the first and 0, 1 of the second.
    They agree there, the noise drawn included (DDIM with eta 1); row for row by position (sample 2 against 4) they
    would not. A moved eps in the second still parts at its first step."""
    oracle = GaussianOracle(schedule, MEAN, STD)
    full = record(oracle, schedule, tmp_path / "full.h5", steps=10, eta=1.0)
    a = record(oracle, schedule, tmp_path / "a.h5", steps=10, eta=1.0, samples="2:6")
    b = record(oracle, schedule, tmp_path / "b.h5", steps=10, eta=1.0, samples="4:8")
    moved = record(Moved(oracle, 0.25, below=500), schedule, tmp_path / "moved.h5", steps=10, eta=1.0, samples="4:8")
    with open_trace(a) as ta, open_trace(b) as tb, open_trace(full) as tf, open_trace(moved) as tm:
        assert not np.array_equal(ta.tensor("x_t", 0), tb.tensor("x_t", 0))  # by position the rows are other samples
        assert np.array_equal(ta.tensor("x_t", 0)[2:], tb.tensor("x_t", 0)[:2])
        result = diff_traces(ta, tb)
        assert result.agree and result.samples == [4, 5] and result.partial and result.compared == ["x_t", "eps", "x0_pred", "noise"]
        assert all("noise" in p.gaps for p in result.pairs[:-1])  # sigma > 0 but at the last step
        assert all(v == 0 for p in [*result.pairs, result.final] if p is not None for v in p.gaps.values())
        whole = diff_traces(tf, tb)  # the whole batch against a slice: the slice's samples
        assert whole.agree and whole.samples == [4, 5, 6, 7] and whole.final is not None
        parted = diff_traces(ta, tm)
        first = int(np.flatnonzero(ta.scalars()["t"] <= 500)[0])
        assert parted.parts is not None and parted.parts.a == first and "eps" in parted.beyond(parted.parts)
        assert not diff_traces(tf, tf).partial and diff_traces(tf, tf).samples == list(range(8))
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "samples compared: 4, 5 of the run's batch" in out and "AGREE" in out
    assert main(["diff", str(full), str(full), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == list(range(8))


class Stops(torch.nn.Module):
    """The oracle, until it raises at the first t <= ``below``: a run that stops there, its trace status failed."""

    def __init__(self, inner: GaussianOracle, below: int) -> None:
        super().__init__()
        self.inner, self.below = inner, below

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if bool((t <= self.below).any()):
            raise RuntimeError("stopped")
        return self.inner(x, t, labels)


def test_a_run_that_stopped_is_lined_up_by_step_on_the_steps_it_holds(schedule: Schedule, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    oracle = GaussianOracle(schedule, MEAN, STD)
    full = record(oracle, schedule, tmp_path / "full.h5", steps=10)
    with pytest.raises(RuntimeError, match="stopped"):
        record(Stops(oracle, below=500), schedule, tmp_path / "cut.h5", steps=10)
    cut = tmp_path / "cut.h5"
    with open_trace(cut) as tc, open_trace(full) as tf:
        held = tc.num_steps
        assert tc.status == "failed" and 0 < held < 10 and tc.planned() == tf.planned() == 10
        result = diff_traces(tc, tf)
    assert result.lined_up_by == "step" and [(p.a, p.b) for p in result.pairs] == [(i, i) for i in range(held)]
    assert result.agree and result.unpaired == (0, 10 - held) and result.final is None and result.status == ("failed", "complete")
    assert main(["diff", str(full), str(cut)]) == 0
    out = capsys.readouterr().out
    assert f"{10 - held} steps of A past the other's last" in out and "B did not finish (status failed)" in out
    assert main(["diff", str(cut), str(full), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == {"a": "failed", "b": "complete"}


# -- against diffusers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spacing", "agree"), [("leading", True), ("linspace", False)])
def test_our_ddim_against_diffusers_ddim(tmp_path: Path, spacing: str, agree: bool) -> None:
    diffusers = pytest.importorskip("diffusers")
    from tests.tiny_unet import tiny_unet
    from tracer.integrations.diffusers import TracedScheduler

    unet = tiny_unet()

    class Ours(torch.nn.Module):  # the same network in noisescope's calling convention
        def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
            return unet(x, t).sample  # type: ignore[no-any-return]

    schedule = make_schedule("linear", 1000)
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = tmp_path / "ours.h5"
    with torch.no_grad():
        record_run(Ours(), schedule, SamplerConfig("ddim", steps=10), x_T=z, labels=None, generator=None, out=ours, progress=False)
    theirs = tmp_path / "theirs.h5"
    scheduler = diffusers.DDIMScheduler(timestep_spacing=spacing, clip_sample=False)
    with TracedScheduler(scheduler, theirs) as traced, torch.no_grad():
        traced.set_timesteps(10)
        x = z.clone()
        for t in traced.timesteps:
            x = traced.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    assert main(["diff", str(ours), str(theirs)]) == (0 if agree else 1)
    with open_trace(ours) as a, open_trace(theirs) as b:
        result = diff_traces(a, b)
    if agree:
        assert result.agree and len(result.pairs) == 10
    else:
        assert result.parts is not None and result.parts.a == 0 and "t" in result.beyond(result.parts)
        assert result.parts.t_a == 900 and result.parts.t_b == 999  # leading starts at 900, linspace at 999
