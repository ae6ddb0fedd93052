"""The findings of a trace under its header on the playback page (viewer/panels/findings.py), as check lists them.

Computed once per trace file (viewer/loaders.py ``findings``, st.cache_data on path, inode and rows): a second
run of the page does not compute them again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tracer.equations
from tests.viewer.test_app import no_failures, run_app, texts
from tracer.equations import trace_findings
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers.config import SamplerConfig
from tracer.schedules import Schedule, make_schedule
from tracer.trace.reader import open_trace
from viewer.paths import ROOTS_ENV

T = 40


def run(path: Path, schedule: Schedule, config: SamplerConfig, prediction: str = "eps") -> Path:
    generator = torch.Generator().manual_seed(0)
    model = GaussianOracle(schedule, torch.tensor([0.5, -0.3]), 0.4, prediction=prediction)
    record_run(model, schedule, config, x_T=torch.randn(32, 2, generator=generator), labels=None, generator=generator, out=path,
               progress=False)
    return path


def test_the_page_lists_the_traces_findings_under_its_header_and_computes_them_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = run(tmp_path / "seed.h5", make_schedule("seed-report", 300), SamplerConfig("ddim", steps=10, preset="seed-report"))
    zero = make_schedule("linear", T, zero_terminal_snr=True)
    clean = run(tmp_path / "clean.h5", zero, SamplerConfig("ddim", steps=T), prediction="v")  # ends at 1, starts at 0, predicts v
    with open_trace(seed) as trace:
        expected = trace_findings(trace)
    with open_trace(clean) as trace:
        assert trace_findings(trace) == []
    assert "noise-left" in {f.kind for f in expected}
    calls: list[str] = []

    def counted(trace):  # noqa: ANN001, ANN202
        calls.append(Path(trace.path).name)
        return trace_findings(trace)

    monkeypatch.setattr(tracer.equations, "trace_findings", counted)
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    at = run_app(view="playback", trace="seed.h5")
    no_failures(at)
    shown = [text for text in texts(at) if text.startswith(":orange-badge[")]
    assert len(shown) == len(expected)
    for finding, text in zip(expected, shown):
        assert text.startswith(f":orange-badge[{finding.title}] ") and finding.sentence in text
    assert any(text.startswith("**Findings**") for text in texts(at))
    assert texts(at).index(shown[0]) < texts(at).index(next(t for t in texts(at) if t.startswith("**Step ")))  # above the step
    at.run()  # a rerun of the same page reads the cached findings
    no_failures(at)
    assert calls == ["seed.h5"]
    at = run_app(view="playback", trace="clean.h5")
    no_failures(at)
    assert not [text for text in texts(at) if text.startswith(":orange-badge[") or text.startswith("**Findings**")]


def test_a_trace_being_written_or_a_registry_without_findings_computes_none(tmp_path: Path) -> None:
    from viewer import loaders
    from viewer.panels.findings import trace_findings as panel_findings

    path = run(tmp_path / "seed.h5", make_schedule("seed-report", 300), SamplerConfig("ddim", steps=10, preset="seed-report"))
    handle = loaders.TraceHandle(open_trace(path))
    info = loaders.info(handle)
    assert [f.kind for f in panel_findings(tracer.equations, info)] == [f.kind for f in trace_findings(handle.trace)] != []
    running = loaders.TraceInfo(**{**info.__dict__, "status": "running"})
    assert panel_findings(tracer.equations, running) == []  # not while the writer may still add rows
    assert panel_findings(object(), info) == [] and panel_findings(None, info) == []
    handle.trace.close()
