"""What to record (tracer/trace/choice.py): --record, --every, --samples and --dtype, from the writer through the reader to
``noisescope check``.

The reference for every reduced trace is the full trace of the same run (same model, x_T and seed: the sampler's
records are bit for bit the same), so each reduced trace must hold exactly the full trace's values at the rows,
tensors and samples it keeps; and check must verify what those tensors allow, list the rest, and never say PASS for
what it could not verify.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.trace.synthetic import records
from tracer.check import check_trace, format_report, report_dict
from tracer.config import ConfigError
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers.config import SamplerConfig
from tracer.schedules import make_schedule
from tracer.trace import schema
from tracer.trace.choice import EVERYTHING, RECORDABLE, RecordChoice, parse_samples
from tracer.trace.reader import TraceError, open_trace
from tracer.trace.sampling import record_sampling

T, B, SHAPE = 50, 6, (1, 4, 4)
SCHEDULE = make_schedule("linear", T)
ORACLE = GaussianOracle(SCHEDULE, torch.linspace(-0.8, 0.8, 16).reshape(SHAPE), 0.3)


def run(path: Path, sampler: str, choice: RecordChoice = EVERYTHING, dtype: str = "float32", **options: object) -> Path:
    """One run of ``sampler`` on the oracle from the x_T of seed 0, recorded with ``choice``."""
    generator = torch.Generator().manual_seed(0)
    x_T = torch.randn(B, *SHAPE, generator=generator)  # noqa: N806
    labels = torch.arange(B) % 3
    record_run(ORACLE, SCHEDULE, SamplerConfig(sampler, **options), x_T=x_T, labels=labels, generator=generator, out=path,  # type: ignore[arg-type]
               tensor_dtype=dtype, progress=False, choice=choice)
    return path


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("full")
    return {"ddpm": run(root / "ddpm.h5", "ddpm"), "ddim": run(root / "ddim.h5", "ddim", steps=20, eta=1.0)}


def arrays(path: Path) -> dict[str, np.ndarray]:
    """Every step dataset and root dataset of a trace, read through the reader."""
    with open_trace(path) as trace:
        out = {name: np.stack([trace.tensor(name, i, dtype=np.float64) for i in range(trace.num_steps)])
               for name in trace.tensor_names()}
        out.update({name: np.asarray(values) for name, values in trace.scalars().items()})
        out.update({name: np.asarray(trace.final(name)) for name in (schema.SAMPLES, schema.LABELS)})
    return out


# -- the choice itself ---------------------------------------------------------------------------------------------


def test_the_default_records_everything_and_writes_the_trace_as_before(tmp_path: Path, full: dict[str, Path]) -> None:
    assert RecordChoice() == EVERYTHING and EVERYTHING.everything and RecordChoice.from_cli().everything
    with open_trace(full["ddpm"]) as trace:
        assert trace.recorded is None and schema.ATTR_RECORD not in trace.attrs and "record" not in trace.config
        assert schema.STEP_INDEX not in trace.field_names() and schema.X_PREV not in trace.field_names()
        assert list(trace.step_indices()) == list(range(trace.num_steps)) and trace.sample_indices() == range(B)
        assert trace.planned() == trace.num_steps == T


def test_sample_ranges_follow_pythons_slices_and_refuse_what_leaves_the_batch() -> None:
    for text in ("0:4", "2:", ":3", "-2:", "::2", "1:6:2", "3", "-1", "0:6"):
        choice = RecordChoice.from_cli(samples=text)
        start, stop, step = choice.samples  # type: ignore[misc]
        expected = range(B)[int(text)] if ":" not in text else None
        kept = list(choice.rows(B))
        assert kept == ([expected] if expected is not None else list(range(B))[slice(start, stop, step)]), text
    for text, fragment in (("7:9", "outside the batch of 6"), ("0:7", "outside the batch of 6"), ("6", "outside the batch of 6"),
                           ("-7:", "outside the batch of 6"), ("3:3", "keeps no sample"), ("4:2", "keeps no sample")):
        with pytest.raises(ConfigError, match=fragment):
            RecordChoice.from_cli(samples=text).check_batch(B)
    for text in ("a:b", "1:2:0", "1:2:-1", "", "1;2", "1.5", "1:2:3:4"):
        with pytest.raises(ConfigError, match="--samples"):
            parse_samples(text)


def test_bad_tensor_names_and_steps_are_refused_in_one_line() -> None:
    for record, fragment in (("x_t,eps_pred", "unknown tensor 'eps_pred'"), ("", "--record is empty"), (",", "--record is empty"),
                             ("x_t,x_t", "twice")):
        with pytest.raises(ConfigError, match=fragment) as caught:
            RecordChoice.from_cli(record=record)
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        RecordChoice.from_cli(record="bogus")
    assert all(name in str(caught.value) for name in RECORDABLE)  # the valid names are listed
    for every in ("0", "-3", "two", "1.5"):
        with pytest.raises(ConfigError, match="--every"):
            RecordChoice.from_cli(every=every)


def test_kept_steps_are_every_kth_and_the_last() -> None:
    for planned in range(1, 40):
        for every in (1, 2, 3, 5, 10, 50):
            choice = RecordChoice(every=every)
            kept = [i for i in range(planned) if choice.keeps_step(i, planned)]
            assert kept == sorted({*range(0, planned, every), planned - 1})
            assert choice.kept_steps(planned) == len(kept)


# -- writer -> reader, each option -------------------------------------------------------------------------------


def test_record_keeps_the_named_tensors_with_the_full_traces_values(tmp_path: Path, full: dict[str, Path]) -> None:
    path = run(tmp_path / "x0.h5", "ddpm", RecordChoice.from_cli("x0_pred,eps"))
    got, ref = arrays(path), arrays(full["ddpm"])
    with open_trace(path) as trace:
        assert set(trace.tensor_names()) == {"x_t", "x0_pred", "eps"}  # x_t always
        assert trace.recorded is not None and trace.recorded.left_out == ("noise", "x0_pred_raw")
        assert json.loads(trace.attrs[schema.ATTR_RECORD]) == trace.config["record"]
    for name, values in got.items():
        np.testing.assert_array_equal(values, ref[name], err_msg=name)
    assert set(ref) - set(got) == {"noise", "x0_pred_raw"}


def test_every_k_keeps_those_steps_their_outputs_and_their_indices(tmp_path: Path, full: dict[str, Path]) -> None:
    path = run(tmp_path / "every.h5", "ddpm", RecordChoice(every=7))
    got, ref = arrays(path), arrays(full["ddpm"])
    kept = sorted({*range(0, T, 7), T - 1})  # 49 = 7 x 7: the last is a multiple here
    np.testing.assert_array_equal(got[schema.STEP_INDEX], kept)
    for name in ref:
        if name not in (schema.SAMPLES, schema.LABELS):
            np.testing.assert_array_equal(got[name], ref[name][kept], err_msg=name)
    # x_prev of a kept step is its output: x_t of the step after it in the full trace, the samples after the last.
    following = np.concatenate([ref["x_t"], ref[schema.SAMPLES][None]])[[k + 1 for k in kept]]
    np.testing.assert_array_equal(got[schema.X_PREV], following)
    np.testing.assert_array_equal(got[schema.SAMPLES], ref[schema.SAMPLES])
    with open_trace(path) as trace:
        assert trace.planned() == len(kept) and trace.recorded is not None and trace.recorded.steps == T


def test_the_last_step_is_kept_even_where_the_plan_does_not_say_which_it_is(tmp_path: Path) -> None:
    for planned in (0, 5):  # no plan; a plan shorter than the run
        path = tmp_path / f"plan{planned}.h5"
        record_sampling(records(SCHEDULE, 12, batch=2), path, schedule=SCHEDULE, config={}, planned=planned, labels=None,
                        choice=RecordChoice(every=5))
        with open_trace(path) as trace:
            expected = [0, 5, 10, 11] if planned == 0 else [0, 4, 5, 10, 11]
            assert list(trace.step_indices()) == expected and trace.status == "complete"


def test_a_run_that_fails_keeps_every_kept_step_committed_before(tmp_path: Path) -> None:
    def broken():
        for k, record in enumerate(records(SCHEDULE, 12, batch=2)):
            if k == 8:
                raise RuntimeError("the sampler died")
            yield record

    path = tmp_path / "broken.h5"
    with pytest.raises(RuntimeError):
        record_sampling(broken(), path, schedule=SCHEDULE, config={}, planned=12, labels=None, choice=RecordChoice(every=3))
    with open_trace(path) as trace:
        assert trace.status == "failed" and list(trace.step_indices()) == [0, 3, 6]


def test_samples_keep_a_slice_of_the_batch_with_its_labels(tmp_path: Path, full: dict[str, Path]) -> None:
    path = run(tmp_path / "slice.h5", "ddpm", RecordChoice.from_cli(samples="1:6:2"))
    got, ref = arrays(path), arrays(full["ddpm"])
    rows = [1, 3, 5]
    for name, values in ref.items():
        if values.ndim >= 2 and name != schema.LABELS:
            np.testing.assert_array_equal(got[name], values[:, rows] if name != schema.SAMPLES else values[rows], err_msg=name)
        elif name not in (schema.LABELS,):
            np.testing.assert_array_equal(got[name], values, err_msg=name)  # the scalars are the run's
    np.testing.assert_array_equal(got[schema.LABELS], ref[schema.LABELS][rows])
    with open_trace(path) as trace:
        assert list(trace.sample_indices()) == rows and trace.batch_size == 3 and trace.run_batch == B


def test_float16_halves_the_tensor_bytes_and_rounds_each_value_once(tmp_path: Path, full: dict[str, Path]) -> None:
    half = run(tmp_path / "half.h5", "ddpm", dtype="float16")
    sizes = {}
    for path in (full["ddpm"], half):
        with h5py.File(path, "r") as f:
            sizes[path] = sum(f[schema.STEPS][name].id.get_storage_size() for name in f[schema.STEPS]
                              if f[schema.STEPS][name].ndim > 1)
    assert sizes[half] * 2 == sizes[full["ddpm"]] > 0
    got, ref = arrays(half), arrays(full["ddpm"])
    np.testing.assert_array_equal(got["x_t"], ref["x_t"].astype(np.float16).astype(np.float64))


def test_the_reader_refuses_a_record_attribute_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    record_sampling(records(SCHEDULE, 4, batch=2), path, schedule=SCHEDULE, config={}, planned=4, labels=None,
                    choice=RecordChoice(every=2))
    for bad in ('{"every": 2, "batch": "two"}', "[1, 2]", '{"every": 0, "batch": 2}', '{"every": 1, "batch": 2, "samples": [0, 5, 1]}'):
        copy = tmp_path / "copy.h5"
        shutil.copy(path, copy)
        with h5py.File(copy, "r+") as f:
            f.attrs[schema.ATTR_RECORD] = bad
        with pytest.raises(TraceError, match="record attribute") as caught:
            open_trace(copy)
        assert "\n" not in str(caught.value)


# -- check: what the recorded tensors allow, and the rest listed -----------------------------------------------------


def test_a_full_trace_passes_and_a_slice_of_its_batch_is_judged_the_same(tmp_path: Path, full: dict[str, Path]) -> None:
    for sampler, options in (("ddpm", {}), ("ddim", {"steps": 20, "eta": 1.0})):
        with open_trace(full[sampler]) as trace:
            reference = check_trace(trace)
        assert reference.verdict == "PASS" and not reference.unchecked, format_report(reference)
        path = run(tmp_path / f"{sampler}_slice.h5", sampler, RecordChoice.from_cli(samples="2:5"), **options)
        with open_trace(path) as trace:
            report = check_trace(trace)
        assert report.verdict == "PASS" and not report.unchecked, format_report(report)  # nothing of the math is lost
        assert [(c.id, c.checked) for c in report.checks] == [(c.id, c.checked) for c in reference.checks]


def test_x_t_alone_checks_the_scalars_and_lists_each_equation_it_cannot(tmp_path: Path) -> None:
    path = run(tmp_path / "x_t.h5", "ddim", RecordChoice.from_cli("x_t"), steps=20, eta=1.0)
    with open_trace(path) as trace:
        report = check_trace(trace)
    assert report.verdict == "INCOMPLETE" and report.exit_code == 3 and not report.failed
    ran = {c.id for c in report.checks if c.checked}
    assert {"ddim.sigma", "chain.t_prev", "schedule.alpha_bar_t"} <= ran and not ran & {"ddim.step", "x0_from_eps"}
    why = dict(report.unchecked)
    # DDIM's update needs x0_pred, eps and noise (Song et al. 2021, Eq. 12), x0_from_eps eps and x0_pred (Eq. 9): left out.
    assert "steps/x0_pred, steps/eps, steps/noise" in why["the step update"] and "left out by --record" in why["the step update"]
    assert why["x0_from_eps"] == "needs steps/eps, steps/x0_pred, not recorded (left out by --record)"
    text = format_report(report)
    assert "not checked:" in text and "INCOMPLETE" in text and "\nPASS" not in text
    assert report_dict(report)["recorded"].startswith("tensors x_t; every step")


def test_every_k_with_x_prev_still_checks_each_kept_update_and_a_corrupted_one_fails(tmp_path: Path) -> None:
    path = run(tmp_path / "every5.h5", "ddpm", RecordChoice(every=5))
    with open_trace(path) as trace:
        report = check_trace(trace)
        rows, index = trace.num_steps, list(trace.step_indices())
    assert index == [*range(0, T, 5), T - 1]
    checks = {c.id: c for c in report.checks}
    for equation in ("ddpm.step", "ddpm.posterior_mean", "x0_from_eps", "x0.clip", "ddpm.posterior_variance"):
        assert checks[equation].checked == rows and checks[equation].passed, equation  # every kept step, on its own
    # The chains are judged only between consecutive steps: here from the last kept step to the clean end.
    assert checks["chain.t_prev"].checked == checks["chain.x_t"].checked == 1
    assert report.verdict == "INCOMPLETE" and [what for what, _ in report.unchecked] == ["the steps not recorded"]
    assert "every 5th step and the last (--every 5)" in dict(report.unchecked)["the steps not recorded"]
    # A kept step whose output is off fails, named by the run's step.
    broken = tmp_path / "broken.h5"
    shutil.copy(path, broken)
    with h5py.File(broken, "r+") as f:
        f[schema.STEPS][schema.X_PREV][3] += 0.05
    with open_trace(broken) as trace:
        failed = check_trace(trace)
    assert failed.verdict == "FAIL"
    step = {c.id: c for c in failed.checks}["ddpm.step"]
    assert step.failing == [3] and failed.step_of(3) == 15
    assert "   15 " in format_report(failed).split("ddpm.step fails at 1 of")[1]
    (as_json,) = [c for c in report_dict(failed)["checks"] if c["id"] == "ddpm.step"]
    assert as_json["steps"][3]["index"] == 15 and as_json["steps"][3]["step"] == 3


def test_every_k_without_the_noise_lists_the_update_and_the_skipped_steps(tmp_path: Path) -> None:
    path = run(tmp_path / "lean.h5", "ddpm", RecordChoice.from_cli("x_t,x0_pred", every=10))
    with open_trace(path) as trace:
        report = check_trace(trace)
        assert set(trace.tensor_names()) == {"x_t", "x0_pred", schema.X_PREV}
    listed = [what for what, _ in report.unchecked]
    assert {"the step update", "the steps not recorded", "x0_from_eps", "x0.clip", "ddpm.posterior_mean"} <= set(listed)
    assert report.verdict == "INCOMPLETE" and not report.failed


# -- the command line: sample, inspect, check --------------------------------------------------------------------


def test_sample_inspect_and_check_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tracer.cli import main

    run_dir, out = tmp_path / "run", tmp_path / "small.h5"
    assert main(["train", "--dataset", "moons", "--steps", "5", "--timesteps", "50", "--channels", "8,8", "--snapshot-every", "0",
                 "--out", str(run_dir), "--quiet"]) == 0
    assert main(["sample", "--checkpoint", str(run_dir), "--sampler", "ddpm", "--batch", "8", "--record", "x_t,x0_pred",
                 "--every", "10", "--samples", "2:6", "--dtype", "float16", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "recorded  tensors x0_pred, x_prev, x_t (--record x_t,x0_pred; x_t always, x_prev with --every)" in text
    assert "left out: eps, noise, x0_pred_raw" in text
    assert "every 10th step and the last: 6 of 50 steps (steps 0, 10, 20, 30, 40, 49)" in text
    assert "samples 2:6 of a batch of 8: 4 kept (samples 2, 3, 4, 5)" in text and "tensors stored as float16" in text
    assert main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["record"] == {"tensors": ["x_t", "x0_pred"], "every": 10, "samples": [2, 6, 1], "batch": 8, "steps": 50,
                              "left_out": ["eps", "noise", "x0_pred_raw"]}
    assert info["sample_indices"] == [2, 3, 4, 5] and info["step_indices"] == [0, 10, 20, 30, 40, 49]
    assert [row["step"] for row in info["steps"]] == info["step_indices"]
    assert main(["check", str(out)]) == 3  # INCOMPLETE
    report = capsys.readouterr().out
    assert "recorded: tensors x_t, x0_pred; every 10th step and the last" in report and "left out by --record" in report
