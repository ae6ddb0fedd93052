"""The viewer on traces that record less by choice (noisescope sample --record, --every, --samples; tracer/trace/choice.py):
it shows what is there, names steps and samples as the run numbered them, and says what is missing, never failing.

Three traces of one DDPM run on 1x8x8 images (an exact Gaussian oracle): x_t only; every 10th step; samples 3:7
of 12; and a 2-D one of x_t only. Expected values are read from the traces themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.viewer.conftest import BATCH, T, image_means, no_failures, player_step
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers.config import SamplerConfig
from tracer.samplers.loop import initial_noise
from tracer.schedules import make_schedule
from tracer.trace.choice import RecordChoice
from tracer.trace.reader import open_trace
from viewer.panels.playback import DRAWN_WHOLE
from viewer.paths import ROOTS_ENV

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "viewer" / "app.py"


@dataclass(frozen=True)
class Reduced:
    root: Path
    x_t_only: Path
    every: Path
    slice: Path
    points_x_t_only: Path


def _record(path: Path, shape: tuple[int, ...], choice: RecordChoice, labels: torch.Tensor | None = None) -> Path:
    schedule = make_schedule("linear", T)
    mean = image_means(1)[0] if len(shape) == 3 else torch.tensor([0.5, -0.3])
    model = GaussianOracle(schedule, mean, 0.3)
    generator = torch.Generator().manual_seed(0)
    x_T = initial_noise((BATCH, *shape), generator=generator)  # noqa: N806
    record_run(model, schedule, SamplerConfig(sampler="ddpm"), x_T=x_T, labels=labels, generator=generator, out=path, progress=False,
               choice=choice)
    return path


@pytest.fixture(scope="module")
def reduced(tmp_path_factory: pytest.TempPathFactory) -> Reduced:
    root = tmp_path_factory.mktemp("reduced")
    return Reduced(
        root=root,
        x_t_only=_record(root / "x_t_only.h5", (1, 8, 8), RecordChoice.from_cli("x_t")),
        every=_record(root / "every10.h5", (1, 8, 8), RecordChoice.from_cli(every=10)),
        slice=_record(root / "slice.h5", (1, 8, 8), RecordChoice.from_cli(samples="3:7")),
        points_x_t_only=_record(root / "points_x_t_only.h5", (2,), RecordChoice.from_cli("x_t")),
    )


@pytest.fixture
def app(reduced: Reduced, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ROOTS_ENV, str(reduced.root))

    def run(**query: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.session_state[DRAWN_WHOLE] = True
        for key, value in query.items():
            at.query_params[key] = value
        return at.run()

    return run



def step_label(at: AppTest) -> str:
    (label,) = [m.value for m in at.markdown if m.value.startswith("**Step ")]
    return label


def spec(at: AppTest) -> dict:
    (element,) = [e for e in at.get("component_instance") if "player" in e.proto.component_name]
    return json.loads(element.proto.json_args)["spec"]


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def test_a_trace_of_x_t_only_shows_x_t_and_says_what_was_left_out(app, reduced: Reduced) -> None:
    at = app(view="playback", trace="x_t_only.h5")
    no_failures(at)
    picker = at.sidebar.multiselect(key="step:x_t_only.h5.tensors")
    assert list(picker.options) == ["x_t"] and list(picker.value) == ["x_t"]
    (track,) = spec(at)["tracks"]
    assert [p["name"] for p in track["panels"]] == ["x_t"]  # the player plays what is there
    assert "recorded by choice" in captions(at) and "not recorded: eps, x0_pred, noise, x0_pred_raw" in captions(at)
    not_checked = [m.value for m in at.markdown if "not checked" in m.value]
    assert any("ddpm.step" in text and "left out by --record" in text for text in not_checked), not_checked
    player_step(at, "x_t_only.h5", 7)  # scrubbing: another step, still nothing but x_t
    no_failures(at)
    assert step_label(at).startswith("**Step 8 of 50**")
    no_failures(app(view="schedule", trace="x_t_only.h5"))
    compare = app(view="compare", compare="x_t_only.h5,every10.h5")  # x0_pred, compared by default, is not in the first
    no_failures(compare)
    assert any("x0_pred is not recorded in ` x_t_only.h5 `" in i.value for i in compare.info), [i.value for i in compare.info]
    compare.sidebar.radio(key="compare.tensor").set_value("x_t").run()  # x_t is in every trace: compared
    no_failures(compare)
    assert not [i.value for i in compare.info if "not recorded" in i.value]


def test_a_2d_trace_of_x_t_only_plays_its_points(app, reduced: Reduced) -> None:
    at = app(view="playback", trace="points_x_t_only.h5")
    no_failures(at)
    (track,) = spec(at)["tracks"]
    assert track["series"] == ["x_t"]  # no x0_pred to draw: the points alone
    assert "not recorded: eps, x0_pred, noise, x0_pred_raw" in captions(at)


def test_a_trace_of_every_10th_step_names_each_row_by_the_runs_step(app, reduced: Reduced) -> None:
    with open_trace(reduced.every) as trace:
        index, t, rows, planned = trace.step_indices(), trace.column("t"), trace.num_steps, trace.recorded.steps
        assert trace.planned() == rows  # the rows planned: the steps kept
    assert list(index) == [0, 10, 20, 30, 40, 49] and planned == T  # every 10th and the last of the run's T steps
    at = app(view="playback", trace="every10.h5")
    no_failures(at)
    assert step_label(at).startswith(f"**Step 1 of {planned}** (recorded 1 of {rows}) · t = {t[0]}")
    labels = spec(at)["labels"]
    assert labels[2].startswith(f"Step {index[2] + 1} of {planned} (recorded 3 of {rows}) · t = {t[2]}")
    assert labels[-1] == f"Final sample (after step {planned} of {planned})"
    player_step(at, "every10.h5", 3)
    no_failures(at)
    assert step_label(at).startswith(f"**Step {index[3] + 1} of {planned}** (recorded 4 of {rows}) · t = {t[3]}")
    assert "every 10th step and the last" in captions(at)
    names = {p["name"] for p in spec(at)["tracks"][0]["panels"]}
    assert {"x_t", "eps", "x0_pred"} <= names  # every tensor is kept; x_prev is the checks', not a panel
    not_checked = [m.value for m in at.markdown if "not checked" in m.value]
    assert any("the steps not recorded" in text for text in not_checked), not_checked


def test_a_slice_of_the_batch_shows_the_runs_sample_indices(app, reduced: Reduced) -> None:
    with open_trace(reduced.slice) as trace:
        kept = list(trace.sample_indices())
        assert trace.batch_size == 4 and trace.run_batch == BATCH
    assert kept == [3, 4, 5, 6]
    at = app(view="playback", trace="slice.h5")
    no_failures(at)
    picker = at.sidebar.multiselect(key="step:slice.h5.samples")
    assert list(picker.options) == ["#3", "#4", "#5", "#6"]  # the stored rows 0..3, named by the run's index
    assert list(picker.value) == [0, 1, 2, 3]
    (track,) = spec(at)["tracks"]
    assert track["samples"] == kept  # the player's tooltips name them so too
    assert "samples 3:7 of a batch of 12" in captions(at)
