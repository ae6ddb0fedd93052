"""Compare lines traces up by the run's sample index, not by row (tracer/trace/choice.py ``shared_samples``).

Every trace here records one deterministic run (DDIM, η = 0, 10 steps, two classes, labels k % 2, from one x_T of 12
samples), each a different slice of its batch (``noisescope sample --samples``, ``RecordChoice``): rows 0:6, 3:9,
6:12, and the whole batch; on 1x8x8 images and on 2-D points. Run sample s is then the same array in every trace that
keeps it, whichever row holds it: compared by the run's index, the difference and the distance are exactly 0;
compared by row (row k of A against row k of B, as Compare did), they are not. Expected values are read from the
traces themselves.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.viewer.conftest import BATCH, T, image_means, no_failures
from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers.config import SamplerConfig
from tracer.samplers.loop import initial_noise
from tracer.schedules import make_schedule
from tracer.trace.choice import RecordChoice
from tracer.trace.reader import TraceError, open_trace
from viewer import loaders
from viewer.panels.compare import samples_note, shared_of
from viewer.panels.playback import DRAWN_WHOLE
from viewer.paths import ROOTS_ENV

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "viewer" / "app.py"
STEP = 4  # the step the app is opened at (every trace has the same 10 steps: B's step nearest A's is the same)
SLICES = {"a": "0:6", "b": "3:9", "c": "6:12", "full": None}


@dataclass(frozen=True)
class Slices:
    root: Path
    images: dict[str, Path]  # a: samples 0:6, b: 3:9, c: 6:12, full: the whole batch
    points: dict[str, Path]


def _record(path: Path, shape: tuple[int, ...], samples: str | None) -> Path:
    schedule = make_schedule("linear", T)
    means = image_means(2) if len(shape) == 3 else torch.tensor([[0.5, -0.3], [-0.4, 0.6]], dtype=torch.float64)
    model = GaussianOracle(schedule, means, 0.3, per_class=True)
    x_T = initial_noise((BATCH, *shape), generator=torch.Generator().manual_seed(0))  # noqa: N806 - the same x_T every time
    labels = torch.tensor([k % 2 for k in range(BATCH)])
    record_run(model, schedule, SamplerConfig(sampler="ddim", steps=10, eta=0.0), x_T=x_T, labels=labels, generator=None, out=path,
               progress=False, choice=RecordChoice.from_cli(samples=samples))
    return path


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> Slices:
    root = tmp_path_factory.mktemp("slices")
    return Slices(root,
                  {name: _record(root / f"img_{name}.h5", (1, 8, 8), samples) for name, samples in SLICES.items()},
                  {name: _record(root / f"pts_{name}.h5", (2,), samples) for name, samples in SLICES.items() if name != "full"})


@pytest.fixture
def app(slices: Slices, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ROOTS_ENV, str(slices.root))

    def run(*paths: Path, **query: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.session_state[DRAWN_WHOLE] = True
        at.query_params["view"] = "compare"
        at.query_params["compare"] = ",".join(p.name for p in paths)
        for key, value in query.items():
            at.query_params[key] = value
        return at.run()

    return run



def charts(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def array(value: Any) -> np.ndarray:
    """A plotly array from the figure's JSON: a list (None for NaN), or a typed array {dtype, bdata, shape}."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).astype(np.float64)
        shape = value.get("shape")
        return out.reshape([int(n) for n in str(shape).split(",")]) if shape else out
    return np.asarray([[np.nan if v is None else v for v in row] for row in value] if value and isinstance(value[0], list)
                      else [np.nan if v is None else v for v in value], dtype=np.float64)


def panels(at: AppTest, first: str) -> dict[str, np.ndarray]:
    """The heatmaps of the one figure with a panel whose title starts with ``first``, by title: {title: z}."""
    (figure,) = [f for f in charts(at) if any(str(d.get("name", "")).startswith(first) for d in f["data"])]
    return {d["name"]: array(d["z"]) for d in figure["data"] if d.get("type") == "heatmap"}


def distance_curves(at: AppTest) -> list[np.ndarray]:
    """The y of each curve of the distance plot (its y axis titled ‖·‖ / √d)."""
    (figure,) = [f for f in charts(at) if "√d" in json.dumps(f["layout"].get("yaxis", {}), ensure_ascii=False)]
    return [array(d["y"]) for d in figure["data"] if d.get("type") == "scatter" and "y" in d and d.get("mode") != "markers"]


def row_of(path: Path, tensor: str, step: int, row: int) -> np.ndarray:
    with open_trace(path) as trace:
        return np.asarray(trace.tensor(tensor, step), dtype=np.float64)[row, 0]


def picker(at: AppTest):  # noqa: ANN201 - a Streamlit multiselect
    (found,) = [m for m in at.sidebar.multiselect if m.label == "Samples"]
    return found


def test_the_traces_keep_the_same_run_samples_in_other_rows(slices: Slices) -> None:
    """What the other tests rest on: run sample s is the same array in every trace that keeps it; the rows differ."""
    with open_trace(slices.images["a"]) as a, open_trace(slices.images["b"]) as b, open_trace(slices.images["full"]) as full:
        assert list(a.sample_indices()) == [0, 1, 2, 3, 4, 5] and list(b.sample_indices()) == [3, 4, 5, 6, 7, 8]
        for i in (0, STEP, a.num_steps - 1):
            xa, xb, xf = (t.tensor("x0_pred", i) for t in (a, b, full))
            np.testing.assert_array_equal(xa[3:6], xb[0:3])  # samples 3, 4, 5: rows 3..5 of A, 0..2 of B
            np.testing.assert_array_equal(xf[3:9], xb)
            assert np.abs(xa - xb).max() > 0.1  # row by row they are other samples


def test_whole_batches_share_their_leading_samples_row_for_row() -> None:
    """Traces that keep their whole batch are compared as before: the leading min(batch) samples, row k with row k."""
    traces = [SimpleNamespace(info=SimpleNamespace(run_samples=tuple(range(batch)))) for batch in (12, 8, 12)]
    shared = shared_of(traces)  # only info.run_samples is read
    assert shared.indices == list(range(8)) and shared.rows == [list(range(8))] * 3
    assert shared.rows_of(1, [5, 2]) == [5, 2]
    assert samples_note(traces[::2], shared_of(traces[::2])) is None  # one batch size: nothing to say
    assert samples_note(traces, shared) == ("Compared: samples 0:8 of the run's batch, those every trace keeps (A keeps 0:12, "
                                            "B keeps 0:8, C keeps 0:12); each trace shows its own row of each.")


def test_the_samples_picker_offers_the_run_samples_both_keep_each_labelled_by_its_class(app, slices: Slices) -> None:
    at = app(slices.images["a"], slices.images["b"])
    no_failures(at)
    samples = picker(at)
    assert list(samples.options) == ["3 · class 1", "4 · class 0", "5 · class 1"]  # run samples 3..5, labels k % 2 (A's rows 3..5)
    assert list(samples.value) == [3, 4, 5]  # the run's indices
    assert any("Compared: samples 3:6 of the run's batch" in c.value and "A keeps 0:6, B keeps 3:9" in c.value for c in at.caption)
    (element,) = [e for e in at.get("component_instance") if "player" in e.proto.component_name]
    tracks = json.loads(element.proto.json_args)["spec"]["tracks"]
    assert [track["samples"] for track in tracks] == [[3, 4, 5], [3, 4, 5]]  # each track its own rows of the same run samples
    assert [track["labels"] for track in tracks] == [[1, 0, 1], [1, 0, 1]]
    whole = app(slices.images["full"], slices.images["b"])  # the whole batch against a slice: the slice's samples
    no_failures(whole)
    assert [int(option.split(" ")[0]) for option in picker(whole).options] == [3, 4, 5, 6, 7, 8]


def test_a_picked_sample_is_each_traces_row_of_it_and_its_difference_is_0(app, slices: Slices) -> None:
    a, b = slices.images["a"], slices.images["b"]
    at = app(a, b, step=str(STEP))
    no_failures(at)
    picker(at).set_value([4]).run()  # run sample 4: row 4 of A, row 1 of B
    no_failures(at)
    expected_a, expected_b = row_of(a, "x0_pred", STEP, 4), row_of(b, "x0_pred", STEP, 1)
    shown = panels(at, "A:")
    (panel_a,) = [z for title, z in shown.items() if title.startswith("A:")]
    (panel_b,) = [z for title, z in shown.items() if title.startswith("B:")]
    (difference,) = [z for title, z in shown.items() if title.startswith("B − A")]
    np.testing.assert_allclose(panel_a, expected_a, rtol=1e-6)
    np.testing.assert_allclose(panel_b, expected_b, rtol=1e-6)
    assert np.all(difference == 0)  # the same sample of the same deterministic run
    assert np.abs(row_of(b, "x0_pred", STEP, 4) - expected_a).max() > 0.1  # B's row 4 (run sample 7) would not be
    assert any(c.value.startswith("B − A over the samples shown: RMS 0,") for c in at.caption)
    (sweep,) = [f for f in charts(at) if f["layout"].get("yaxis", {}).get("ticktext")]  # rows labelled: the sweep grid
    assert sweep["layout"]["yaxis"]["ticktext"] == ["4 · class 0"]
    columns = [array(d["z"]) for d in sweep["data"] if d.get("type") == "heatmap"]
    assert len(columns) == 2  # one per trace, each its own row of sample 4
    for z in columns:
        np.testing.assert_allclose(z, expected_a, rtol=1e-6)


def test_the_distance_is_0_at_every_step_over_the_shared_samples(app, slices: Slices) -> None:
    for traces in (slices.images, slices.points):
        at = app(traces["a"], traces["b"])
        no_failures(at)
        (curve,) = distance_curves(at)
        assert curve.size == 10 and np.all(curve == 0)  # by row it would be the distance between other samples
        assert any("the mean over samples 3:6 (those every trace keeps)" in c.value for c in at.caption)


def test_traces_with_no_sample_in_common_say_so_and_draw_no_image_nor_distance(app, slices: Slices) -> None:
    at = app(slices.images["a"], slices.images["c"])
    no_failures(at)
    assert [i.value for i in at.info] == ["A keeps samples 0:6, B keeps 6:12 of the run's batch: no sample in common to compare."]
    assert not charts(at)  # no images, no difference, no sweep, no distance
    assert not [e for e in at.get("component_instance") if "player" in e.proto.component_name]
    assert not picker(at).options
    points = app(slices.points["a"], slices.points["c"])
    no_failures(points)
    assert any("no sample in common to compare" in i.value for i in points.info)
    drawn = charts(points)
    assert len(drawn) == 2 and not any("√d" in json.dumps(f["layout"], ensure_ascii=False) for f in drawn)  # each cloud, no distance


def test_aligned_distance_pairs_the_run_samples_of_shifted_slices(slices: Slices) -> None:
    """Closed form: two recordings of one deterministic run are at distance 0 over the samples both keep, at every step,
    whether the pairing is derived from the traces or given; paired by row instead, they are not."""
    for traces in (slices.images, slices.points):
        a, b, c = (loaders.info(loaders.open_handle(traces[name])) for name in ("a", "b", "c"))
        pairs = [(a, b), (b, a)]
        if "full" in traces:  # the whole batch against a slice, either way round
            full = loaders.info(loaders.open_handle(traces["full"]))
            pairs += [(full, b), (a, full)]
        for x, y in pairs:
            _, d = loaders.aligned_distance(x.path, x.inode, x.rows, y.path, y.inode, y.rows, "x_t", "log_snr")
            assert d.shape == (x.rows,) and np.all(d == 0)
        _, given = loaders.aligned_distance(a.path, a.inode, a.rows, b.path, b.inode, b.rows, "x_t", "log_snr", (3, 4, 5), (0, 1, 2))
        assert np.all(given == 0)
        _, by_row = loaders.aligned_distance(a.path, a.inode, a.rows, b.path, b.inode, b.rows, "x_t", "log_snr",
                                             tuple(range(6)), tuple(range(6)))
        assert np.all(by_row > 0)  # row k of A against row k of B: other samples of the run
        with pytest.raises(TraceError, match="no sample of the run in common"):
            loaders.aligned_distance(a.path, a.inode, a.rows, c.path, c.inode, c.rows, "x_t", "log_snr")
