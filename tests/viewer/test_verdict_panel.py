"""The viewer's verdicts match check's: an equation nobody verified reads 'not checked', never 'holds'.

Traces recorded without a sampler name are identified as check identifies them, and the
code panel of a trace that noisescope's samplers did not make says it shows noisescope's
reference implementation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trace.synthetic import records
from tests.viewer.test_app import no_failures, run_app, texts
from tracer.schedules import make_schedule
from tracer.trace.sampling import record_sampling
from viewer.describe import CODE_PANEL_NOTE
from viewer.paths import ROOTS_ENV

SCHEDULE = make_schedule("linear", 1000)


def open_page(root: Path, name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ROOTS_ENV, str(root))
    at = run_app(view="playback", trace=name)
    no_failures(at)
    return at


def captions(at) -> list[str]:
    return [c.value for c in at.caption]


def test_an_unnamed_ddim_loop_is_identified_and_its_step_equation_judged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record_sampling(records(SCHEDULE, 10), tmp_path / "loop.h5", schedule=SCHEDULE, config={}, planned=10, labels=None)
    at = open_page(tmp_path, "loop.h5", monkeypatch)
    assert CODE_PANEL_NOTE in captions(at)
    assert any("identified as ddim" in c for c in captions(at))
    badges = [t for t in texts(at) if "-badge[" in t]
    assert any(t.startswith(":green-badge[holds]") for t in badges) and not any("not checked]" in t and "**" in t for t in badges)
    assert any(e.value.strip("$\n").startswith("x_{8} =") for e in at.latex)  # the DDIM step with its values, t_prev 8


def test_undeclared_guidance_and_unknown_samplers_read_not_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record_sampling(records(SCHEDULE, 6, guided=True), tmp_path / "guided.h5", schedule=SCHEDULE, config={}, planned=6, labels=None)
    record_sampling(records(SCHEDULE, 6), tmp_path / "euler.h5", schedule=SCHEDULE, config={"sampler": {"sampler": "euler"}},
                    planned=6, labels=None)
    at = open_page(tmp_path, "guided.h5", monkeypatch)
    unchecked = [t for t in texts(at) if t.startswith(":gray-badge[not checked] **")]
    assert len(unchecked) == 1 and "guidance" in unchecked[0] and "no guidance scale" in unchecked[0]
    at = open_page(tmp_path, "euler.h5", monkeypatch)
    unchecked = [t for t in texts(at) if t.startswith(":gray-badge[not checked] **")]
    assert len(unchecked) == 1 and "step update" in unchecked[0] and "euler" in unchecked[0]


def test_a_trace_that_references_another_file_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import h5py

    outside = tmp_path.parent / f"{tmp_path.name}-outside.h5"
    record_sampling(records(SCHEDULE, 4), outside, schedule=SCHEDULE, config={}, planned=4, labels=None)
    path = tmp_path / "linked.h5"
    record_sampling(records(SCHEDULE, 4), path, schedule=SCHEDULE, config={}, planned=4, labels=None)
    with h5py.File(path, "r+") as f:  # a link to a file outside the viewer's roots
        f["steps/eps_cond"] = h5py.ExternalLink(str(outside), "/steps/eps")
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    at = run_app(view="playback", trace="linked.h5")
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "another file" in errors[0] and "\n" not in errors[0]
