"""What the commands that read a whole trace hold of it at once: one step of one tensor a read (issue 15, point 4).

``noisescope check``, ``inspect``, ``recover`` and ``diff`` walk every step; each read of a step
tensor must return one row (tests/trace/reads.py counts the bytes every h5py read returns), so memory
does not grow with the trace's length. The checks' row cache (tracer/equations/context.py,
``TraceView``) keeps only the rows near the row read last, whatever the order of the reads, and a
check's report does not depend on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trace.reads import recorded_reads
from tracer.check import check_trace, report_dict
from tracer.cli.inspect import step_statistics
from tracer.diff import diff_traces
from tracer.equations import context
from tracer.equations.context import TraceView
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers.config import SamplerConfig
from tracer.samplers.loop import initial_noise
from tracer.schedules import make_schedule
from tracer.trace.reader import open_trace
from tracer.trace.recover import recover

T = 30


def sample(path: Path, config: SamplerConfig, seed: int = 0) -> Path:
    """A trace of 1x8x8 images (batch 3) from the exact Gaussian oracle (data N(mu, 0.3^2 I), mu a ring)."""
    schedule = make_schedule("linear", T)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="ij")
    mean = torch.where((xx**2 + yy**2 - 0.5).abs() < 0.25, 0.9, -0.9).unsqueeze(0).to(torch.float64)
    generator = torch.Generator().manual_seed(seed)
    x_T = initial_noise((3, 1, 8, 8), generator=generator)  # noqa: N806
    record_run(GaussianOracle(schedule, mean, 0.3), schedule, config, x_T=x_T, labels=None, generator=generator, out=path, progress=False)
    return path


@pytest.fixture(scope="module")
def ddpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DDPM over T = 30 steps: five tensors a step (x_t, eps, x0_pred, x0_pred_raw, noise)."""
    return sample(tmp_path_factory.mktemp("bounded") / "ddpm.h5", SamplerConfig(sampler="ddpm"))


def every_row(path: Path) -> set[tuple[str, int]]:
    with open_trace(path) as trace:
        return {(name, i) for name in trace.tensor_names() for i in range(trace.num_steps)}


def test_check_reads_every_row_of_every_tensor_one_row_a_read(ddpm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_trace(ddpm) as trace, recorded_reads(monkeypatch) as reads:
        report = check_trace(trace)
    assert report.verdict == "PASS"
    assert reads.tensors and reads.most_rows == 1.0 and all(r.row is not None for r in reads.tensors)
    assert set(reads.per_row()) == every_row(ddpm)  # the verdict covers every committed row


def test_inspect_and_recover_read_one_row_at_a_time(ddpm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_trace(ddpm) as trace, recorded_reads(monkeypatch) as reads:
        statistics = step_statistics(trace)
    assert len(statistics) == T and reads.most_rows == 1.0 and all(r.row is not None for r in reads.tensors)
    assert set(reads.per_row()) == {(name, i) for name in ("x_t", "eps", "x0_pred") for i in range(T)}
    with recorded_reads(monkeypatch) as reads:
        out, kept = recover(ddpm, tmp_path / "copy.h5")
    assert kept == {"steps": T} and reads.most_rows == 1.0
    assert reads.per_row() == {key: 1 for key in every_row(ddpm)}  # each row read once, written, let go


def test_diff_reads_one_row_of_each_trace_at_a_time(ddpm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = sample(tmp_path / "ddpm_seed1.h5", SamplerConfig(sampler="ddpm"), seed=1)
    with open_trace(ddpm) as a, open_trace(other) as b, recorded_reads(monkeypatch) as reads:
        result = diff_traces(a, b)
    assert result.lined_up_by == "step" and len(result.pairs) == T and not result.agree
    assert reads.most_rows == 1.0 and all(r.row is not None for r in reads.tensors)


def test_a_trace_view_keeps_only_the_rows_near_the_last_one_read(ddpm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scrubbing backwards (the viewer's equations panel keeps one view per trace) used to keep every row visited."""
    reach = context.CACHE_ROWS
    with open_trace(ddpm) as trace:
        names = trace.tensor_names()
        view = TraceView(trace)
        with recorded_reads(monkeypatch) as reads:
            for i in range(T - 1, -1, -1):
                for name in names:
                    assert np.array_equal(view.tensor(name, i), trace.tensor(name, i, dtype=np.float64))
            assert reads.per_row() == {(name, i): 2 for name in names for i in range(T)}  # the view's read and ours
            reads.clear()
            for i in range(reach + 1):  # near the last row read (0): kept
                for name in names:
                    view.tensor(name, i)
            assert not reads.tensors
            for i in range(reach + 1, T):  # every other row was let go on the way down
                view.tensor("x_t", i)
            assert reads.per_row() == {("x_t", i): 1 for i in range(reach + 1, T)}


def test_the_report_does_not_depend_on_the_row_cache(ddpm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_trace(ddpm) as trace:
        bounded = report_dict(check_trace(trace))
        monkeypatch.setattr(context, "CACHE_ROWS", 10**9)  # every row kept
        unbounded = report_dict(check_trace(trace))
    assert bounded == unbounded and bounded["verdict"] == "PASS"
