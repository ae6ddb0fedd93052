"""The recording API (tracer/recorder.py): a sampling loop of one's own, traced with ``record`` and ``step``.

A DDIM loop written here the way the report noisescope grew from writes it (arXiv 2512.07201:
timesteps 1, 1 + c, ..., its last step to alpha_bar_0, x0 clamped, eta 0) and a DDIM loop with
eta > 0, both on the exact Gaussian oracle, are traced with the API; their traces equal, step for
step, the traces noisescope's own DDIM writes from the same x_T, and ``check`` judges them. Bad
input raises one line naming the argument, and a trace cut short stays readable, marked failed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from tracer import RecordError, RecordTypeError, record
from tracer.check import check_trace
from tracer.cli import main
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers.config import SamplerConfig
from tracer.schedules import make_schedule
from tracer.trace.reader import open_trace
from tracer.trace.writer import TraceExistsError

SHAPE = (1, 4, 4)
BATCH = 3


def oracle(schedule: Any) -> GaussianOracle:
    torch.manual_seed(0)
    return GaussianOracle(schedule, mean=0.8 * torch.rand(SHAPE) - 0.4, std=0.5)


def x_T(seed: int = 1) -> torch.Tensor:  # noqa: N802
    return torch.randn((BATCH, *SHAPE), generator=torch.Generator().manual_seed(seed))


def report_ddim(model: Any, alpha_bar: torch.Tensor, x: torch.Tensor, steps: int, rec: Any = None) -> torch.Tensor:
    """DDIM as the report writes it: t = 1, 1 + c, ... (c = T // steps) downwards, the last step to t = 0, eta 0,
    x0 clamped to [-1, 1] while the direction term keeps the raw eps (Song et al. 2021, Eq. 12)."""
    T = len(alpha_bar)  # noqa: N806
    c = T // steps
    for t in reversed(range(1, T, c)):
        t_prev = t - c if t > c else 0
        a_t, a_prev = alpha_bar[t], alpha_bar[t_prev]
        eps = model(x, torch.full((x.shape[0],), t))
        x0 = (x - torch.sqrt(1 - a_t) * eps) / torch.sqrt(a_t)
        x0_clamped = x0.clamp(-1, 1)
        x_next = torch.sqrt(a_prev) * x0_clamped + torch.sqrt(1 - a_prev) * eps
        if rec is not None:
            rec.step(t=t, t_prev=t_prev, x_t=x, eps=eps, x0_pred=x0_clamped, x0_pred_raw=x0, x_prev=x_next, sigma=0.0)
        x = x_next
    return x


def eta_ddim(model: Any, schedule: Any, pairs: list[tuple[int, int]], eta: float, x: torch.Tensor, generator: torch.Generator,
             rec: Any = None) -> torch.Tensor:
    """DDIM with noise (Song et al. 2021, Eq. 12 and 16), the noise drawn from ``generator`` at each step with sigma > 0."""
    for t, t_prev in pairs:
        a_t = float(schedule.alpha_bar[t])
        a_prev = 1.0 if t_prev < 0 else float(schedule.alpha_bar[t_prev])
        eps = model(x, torch.full((x.shape[0],), t))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)  # Eq. 16
        z = torch.randn(x.shape, generator=generator) if sigma > 0 else torch.zeros_like(x)
        x_next = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps + sigma * z
        if rec is not None:
            rec.step(t=t, t_prev=t_prev, x_t=x, eps=eps, x0_pred=x0, noise=z, x_prev=x_next)  # sigma from the declared eta
        x = x_next
    return x


def assert_same_steps(ours: Path, theirs: Path) -> None:
    """Every field both traces hold is equal at every step: integers and the schedule's scalars exactly, tensors to float32 rounding."""
    with open_trace(ours) as a, open_trace(theirs) as b:
        assert a.status == b.status == "complete" and a.num_steps == b.num_steps
        assert a.schedule_arrays()["alpha_bar"].tolist() == b.schedule_arrays()["alpha_bar"].tolist()
        sa, sb = a.scalars(), b.scalars()
        common = sorted(set(sa) & set(sb))
        assert {"t", "t_prev", "alpha_bar_t", "alpha_bar_prev", "alpha_t", "beta_t", "sigma"} <= set(common)
        for name in common:
            np.testing.assert_allclose(sa[name], sb[name], rtol=1e-9, atol=0, err_msg=name)  # beta_0 = 1 - alpha_0 rounds
        tensors = sorted(set(a.tensor_names()) & set(b.tensor_names()))
        assert {"x_t", "eps", "x0_pred", "noise"} <= set(tensors)
        for name in tensors:
            for i in range(a.num_steps):
                np.testing.assert_allclose(a.tensor(name, i), b.tensor(name, i), rtol=1e-6, atol=1e-6, err_msg=f"{name} at step {i}")
        np.testing.assert_allclose(a.final("samples"), b.final("samples"), rtol=1e-6, atol=1e-6)
        assert a.final("labels").tolist() == b.final("labels").tolist() == [-1] * BATCH


# -- a loop of one's own, traced, equals noisescope's own DDIM -------------------------------------------------


def test_the_reports_ddim_loop_traced_equals_noisescopes_seed_report_ddim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = make_schedule("seed-report")  # T = 300
    model = oracle(schedule)
    alpha_bar = torch.tensor(schedule.alpha_bar)
    untraced = report_ddim(model, alpha_bar, x_T(), 10)
    with record(tmp_path / "mine.h5", alpha_bar) as rec:  # alpha_bar alone: check identifies the update
        traced = report_ddim(model, alpha_bar, x_T(), 10, rec)
    assert torch.equal(traced, untraced)  # recording changes nothing
    record_run(model, schedule, SamplerConfig("ddim", steps=10, preset="seed-report"), x_T=x_T(), labels=None, generator=None,
               out=tmp_path / "ours.h5", progress=False)
    assert_same_steps(tmp_path / "mine.h5", tmp_path / "ours.h5")
    with open_trace(tmp_path / "mine.h5") as trace:
        assert trace.column("t").tolist() == list(range(271, 0, -30)) and trace.column("t_prev")[-1] == 0
        np.testing.assert_allclose(trace.final("samples"), traced.numpy(), rtol=0, atol=0)
    # check identifies DDIM, verifies every step, and says the last step leaves noise: alpha_bar_0 = 0.999, not 1.
    code = main(["check", str(tmp_path / "mine.h5")])
    text = capsys.readouterr().out
    assert code == 4, text
    assert "identified as ddim" in text and "eta inferred from sigma: 0" in text and "ends at t = 0 (alpha_bar_0)" in text
    last = text.splitlines()[-1]
    assert last.startswith("NOISE LEFT: ") and f"{math.sqrt(1 - schedule.alpha_bar[0]):.3g} eps" in last
    with open_trace(tmp_path / "mine.h5") as trace:
        report = check_trace(trace)
        assert not report.failed and report.unchecked == () and report.final_alpha_bar == pytest.approx(schedule.alpha_bar[0])
        assert {c.id: c.checked for c in report.checks}["ddim.step"] == 10
    assert main(["inspect", str(tmp_path / "mine.h5")]) == 0  # no steps= given: no plan, and inspect says so
    assert "steps     10 rows (no plan recorded)" in capsys.readouterr().out


def test_the_reports_loop_declared_as_ddim_is_checked_against_the_declaration(tmp_path: Path) -> None:
    schedule = make_schedule("seed-report")
    model = oracle(schedule)
    alpha_bar = torch.tensor(schedule.alpha_bar)
    with record(tmp_path / "declared.h5", "seed-report", sampler="ddim", clip=True, final_alpha_bar="alpha_bar_0", steps=10) as rec:
        report_ddim(model, alpha_bar, x_T(), 10, rec)
    with open_trace(tmp_path / "declared.h5") as trace:
        assert trace.config["sampler"]["sampler"] == "ddim" and trace.planned() == 10
        report = check_trace(trace)
        assert report.identification == "" and report.verdict == "NOISE LEFT"
    # Declared to end at the clean end, the same loop fails exactly where it does not: the chain at the last step.
    with record(tmp_path / "wrong.h5", "seed-report", sampler="ddim", clip=True) as rec:
        report_ddim(model, alpha_bar, x_T(), 10, rec)
    with open_trace(tmp_path / "wrong.h5") as trace:
        report = check_trace(trace)
        assert {c.id: c.failing for c in report.failed} == {"chain.t_prev": [9]}


def test_a_ddim_loop_with_noise_equals_noisescopes_ddim_and_passes(tmp_path: Path) -> None:
    schedule = make_schedule("linear", 1000)
    model = oracle(schedule)
    config = SamplerConfig("ddim", steps=10, eta=0.5)
    pairs = config.plan(schedule.T)
    with record(tmp_path / "mine.h5", schedule.alpha_bar, sampler="ddim", eta=0.5) as rec:  # a NumPy alpha_bar
        eta_ddim(model, schedule, pairs, 0.5, x_T(), torch.Generator().manual_seed(2), rec)
    record_run(model, schedule, config, x_T=x_T(), labels=None, generator=torch.Generator().manual_seed(2),
               out=tmp_path / "ours.h5", progress=False)
    assert_same_steps(tmp_path / "mine.h5", tmp_path / "ours.h5")
    with open_trace(tmp_path / "mine.h5") as trace:
        assert float(trace.column("sigma")[0]) > 0  # the noise is real, and recorded
        report = check_trace(trace)
        assert report.verdict == "PASS" and report.exit_code == 0
        assert {c.id: c.checked for c in report.checks}["ddim.sigma"] == 10  # sigma of Eq. 16, verified against eta


# -- what check cannot verify is never PASS --------------------------------------------------------------------


def simple_loop(rec: Any, schedule: Any, steps: int = 5, *, leave_out: tuple[str, ...] = (), fail_at: int | None = None) -> None:
    """A DDIM loop with eta 0 to the clean end; ``leave_out`` names not given to ``step``; raises at step ``fail_at``."""
    model = oracle(schedule)
    x = x_T()
    pairs = SamplerConfig("ddim", steps=steps).plan(schedule.T)
    for i, (t, t_prev) in enumerate(pairs):
        if i == fail_at:
            raise RuntimeError("the model crashed")
        a_t, a_prev = float(schedule.alpha_bar[t]), 1.0 if t_prev < 0 else float(schedule.alpha_bar[t_prev])
        eps = model(x, torch.full((BATCH,), t))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        x_next = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
        values = {"t": t, "t_prev": t_prev, "x_t": x, "eps": eps, "x0_pred": x0, "x_prev": x_next, "sigma": 0.0}
        rec.step(**{k: v for k, v in values.items() if k not in leave_out})
        x = x_next


@pytest.mark.parametrize(("leave_out", "what"), [
    ((), None),
    (("x_prev",), "the last step's update"),
    (("sigma",), "the step update"),
])
def test_check_says_what_it_could_not_verify(tmp_path: Path, leave_out: tuple[str, ...], what: str | None) -> None:
    schedule = make_schedule("linear", 1000)
    with record(tmp_path / "t.h5", schedule.alpha_bar) as rec:
        simple_loop(rec, schedule, leave_out=leave_out)
    with open_trace(tmp_path / "t.h5") as trace:
        assert trace.status == "complete" and trace.num_steps == 5
        assert (trace.final("samples") is None) == ("x_prev" in leave_out)
        report = check_trace(trace)
        assert not report.failed
        assert report.verdict == ("PASS" if what is None else "INCOMPLETE")
        assert [w for w, _ in report.unchecked] == ([] if what is None else [what])


# -- a trace cut short stays readable ---------------------------------------------------------------------------


def test_an_exception_in_the_loop_leaves_a_readable_failed_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = make_schedule("linear", 1000)
    path = tmp_path / "t.h5"
    with pytest.raises(RuntimeError, match="the model crashed"), record(path, schedule.alpha_bar, steps=10) as rec:
        simple_loop(rec, schedule, steps=10, fail_at=4)
    with open_trace(path) as trace:
        assert trace.status == "failed" and trace.num_steps == 4 and trace.planned() == 10
        assert trace.final("samples") is None
        report = check_trace(trace)
        assert not report.failed and report.verdict == "INCOMPLETE" and report.exit_code == 3
        assert [what for what, _ in report.unchecked] == ["the end of the run"]
        assert "did not finish (status failed): 4 of 10 planned steps recorded" in report.unchecked[0][1]
    assert main(["inspect", str(path)]) == 0
    assert "failed" in capsys.readouterr().out


def bad_step(values: dict[str, Any], at: int) -> Callable[[Any, Any], None]:
    """A loop whose step ``at`` is given ``values`` on top of (or, for None, instead of) the good ones."""
    def loop(rec: Any, schedule: Any) -> None:
        x = x_T()
        for i, t in enumerate((900, 700, 500)):
            good: dict[str, Any] = {"t": t, "t_prev": t - 200, "x_t": x, "eps": 0.1 * x, "x0_pred": x, "sigma": 0.0}
            if i == at:
                good.update(values)
            rec.step(**{k: v for k, v in good.items() if v is not None})
    return loop


BAD_STEPS = {
    "an unknown name": ({"x_0": torch.zeros(BATCH, *SHAPE)}, 0, "x_0"),
    "an unknown name later": ({"x0": torch.zeros(BATCH, *SHAPE)}, 2, "x0"),
    "a shape that changes between steps": ({"x_t": torch.zeros(BATCH + 1, *SHAPE), "eps": torch.zeros(BATCH + 1, *SHAPE),
                                            "x0_pred": torch.zeros(BATCH + 1, *SHAPE)}, 1, "x_t"),
    "a tensor shaped unlike x_t": ({"eps": torch.zeros(BATCH, 1, 4, 5)}, 1, "eps"),
    "t past the schedule": ({"t": 1000}, 1, "t"),
    "t below 0": ({"t": -1}, 0, "t"),
    "t not an integer": ({"t": 2.5}, 2, "t"),
    "t_prev below -1": ({"t_prev": -2}, 1, "t_prev"),
    "t_prev past the schedule": ({"t_prev": 1000}, 0, "t_prev"),
    "t of several values": ({"t": torch.tensor([900, 899, 900])}, 0, "t"),
    "x_t missing": ({"x_t": None}, 0, "x_t"),
    "eps missing": ({"eps": None}, 0, "eps"),
    "a name the first step gave, missing": ({"x0_pred": None}, 2, "x0_pred"),
    "a name the first step did not give": ({"noise": torch.zeros(BATCH, *SHAPE)}, 1, "noise"),
    "a string for a tensor": ({"eps": "eps"}, 1, "eps"),
    "a string for a scalar": ({"sigma": "0"}, 0, "sigma"),
    "eps and an eps network's model_output": ({"model_output": torch.zeros(BATCH, *SHAPE)}, 0, "model_output"),
}


@pytest.mark.parametrize("case", BAD_STEPS.values(), ids=BAD_STEPS.keys())
def test_a_bad_step_raises_one_line_naming_the_argument_and_keeps_the_trace(tmp_path: Path, case: tuple[dict[str, Any], int, str]) -> None:
    values, at, argument = case
    schedule = make_schedule("linear", 1000)
    path = tmp_path / "t.h5"
    with pytest.raises(RecordError) as info, record(path, schedule.alpha_bar) as rec:
        bad_step(values, at)(rec, schedule)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{argument}: "), message
    if at == 0:
        assert not path.exists()  # nothing was written: the trace is created by its first good step
        return
    with open_trace(path) as trace:  # the steps before the bad one are committed, and the trace says it failed
        assert trace.status == "failed" and trace.num_steps == at
        assert check_trace(trace).rows == at


BAD_SCHEDULES = {
    "2-D": np.full((2, 3), 0.5),
    "empty": np.array([]),
    "above 1": np.array([0.9, 1.5, 0.1]),
    "zero": np.array([0.9, 0.5, 0.0]),
    "negative": np.array([0.9, -0.5]),
    "NaN": np.array([0.9, float("nan")]),
    "increasing": np.array([0.5, 0.9]),
    "flat": np.array([0.9, 0.9, 0.5]),
    "starting at 1": np.array([1.0, 0.9, 0.5]),
    "unknown name": "laplace",
    "not an array": {"alpha_bar": [0.9]},
    "strings": np.array(["0.9", "0.5"]),
}


@pytest.mark.parametrize("schedule", BAD_SCHEDULES.values(), ids=BAD_SCHEDULES.keys())
def test_a_bad_schedule_is_refused_before_anything_is_written(tmp_path: Path, schedule: Any) -> None:
    with pytest.raises(RecordError) as info:
        record(tmp_path / "t.h5", schedule)
    assert "\n" not in str(info.value) and str(info.value).startswith("schedule: "), str(info.value)
    assert not (tmp_path / "t.h5").exists()


BAD_OPTIONS = {
    "unknown sampler": ({"sampler": "lms"}, "sampler"),
    "sigma-space sampler": ({"sampler": "euler"}, "sampler"),
    "eta above 1": ({"sampler": "ddim", "eta": 1.5}, "eta"),
    "an option of no sampler": ({"eta": 0.0}, "eta"),
    "an option the sampler lacks": ({"sampler": "ddpm", "eta": 0.0}, "eta"),
    "unknown final alpha_bar": ({"sampler": "ddim", "final_alpha_bar": "zero"}, "final_alpha_bar"),
    "unknown prediction": ({"prediction": "score"}, "prediction"),
    "unknown tensor dtype": ({"tensor_dtype": "bfloat16"}, "tensor_dtype"),
    "T unlike alpha_bar": ({"T": 7}, "T"),
    "steps 0": ({"steps": 0}, "steps"),
    "labels not integers": ({"labels": [0.5, 1.5, 2.5]}, "labels"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_a_bad_option_is_refused_in_one_line_naming_it(tmp_path: Path, case: tuple[dict[str, Any], str]) -> None:
    kwargs, argument = case
    with pytest.raises(RecordError) as info:
        record(tmp_path / "t.h5", make_schedule("linear", 1000).alpha_bar, **kwargs)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{argument}: "), str(info.value)


def test_wrong_types_are_type_errors_too(tmp_path: Path) -> None:
    with pytest.raises(TypeError), record(tmp_path / "t.h5", "linear") as rec:
        rec.step(t=5, t_prev=4, x_t=[[0.0, 1.0]], eps=torch.zeros(1, 2))
    with pytest.raises(RecordTypeError):
        record(tmp_path / "t.h5", 0.5)


def test_labels_must_match_the_batch(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match=r"^labels: 2 labels for a batch of 3"), record(tmp_path / "t.h5", "linear", labels=[0, 1]) as rec:
        bad_step({}, -1)(rec, None)


def test_an_existing_trace_is_replaced_only_when_asked(tmp_path: Path) -> None:
    schedule = make_schedule("linear", 1000)
    path = tmp_path / "t.h5"
    with record(path, schedule.alpha_bar) as rec:
        simple_loop(rec, schedule, steps=3)
    with pytest.raises(TraceExistsError, match=r"^path: "):
        record(path, schedule.alpha_bar)
    with record(path, schedule.alpha_bar, overwrite=True, labels=torch.tensor([1, 2, 3])) as rec:
        simple_loop(rec, schedule, steps=4)
    with open_trace(path) as trace:
        assert trace.num_steps == 4 and trace.final("labels").tolist() == [1, 2, 3]


# -- what step fills in, and how it stores ------------------------------------------------------------------------


def test_step_fills_in_what_follows_from_the_schedule(tmp_path: Path) -> None:
    schedule = make_schedule("seed-report")
    with record(tmp_path / "t.h5", torch.tensor(schedule.alpha_bar, dtype=torch.float32).double()) as rec:
        x = np.ones((2, 3))  # NumPy float64 in: float32 stored
        rec.step(t=np.int64(30), t_prev=torch.tensor(0), x_t=x, eps=torch.zeros(2, 3, dtype=torch.bfloat16), sigma=0.0)
        rec.step(t=torch.full((2,), 0), t_prev=-1, x_t=x, eps=np.zeros((2, 3), dtype=np.float32), sigma=np.float32(0.0))
    with open_trace(tmp_path / "t.h5") as trace:
        ab = trace.schedule_arrays()["alpha_bar"]
        assert trace.column("alpha_bar_t").tolist() == [ab[30], ab[0]]
        assert trace.column("alpha_bar_prev").tolist() == [ab[0], 1.0]  # t_prev -1: the clean end, alpha_bar 1
        np.testing.assert_allclose(trace.column("alpha_t"), [ab[30] / ab[0], ab[0]], rtol=1e-15)
        np.testing.assert_allclose(trace.column("beta_t") + trace.column("alpha_t"), 1.0, rtol=1e-15)
        assert trace.tensor_names() and "noise" in trace.tensor_names()  # sigma 0: z is zeros
        assert not np.any(trace.tensor("noise", 1))
        assert trace.final("samples") is None  # no x_prev: no samples
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert f["steps/x_t"].dtype == np.float32 and f["steps/eps"].dtype == np.float32
        assert json.loads(f.attrs["config"])["recorder"] == {"api": "tracer.record"}


def test_noise_is_needed_where_a_declared_sampler_adds_it(tmp_path: Path) -> None:
    schedule = make_schedule("linear", 1000)
    path = tmp_path / "t.h5"
    with pytest.raises(RecordError, match=r"^noise: step 1 adds noise"), record(path, schedule.alpha_bar, sampler="ddpm") as rec:
        x = x_T()
        for t in (0, 1):  # DDPM adds no noise at t = 0 (Alg. 2): z is zeros there; at t = 1 it must be given
            rec.step(t=t, t_prev=t - 1, x_t=x, eps=x, x0_pred=x)
    with open_trace(path) as trace:
        assert trace.status == "failed" and trace.num_steps == 1 and trace.column("sigma").tolist() == [0.0]


def test_an_eps_networks_model_output_is_recorded_as_eps(tmp_path: Path) -> None:
    with record(tmp_path / "t.h5", "linear", tensor_dtype="float16") as rec:
        rec.step(t=10, t_prev=-1, x_t=torch.ones(1, 2), model_output=torch.full((1, 2), 0.5))
    with open_trace(tmp_path / "t.h5") as trace:
        assert "eps" in trace.tensor_names() and "model_output" not in trace.tensor_names() and trace.tensor_dtype == "float16"
        assert trace.tensor("eps", 0).tolist() == [[0.5, 0.5]]


def test_a_run_without_steps_writes_nothing(tmp_path: Path) -> None:
    with record(tmp_path / "t.h5", "linear"):
        pass
    assert not (tmp_path / "t.h5").exists()


def test_importing_tracer_stays_light() -> None:
    code = ("import sys, tracer; assert 'torch' not in sys.modules and 'h5py' not in sys.modules, 'heavy import';"
            "from tracer import record, RecordError; assert record.__name__ == 'Recorder' and issubclass(RecordError, ValueError)")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the worked example of docs/recording.md -----------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "recording.md"


def test_the_worked_example_in_the_docs_runs_and_check_says_what_the_docs_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = DOCS.read_text()
    blocks = text.split("```python\n")[1:]
    [example] = [block.split("```")[0] for block in blocks if 'record("report-ddim.h5"' in block]
    assert sum(line.rstrip().endswith("# +") for line in example.splitlines()) == 4  # traced by adding four lines
    monkeypatch.chdir(tmp_path)
    exec(compile(example, str(DOCS), "exec"), {"__name__": "docs_example"})  # noqa: S102 - our own docs' code
    code = main(["check", "report-ddim.h5"])
    output = capsys.readouterr().out
    assert code == 4, output
    verdict = output.splitlines()[-1]
    assert verdict.startswith("NOISE LEFT: ") and verdict in text  # the verdict the docs show is the one check prints
    with open_trace(tmp_path / "report-ddim.h5") as trace:
        assert trace.status == "complete" and trace.column("t").tolist() == list(range(271, 0, -30))
