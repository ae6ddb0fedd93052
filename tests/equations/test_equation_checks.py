"""The checks' math: our samplers pass in every configuration, a broken trace fails exactly where it was broken,
and a perturbation shows up in each residual with the size its equation says."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.equations.traces import edit, record, set_scalar
from tracer.config import DataConfig, ModelConfig, ScheduleConfig, TrainConfig
from tracer.samplers.config import SamplerConfig
from tracer.equations import Residual, TraceView, evaluate, failing_steps, tolerance_for
from tracer.equations import checks as C
from tracer.samplers.records import StepRecord
from tracer.schedules import make_schedule
from tracer.trace.reader import open_trace
from tracer.trace.sampling import record_sampling


def all_checks_pass(path: Path) -> dict[str, list[int]]:
    with open_trace(path) as trace:
        return failing_steps(trace)


# -- our own samplers pass, in every configuration covered -------------------------------------------------

DDIM_MATRIX = list(itertools.product(("leading", "trailing", "linspace"), (0.0, 0.5, 1.0), (None, 0.0, 1.0, 3.0), ("float32", "float16")))


@pytest.mark.parametrize(("spacing", "eta", "guidance", "dtype"), DDIM_MATRIX)
def test_ddim_passes_every_check(tmp_path: Path, spacing: str, eta: float, guidance: float | None, dtype: str) -> None:
    k = DDIM_MATRIX.index((spacing, eta, guidance, dtype))
    clip, final = (None, True, False)[k % 3], ("one", "alpha_bar_0")[k // 3 % 2]  # every clip and final alpha_bar, in turn
    config = SamplerConfig(sampler="ddim", steps=7, spacing=spacing, eta=eta, guidance=guidance, clip=clip, final_alpha_bar=final)
    path = record(tmp_path / "t.h5", config, dtype=dtype)
    assert all_checks_pass(path) == {}
    with open_trace(path) as trace:  # the checks did run: every step equation applied at every step
        evaluations = {e.check.id: e for e in evaluate(trace)}
        assert all(r is not None for r in evaluations["ddim.step"].residuals)
        assert ("guidance.combine" in evaluations) == (guidance is not None)


@pytest.mark.parametrize(("guidance", "dtype", "clip", "variance"), list(itertools.product((None, 0.0, 1.0, 3.0), ("float32", "float16"), (True, False), ("beta_tilde", "beta"))))
def test_ddpm_passes_every_check(tmp_path: Path, guidance: float | None, dtype: str, clip: bool, variance: str) -> None:
    path = record(tmp_path / "t.h5", SamplerConfig(sampler="ddpm", guidance=guidance, clip=clip, variance=variance), dtype=dtype)
    assert all_checks_pass(path) == {}


@pytest.mark.parametrize(("sampler", "dtype"), list(itertools.product(("ddpm", "ddim"), ("float32", "float16"))))
def test_the_seed_report_preset_passes_every_check(tmp_path: Path, sampler: str, dtype: str) -> None:
    config = SamplerConfig(sampler=sampler, steps=None if sampler == "ddpm" else 10, preset="seed-report")
    path = record(tmp_path / "t.h5", config, dtype=dtype, schedule=make_schedule("seed-report", 60))
    assert all_checks_pass(path) == {}
    if sampler == "ddim":
        with open_trace(path) as trace:  # the preset's last step moves to t = 0 (alpha_bar_0), and that is accepted
            assert int(trace.column("t_prev")[-1]) == 0


# -- a broken trace fails exactly where it was broken ----------------------------------------------------------


def test_a_broken_eps_fails_exactly_at_that_step(tmp_path: Path) -> None:
    path = record(tmp_path / "t.h5", SamplerConfig(sampler="ddim", steps=8, eta=0.5, guidance=3.0))
    edit(path, "eps", 5, 0.01)
    failing = all_checks_pass(path)
    assert failing == {"guidance.combine": [5], "x0_from_eps": [5], "ddim.step": [5]}


def test_a_broken_x0_pred_fails_exactly_at_that_step(tmp_path: Path) -> None:
    path = record(tmp_path / "t.h5", SamplerConfig(sampler="ddpm", clip=True))
    edit(path, "x0_pred", 17, 0.05)
    assert set(all_checks_pass(path)) >= {"x0.clip", "ddpm.step", "ddpm.posterior_mean"}
    assert {tuple(v) for v in all_checks_pass(path).values()} == {(17,)}


def test_a_broken_x_t_fails_the_step_before_as_its_output_and_the_step_itself(tmp_path: Path) -> None:
    path = record(tmp_path / "t.h5", SamplerConfig(sampler="ddim", steps=8))
    edit(path, "x_t", 4, 0.05)
    failing = all_checks_pass(path)
    assert failing["ddim.step"] == [3]  # x_t of step 4 is the output of step 3
    assert failing["x0_from_eps"] == [4]


def test_broken_samples_fail_only_the_last_step(tmp_path: Path) -> None:
    path = record(tmp_path / "t.h5", SamplerConfig(sampler="ddim", steps=6))
    import h5py

    with h5py.File(path, "r+") as f:
        f["samples"][0, 0] += 0.1
    assert all_checks_pass(path) == {"ddim.step": [5]}


def test_a_t_prev_that_is_not_the_next_t_fails_the_chain(tmp_path: Path) -> None:
    path = record(tmp_path / "t.h5", SamplerConfig(sampler="ddim", steps=8))
    with open_trace(path) as trace:
        t = trace.column("t")
    set_scalar(path, "t_prev", 2, int(t[3]) - 1)
    failing = all_checks_pass(path)
    # the recorded alpha_bar_prev is still the schedule's at t[3], no longer at the recorded t_prev
    assert failing == {"chain.t_prev": [2], "schedule.alpha_bar_prev": [2]}


def test_an_alpha_bar_that_is_not_the_schedules_fails(tmp_path: Path) -> None:
    path = record(tmp_path / "t.h5", SamplerConfig(sampler="ddim", steps=8))
    with open_trace(path) as trace:
        alpha_bar_t = float(trace.column("alpha_bar_t")[6])
    set_scalar(path, "alpha_bar_t", 6, alpha_bar_t * (1 + 1e-4))
    failing = all_checks_pass(path)
    assert failing["schedule.alpha_bar_t"] == [6]
    assert set(failing) <= {"schedule.alpha_bar_t", "x0_from_eps", "ddim.sigma", "step.alpha_t"}
    assert all(v == [6] for v in failing.values())


# -- residuals have the size their equation gives a perturbation -------------------------------------------------


def test_residuals_of_a_perturbed_eps_follow_the_equations(tmp_path: Path) -> None:
    delta = 1e-3
    path = record(tmp_path / "t.h5", SamplerConfig(sampler="ddim", steps=8, eta=1.0, guidance=3.0))
    edit(path, "eps", 3, delta)
    with open_trace(path) as trace:
        view = TraceView(trace)
        alpha_bar_t, alpha_bar_prev, sigma = (view.scalar(n, 3) for n in ("alpha_bar_t", "alpha_bar_prev", "sigma"))
        rounding = 1e-6  # float32 storage of the edited values
        # eps is the lhs of guidance: off by delta
        assert C.guidance_combine(view, 3).value == pytest.approx(delta, abs=rounding)  # type: ignore[union-attr]
        # x0 = (x_t - sqrt(1 - a) eps) / sqrt(a): off by delta sqrt(1 - a) / sqrt(a)
        expected_x0 = delta * math.sqrt(1 - alpha_bar_t) / math.sqrt(alpha_bar_t)
        assert C.x0_from_eps(view, 3).value == pytest.approx(expected_x0, rel=1e-2)  # type: ignore[union-attr]
        # the direction term sqrt(1 - a_prev - sigma^2) eps: off by delta times its coefficient
        expected_step = delta * math.sqrt(max(1 - alpha_bar_prev - sigma**2, 0.0))
        assert C.ddim_step(view, 3).value == pytest.approx(expected_step, rel=1e-2, abs=rounding)  # type: ignore[union-attr]


def test_residual_thresholds_are_relative_to_the_scale() -> None:
    assert Residual(0.5, scale=100.0).passes(1e-2) and not Residual(0.5, scale=100.0).passes(1e-3)
    assert Residual(0.5e-2, scale=0.1).threshold(1e-2) == pytest.approx(1e-2)  # values below 1: absolute
    assert not Residual(1.0, scale=0.0, floor=0.0).passes(0.5)  # exact checks: any difference fails
    assert Residual(0.0, scale=0.0, floor=0.0).passes(0.0)
    assert not Residual(float("nan")).passes(1.0)


# -- incomplete traces: a row without a committed output is not checked, not failed -----------------------------


def test_a_trace_cut_short_checks_the_committed_steps_only(tmp_path: Path) -> None:
    from tracer.samplers import ddim

    schedule = make_schedule("linear", 40)
    from tests.equations.traces import oracle

    def cut(records: Iterator[StepRecord], n: int) -> Iterator[StepRecord]:
        for step in records:
            if step.index == n:
                raise RuntimeError("killed")
            yield step

    records = ddim.sample(oracle(schedule), schedule, torch.randn(4, 2), steps=8)
    with pytest.raises(RuntimeError):
        record_sampling(cut(records, 3), tmp_path / "cut.h5", schedule=schedule, config={"sampler": {"sampler": "ddim", "eta": 0.0}},
                        planned=8, labels=None, attrs={"sampler": "ddim"})
    with open_trace(tmp_path / "cut.h5") as trace:
        assert trace.status == "failed" and trace.num_steps == 3
        evaluations = {e.check.id: e for e in evaluate(trace)}
        assert evaluations["ddim.step"].residuals[2] is None  # step 2's output was never committed
        assert evaluations["chain.t_prev"].residuals[2] is None  # nor is where it moved to: the run did not finish
        assert evaluations["chain.t_prev"].residuals[1] is not None
        assert failing_steps(trace) == {}


# -- training traces: the forward closed form and the loss, on the worked examples ---------------------------------


@pytest.fixture(scope="module")
def training_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tracer.training import train

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("train") / "run"
    train(run, data=DataConfig("moons", seed=0, size=128), model=ModelConfig("mlp", channels=(16, 16)), schedule=ScheduleConfig("linear", 50),
          config=TrainConfig(steps=4, batch=32, snapshot_every=0, examples=6, log_every=2, save_every=0), progress=False)
    return run / "train.h5"


def test_a_training_trace_passes_its_checks(training_trace: Path) -> None:
    with open_trace(training_trace) as trace:
        evaluations = {e.check.id: e for e in evaluate(trace)}
        assert set(evaluations) == {"schedule.alpha", "schedule.alpha_bar", "forward.q_sample", "loss.eps"}
        assert all(len(e.residuals) == 6 and None not in e.residuals and not e.failing for e in evaluations.values())


def test_a_broken_worked_example_fails_at_that_example(training_trace: Path, tmp_path: Path) -> None:
    import shutil

    import h5py

    path = tmp_path / "train.h5"
    shutil.copy(training_trace, path)
    with h5py.File(path, "r+") as f:
        f["examples/x_t"][2] = np.asarray(f["examples/x_t"][2]) + 0.01
        f["examples/loss"][4] = f["examples/loss"][4] * 1.01 + 1e-3
    with open_trace(path) as trace:
        assert failing_steps(trace) == {"forward.q_sample": [2], "loss.eps": [4]}
        assert tolerance_for(trace) == 1e-5
