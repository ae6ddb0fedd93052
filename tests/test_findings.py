"""Findings (tracer/equations/findings.py): each one on a trace made to show it, and on one that must not.

Traces are written with the project's own writers: ``record_run`` over the exact Gaussian oracles
(tracer/models/analytic.py) for real sampler runs, ``record_sampling`` over edited step records for
what no sampler of ours does (a t_prev that skips, a NaN, a guidance scale other than the declared one).
Expected numbers come from closed forms: the schedule's alpha_bar, the oracle's E[eps | x_t] and
E[x0 | x_t], the scale the records were built with.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.trace.synthetic import records
from tracer.check import check_trace, format_report, report_dict
from tracer.cli import main
from tracer.equations.findings import CLIP_MARGIN, CLIP_SHARE, EPS_LIKE_DISTANCE, KINDS, TITLES, Finding, trace_findings
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers.config import SamplerConfig
from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule, make_schedule
from tracer.trace.reader import open_trace
from tracer.trace.sampling import record_sampling

T = 40
MEAN = torch.tensor([0.5, -0.3])
STD = 0.4


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Declared(nn.Module):
    """``model`` with the prediction type a sampler is told (None: eps, the default), whatever it really predicts."""

    def __init__(self, model: nn.Module, prediction: str | None) -> None:
        super().__init__()
        self.model = model
        self.prediction = prediction

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, t, labels)  # type: ignore[no-any-return]


def sample(path: Path, config: SamplerConfig, *, schedule: Schedule | None = None, model: nn.Module | None = None,
           batch: int = 64, x_T: torch.Tensor | None = None) -> Path:  # noqa: N803
    """A run of ``config`` from x_T ~ N(0, I) (or the given x_T) recorded into ``path``."""
    schedule = schedule or make_schedule("linear", T)
    model = model if model is not None else GaussianOracle(schedule, MEAN, STD)
    generator = torch.Generator().manual_seed(0)
    start = x_T if x_T is not None else torch.randn(batch, 2, generator=generator)
    record_run(model, schedule, config, x_T=start, labels=None, generator=generator, out=path, overwrite=True, progress=False)
    return path


def write(path: Path, steps: list[StepRecord], config: dict, schedule: Schedule) -> Path:
    record_sampling(iter(steps), path, schedule=schedule, config=config, planned=len(steps), labels=None)
    return path


def found(path: Path) -> dict[str, Finding]:
    with open_trace(path) as trace:
        result = trace_findings(trace)
    kinds = [f.kind for f in result]
    assert len(kinds) == len(set(kinds)), kinds  # one finding per kind
    return {f.kind: f for f in result}


def column(path: Path, name: str) -> np.ndarray:
    with open_trace(path) as trace:
        return np.asarray(trace.column(name))


def row(path: Path, name: str, i: int) -> np.ndarray:
    with open_trace(path) as trace:
        return trace.tensor(name, i, dtype=np.float64)


# -- noise left at the end ------------------------------------------------------------------------------------------


def test_ddim_ending_at_alpha_bar_0_leaves_noise_of_std_sqrt_beta_0(tmp_path: Path) -> None:
    schedule = make_schedule("seed-report", 300)
    path = sample(tmp_path / "seed.h5", SamplerConfig("ddim", steps=10, preset="seed-report"), schedule=schedule)
    finding = found(path)["noise-left"]
    a0 = float(schedule.alpha_bar[0])  # the last step moves to t = 0: alpha_bar_0 = 1 - beta_0
    assert (finding.step, finding.t) == (9, int(column(path, "t")[-1]))
    assert finding.numbers["alpha_bar"] == a0 and finding.numbers["t_prev"] == 0
    assert finding.numbers["eps_std"] == pytest.approx(math.sqrt(float(schedule.beta[0])), rel=1e-9)  # sqrt(1 - alpha_bar_0)
    assert finding.numbers["sigma"] == pytest.approx(math.sqrt((1 - a0) / a0), rel=1e-12)
    assert "step 9" in finding.sentence and f"{math.sqrt(1 - a0):.4g}" in finding.sentence


def test_ddim_and_ddpm_ending_at_the_clean_end_leave_no_noise(tmp_path: Path) -> None:
    for name in ("ddim", "ddpm"):
        path = sample(tmp_path / f"{name}.h5", SamplerConfig(name, steps=10) if name == "ddim" else SamplerConfig(name))
        assert column(path, "alpha_bar_prev")[-1] == 1.0
        assert "noise-left" not in found(path)


def test_a_sigma_space_run_ending_at_sigma_min_leaves_noise_of_that_std(tmp_path: Path) -> None:
    schedule = make_schedule("linear", T)
    short = sample(tmp_path / "euler_min.h5", SamplerConfig("euler", steps=8, final_sigma="sigma_min"), schedule=schedule)
    clean = sample(tmp_path / "euler.h5", SamplerConfig("euler", steps=8), schedule=schedule)
    a0 = float(schedule.alpha_bar[0])
    sigma_min = math.sqrt((1 - a0) / a0)  # sigma_0 of the schedule: the default sigma_min
    finding = found(short)["noise-left"]
    assert finding.numbers["sigma"] == pytest.approx(sigma_min, rel=1e-9) and finding.numbers["eps_std"] == finding.numbers["sigma"]
    assert finding.numbers["alpha_bar"] == pytest.approx(a0, rel=1e-9)
    with open_trace(short) as trace:
        report = check_trace(trace)
    assert report.verdict == "NOISE LEFT" and report.noise_left == pytest.approx(finding.numbers["sigma"], rel=1e-12)
    assert "noise-left" not in found(clean)


# -- non-zero terminal SNR ------------------------------------------------------------------------------------------


def test_a_linear_schedule_starts_with_signal_left_in_x_T(tmp_path: Path) -> None:
    schedule = make_schedule("linear", T)
    path = sample(tmp_path / "linear.h5", SamplerConfig("ddim", steps=T), schedule=schedule)
    finding = found(path)["terminal-snr"]
    a = float(schedule.alpha_bar[T - 1])  # the first step is at t = T - 1
    assert (finding.step, finding.t) == (0, T - 1)
    assert finding.numbers["alpha_bar_t"] == a and finding.numbers["snr"] == pytest.approx(a / (1 - a), rel=1e-12)
    assert finding.numbers["signal"] == pytest.approx(math.sqrt(a), rel=1e-12)
    x_T = row(path, "x_t", 0)  # noqa: N806
    assert finding.numbers["x_T_std"] == pytest.approx(float(x_T.std()), rel=1e-12)
    assert "Lin et al. 2023" in finding.sentence


def test_zero_terminal_snr_and_an_x_T_that_is_not_pure_noise_show_no_terminal_snr(tmp_path: Path) -> None:
    zero = make_schedule("linear", T, zero_terminal_snr=True)
    assert zero.alpha_bar[-1] == 0.0
    v_model = GaussianOracle(zero, MEAN, STD, prediction="v")
    path = sample(tmp_path / "zero.h5", SamplerConfig("ddim", steps=T), schedule=zero, model=v_model)
    assert column(path, "alpha_bar_t")[0] == 0.0 and "terminal-snr" not in found(path)
    # The same linear schedule as above, but x_T of std 3: not pure noise, so nothing is claimed about it.
    wide = sample(tmp_path / "wide.h5", SamplerConfig("ddim", steps=T), x_T=3.0 * torch.randn(64, 2, generator=torch.Generator().manual_seed(1)))
    assert "terminal-snr" not in found(wide)


# -- the previous timestep is not the next one visited -------------------------------------------------------------------


def test_a_t_prev_that_skips_is_named_with_the_step_and_both_timesteps(tmp_path: Path) -> None:
    schedule = make_schedule("linear", 1000)
    steps = list(records(schedule, 8))
    skipped = {2, 5}
    edited = [dataclasses.replace(r, t_prev=r.t_prev - 1) if r.index in skipped else r for r in steps]
    path = write(tmp_path / "skip.h5", edited, {"sampler": {"sampler": "ddim", "eta": 0.0}}, schedule)
    finding = found(path)["t-prev"]
    first = steps[2]
    assert (finding.step, finding.t) == (2, first.t)
    assert finding.numbers == {"t": first.t, "t_prev": first.t_prev - 1, "steps": 2, "next_t": steps[3].t}
    assert "2, 5" in finding.sentence
    with open_trace(path) as trace:
        report = check_trace(trace)
    assert report.verdict == "FAIL" and {c.id: c.failing for c in report.checks}["chain.t_prev"] == [2, 5]
    good = write(tmp_path / "good.h5", steps, {"sampler": {"sampler": "ddim", "eta": 0.0}}, schedule)
    assert "t-prev" not in found(good)


# -- the model output does not behave like its declared prediction type ----------------------------------------------


def oracle_outputs(x: np.ndarray, a: float) -> dict[str, np.ndarray]:
    """E[eps | x_t], E[x0 | x_t] and v of the oracle N(MEAN, STD^2 I) at alpha_bar a (tracer/models/analytic.py)."""
    mu = MEAN.numpy().astype(np.float64)
    var = a * STD**2 + 1 - a
    eps = math.sqrt(1 - a) * (x - math.sqrt(a) * mu) / var
    x0 = mu + math.sqrt(a) * STD**2 * (x - math.sqrt(a) * mu) / var
    return {"eps": eps, "x0": x0, "v": math.sqrt(a) * eps - math.sqrt(1 - a) * x0}


def distance(out: np.ndarray, x: np.ndarray) -> float:
    return float(np.sqrt(np.mean((out - x) ** 2)) / np.sqrt(np.mean(x**2)))


def test_a_v_network_sampled_as_eps_and_an_eps_network_sampled_as_v_are_named(tmp_path: Path) -> None:
    schedule = make_schedule("linear", T)
    a = float(schedule.alpha_bar[T - 1])
    for real, told, name in (("v", None, "eps"), ("eps", "v", "model_output")):
        model = Declared(GaussianOracle(schedule, MEAN, STD, prediction=real), told)
        path = sample(tmp_path / f"{real}_as_{told}.h5", SamplerConfig("ddim", steps=T), schedule=schedule, model=model)
        x = row(path, "x_t", 0)
        expected = distance(oracle_outputs(x, a)[real], x)  # the real output's distance from x_t, in closed form
        finding = found(path)["prediction-type"]
        assert (finding.step, finding.tensor) == (0, name)
        assert finding.numbers["distance"] == pytest.approx(expected, rel=1e-5)
        assert (expected > EPS_LIKE_DISTANCE) == (real != "eps")


def test_networks_sampled_as_what_they_predict_show_no_prediction_finding(tmp_path: Path) -> None:
    schedule = make_schedule("linear", T)
    a = float(schedule.alpha_bar[T - 1])
    for real in ("eps", "x0", "v"):
        path = sample(tmp_path / f"{real}.h5", SamplerConfig("ddim", steps=T), schedule=schedule,
                      model=GaussianOracle(schedule, MEAN, STD, prediction=real))
        x = row(path, "x_t", 0)
        assert (distance(oracle_outputs(x, a)[real], x) < EPS_LIKE_DISTANCE) == (real == "eps")  # what the probe relies on
        assert "prediction-type" not in found(path)


# -- x0_pred clipped on a large share of its values -------------------------------------------------------------------


def test_a_model_whose_x0_overshoots_the_range_is_clipped_everywhere(tmp_path: Path) -> None:
    schedule = make_schedule("linear", T)
    # Data N(+-1.5, 0.01^2): E[x0 | x_t] stays within a few 0.01 of +-1.5, outside [-1 - margin, 1 + margin] at every step.
    outside = GaussianOracle(schedule, torch.tensor([1.5, -1.5]), 0.01)
    inside = GaussianOracle(schedule, torch.tensor([0.5, -0.5]), 0.01)
    over = sample(tmp_path / "over.h5", SamplerConfig("ddim", steps=10, clip=True), schedule=schedule, model=outside)
    finding = found(over)["clipping"]
    assert finding.numbers["share"] == 1.0 and finding.numbers["values"] == 10 * 64 * 2 and finding.numbers["first_step"] == 0
    assert finding.numbers["share"] > CLIP_SHARE and "100.0%" in finding.sentence
    fine = sample(tmp_path / "fine.h5", SamplerConfig("ddim", steps=10, clip=True), schedule=schedule, model=inside)
    assert np.max(np.abs(column(fine, "x0_pred_raw"))) < 1 + CLIP_MARGIN
    assert "clipping" not in found(fine)


# -- the first NaN or Inf -------------------------------------------------------------------------------------------------


def test_the_first_nan_is_named_by_step_and_tensor(tmp_path: Path) -> None:
    schedule = make_schedule("linear", 1000)
    steps = list(records(schedule, 8))

    def poisoned(r: StepRecord) -> StepRecord:
        if r.index == 3:
            x0 = r.x0_pred.clone()
            x0[0, 0, 1, 2] = float("nan")
            return dataclasses.replace(r, x0_pred=x0)
        if r.index == 5:
            eps = r.eps.clone()
            eps[1] = float("inf")
            return dataclasses.replace(r, eps=eps)
        return r

    path = write(tmp_path / "nan.h5", [poisoned(r) for r in steps], {}, schedule)
    finding = found(path)["non-finite"]
    assert (finding.step, finding.t, finding.tensor) == (3, steps[3].t, "x0_pred")
    assert finding.numbers == {"nan": 1, "inf": 0, "values": 3 * 16}
    clean = write(tmp_path / "clean.h5", steps, {}, schedule)
    assert "non-finite" not in found(clean)


def test_a_non_finite_scalar_is_found_before_the_tensors_of_its_step(tmp_path: Path) -> None:
    schedule = make_schedule("linear", 1000)
    steps = [dataclasses.replace(r, sigma=float("inf")) if r.index == 4 else r for r in records(schedule, 6)]
    finding = found(write(tmp_path / "inf.h5", steps, {}, schedule))["non-finite"]
    assert (finding.step, finding.tensor, finding.numbers["value"]) == (4, "sigma", math.inf)


def test_dpm_solvers_h_is_infinite_by_definition_at_a_last_step_to_sigma_0_and_not_a_finding(tmp_path: Path) -> None:
    path = sample(tmp_path / "dpmpp.h5", SamplerConfig("dpmpp_2m", steps=8), batch=8)
    h, sigma_next = column(path, "h"), column(path, "sigma_next")
    assert h[-1] == math.inf and sigma_next[-1] == 0.0  # h = log(sigma_t / sigma_next) = log(sigma_t / 0)
    assert "non-finite" not in found(path)


def test_a_scalar_nan_at_every_step_is_not_recorded_rather_than_damaged(tmp_path: Path) -> None:
    schedule = make_schedule("linear", 1000)
    unknown = [dataclasses.replace(r, sigma=math.nan) for r in records(schedule, 6)]  # as diffusers' recorders write "not said"
    assert "non-finite" not in found(write(tmp_path / "unknown.h5", unknown, {}, schedule))
    once = [dataclasses.replace(r, sigma=math.nan) if r.index == 2 else r for r in records(schedule, 6)]
    finding = found(write(tmp_path / "once.h5", once, {}, schedule))["non-finite"]
    assert (finding.step, finding.tensor) == (2, "sigma") and math.isnan(finding.numbers["value"])


# -- a guidance scale other than the declared one -----------------------------------------------------------------------


def guided(schedule: Schedule, scale: float, steps: int = 6) -> list[StepRecord]:
    """Records whose eps = eps_uncond + scale (eps_cond - eps_uncond) (Ho and Salimans 2022, Eq. 6), exactly."""
    g = torch.Generator().manual_seed(3)
    out = []
    for r in records(schedule, steps):
        delta = torch.randn(r.eps.shape, generator=g)
        uncond = r.eps - scale * delta
        out.append(dataclasses.replace(r, eps_uncond=uncond, eps_cond=uncond + delta))
    return out


def test_a_guidance_scale_other_than_the_declared_one_is_found(tmp_path: Path) -> None:
    schedule = make_schedule("linear", 1000)
    declared = {"sampler": {"sampler": "ddim", "eta": 0.0, "guidance": 5.0}}
    path = write(tmp_path / "s2.h5", guided(schedule, 2.0), declared, schedule)
    finding = found(path)["guidance-scale"]
    assert finding.numbers["implied"] == pytest.approx(2.0, rel=1e-5) and finding.numbers["declared"] == 5.0
    assert (finding.step, finding.numbers["steps"]) == (0, 6) and "not the declared 5" in finding.sentence
    with open_trace(path) as trace:
        assert check_trace(trace).verdict == "FAIL"  # guidance.combine fails, as before: the finding says why
    same = write(tmp_path / "s5.h5", guided(schedule, 5.0), declared, schedule)
    assert "guidance-scale" not in found(same)


def test_an_undeclared_scale_is_inferred_and_a_real_guided_run_shows_none(tmp_path: Path) -> None:
    schedule = make_schedule("linear", 1000)
    undeclared = found(write(tmp_path / "free.h5", guided(schedule, 3.0), {"sampler": {"sampler": "ddim", "eta": 0.0}}, schedule))
    assert undeclared["guidance-scale"].numbers["implied"] == pytest.approx(3.0, rel=1e-5)
    assert undeclared["guidance-scale"].numbers["declared"] is None and "declares no guidance scale" in undeclared["guidance-scale"].sentence
    small = make_schedule("linear", T)
    classes = GaussianOracle(small, torch.tensor([[0.6, 0.4], [-0.5, -0.2]]), 0.3, per_class=True)
    path = guided_run(tmp_path / "cfg3.h5", small, classes)
    assert "guidance-scale" not in found(path)


def guided_run(path: Path, schedule: Schedule, model: nn.Module) -> Path:
    generator = torch.Generator().manual_seed(0)
    x_T = torch.randn(4, 2, generator=generator)  # noqa: N806
    record_run(model, schedule, SamplerConfig("ddim", steps=10, guidance=3.0), x_T=x_T, labels=torch.tensor([0, 1, 0, 1]),
               generator=generator, out=path, overwrite=True, progress=False)
    return path


# -- noisescope check: the findings after the table, in --json, and no verdict changed -------------------------------------


def test_check_lists_findings_after_its_table_and_in_json_without_changing_the_verdict(tmp_path: Path,
                                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    schedule = make_schedule("seed-report", 300)
    path = sample(tmp_path / "seed.h5", SamplerConfig("ddim", steps=10, preset="seed-report"), schedule=schedule)
    code = main(["check", str(path)])
    text = capsys.readouterr().out
    # the report's ending at alpha_bar_0 is NOISE LEFT (exit 4) whatever the findings say: they change no verdict
    assert code == 4 and text.rstrip().splitlines()[-1].startswith("NOISE LEFT")
    table_end = text.index("findings:")
    assert text.index("  check ") < table_end < text.index("NOISE LEFT:")
    assert "  noise left at the end: the last step, step 9 (t " in text
    code = main(["check", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 4 and report["verdict"] == "NOISE LEFT"
    kinds = {f["kind"]: f for f in report["findings"]}
    assert kinds["noise-left"]["numbers"]["alpha_bar"] == float(schedule.alpha_bar[0]) and kinds["noise-left"]["step"] == 9
    with open_trace(path) as trace:
        report_obj = check_trace(trace)
    assert report_dict(report_obj)["findings"] == report["findings"] and "findings:" in format_report(report_obj)


def test_findings_read_each_row_of_each_tensor_at_most_twice(tmp_path: Path) -> None:
    """Bounded memory and time: one pass over the rows (and x_t of the probed steps again), never the whole trace at once."""
    path = sample(tmp_path / "ddim.h5", SamplerConfig("ddim", steps=T), batch=8)
    reads: dict[tuple[str, int], int] = {}
    with open_trace(path) as trace:
        original = trace.tensor

        def counted(name: str, i: int, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            reads[(name, i)] = reads.get((name, i), 0) + 1
            return original(name, i, *args, **kwargs)

        trace.tensor = counted  # type: ignore[method-assign]
        names = trace.tensor_names()
        result = trace_findings(trace)
    assert {f.kind for f in result} == {"terminal-snr"}
    assert len(reads) == T * len(names) and max(reads.values()) <= 2  # every row of every tensor, each once or twice


def test_the_docs_describe_every_kind_of_finding() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "equations.md").read_text()
    section = text[text.index("### Findings"):text.index("## What is checked")]
    for kind in KINDS:
        assert f"`{kind}`" in section and TITLES[kind] in section


def test_a_pipeline_callbacks_trace_finds_its_chain_and_only_the_start_it_recorded(tmp_path: Path) -> None:
    """diffusers' PipelineRecorder writes sigma as NaN at every step (not said) and, without x_T, starts at step 1."""
    diffusers = pytest.importorskip("diffusers")
    from tests.equations.test_diffusers_tracing import pipeline_loop
    from tests.tiny_unet import tiny_unet
    from tracer.integrations.diffusers import PipelineRecorder

    unet = tiny_unet()
    latents = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    kinds = {}
    for with_x_T in (True, False):  # noqa: N806
        path = tmp_path / f"cb{with_x_T}.h5"
        with PipelineRecorder(path, x_T=latents if with_x_T else None) as recorder:
            pipeline_loop(unet, diffusers.DDIMScheduler(timestep_spacing="linspace"), latents, 10, recorder)
        assert np.isnan(column(path, "sigma")).all()
        kinds[with_x_T] = set(found(path))
    assert kinds[True] == {"terminal-snr", "t-prev"}  # x_T is the pure noise it was given; the linspace chain
    assert kinds[False] == {"t-prev"}  # its first recorded step is not the start: nothing said about x_T
