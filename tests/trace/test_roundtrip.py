"""Writer -> reader round trips: every name, shape, dtype and value comes back."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from tests.trace.synthetic import records
from tracer.schedules import make_schedule
from tracer.trace import schema
from tracer.trace.reader import open_trace
from tracer.trace.sampling import record_sampling
from tracer.trace.writer import Series, TraceExistsError, TraceWriter

SCHEDULE = make_schedule("linear", 50)


def write(path, steps=6, guided=False, dtype="float32", labels=None, **kw):
    recs = list(records(SCHEDULE, steps, guided=guided))
    samples = record_sampling(iter(recs), path, schedule=SCHEDULE, config={"sampler": {"name": "test"}}, planned=steps,
                              labels=labels, tensor_dtype=dtype, **kw)
    return recs, samples


def test_every_step_round_trips(tmp_path):
    path = tmp_path / "a.h5"
    recs, samples = write(path, guided=True, labels=torch.tensor([0, 1, 2]))
    with open_trace(path) as trace:
        assert trace.kind == "sampling" and trace.status == "complete" and trace.schema_version == schema.SCHEMA_VERSION
        assert trace.num_steps == len(recs) == trace.planned()
        assert trace.config == {"sampler": {"name": "test"}}
        scal = trace.scalars()
        for name in schema.STEP_SCALARS:
            np.testing.assert_array_equal(scal[name], [getattr(r, name) for r in recs])
            assert scal[name].dtype == np.dtype(schema.STEP_SCALARS[name])
        for i, r in enumerate(recs):
            for name in ("x_t", "eps", "x0_pred", "noise", "eps_cond", "eps_uncond"):
                np.testing.assert_array_equal(trace.tensor(name, i), getattr(r, name).numpy())
        np.testing.assert_array_equal(trace.final("samples"), samples.numpy())
        np.testing.assert_array_equal(trace.final("labels"), [0, 1, 2])
        for name in schema.SCHEDULE_FIELDS:
            np.testing.assert_array_equal(trace.file[f"schedule/{name}"][()], getattr(SCHEDULE, name))
            assert trace.file[f"schedule/{name}"].dtype == np.float64
        assert trace.schedule is not None and trace.schedule.T == 50
        # x_t of step i+1 is the output of step i
        for i in range(len(recs) - 1):
            np.testing.assert_array_equal(trace.tensor("x_t", i + 1), recs[i].x_prev.numpy())


def test_unguided_trace_has_no_guidance_tensors_and_unlabelled_batch(tmp_path):
    path = tmp_path / "b.h5"
    write(path)
    with open_trace(path) as trace:
        assert set(trace.tensor_names()) == set(schema.STEP_TENSORS)
        np.testing.assert_array_equal(trace.final("labels"), [schema.NO_LABEL] * 3)


def test_root_attributes(tmp_path):
    path = tmp_path / "c.h5"
    write(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == schema.FORMAT
        assert int(f.attrs["schema_version"]) == schema.SCHEMA_VERSION
        assert f.attrs["kind"] == "sampling"
        assert json.loads(f.attrs["config"]) == {"sampler": {"name": "test"}}
        assert "T" in f.attrs["created"] or f.attrs["created"][:4].isdigit()
        assert "h5py" in json.loads(f.attrs["versions"])


def test_float16_on_request(tmp_path):
    path = tmp_path / "h.h5"
    recs, _ = write(path, dtype="float16")
    with open_trace(path) as trace:
        assert trace.file["steps/x_t"].dtype == np.float16
        assert trace.file["steps/t"].dtype == np.int64 and trace.file["schedule/beta"].dtype == np.float64
        np.testing.assert_allclose(trace.tensor("x_t", 2), recs[2].x_t.numpy(), rtol=1e-3, atol=1e-3)


def test_one_chunk_per_step(tmp_path):
    """Reading step k reads only step k: every tensor chunk holds exactly one step."""
    path = tmp_path / "k.h5"
    write(path)
    with h5py.File(path, "r") as f:
        for name in schema.STEP_TENSORS:
            ds = f[f"steps/{name}"]
            assert ds.chunks == (1, *ds.shape[1:])
            assert ds.maxshape[0] is None  # resizable along steps


def test_existing_trace_is_not_overwritten(tmp_path):
    path = tmp_path / "e.h5"
    write(path)
    before = path.read_bytes()
    with pytest.raises(TraceExistsError):
        write(path)
    assert path.read_bytes() == before
    write(path, overwrite=True)


def test_exception_marks_failed_and_keeps_steps(tmp_path):
    path = tmp_path / "f.h5"

    def broken():
        for i, record in enumerate(records(SCHEDULE, 10)):
            if i == 4:
                raise RuntimeError("model exploded")
            yield record

    with pytest.raises(RuntimeError):
        record_sampling(broken(), path, schedule=SCHEDULE, config={}, planned=10, labels=None)
    with open_trace(path) as trace:
        assert trace.status == "failed"
        assert trace.num_steps == 4 and trace.file["steps/x_t"].shape[0] == 4
        assert trace.final("samples") is None


def test_series_grow_past_their_plan(tmp_path):
    path = tmp_path / "g.h5"
    spec = Series("train", {"step": ((), "int64"), "loss": ((), "float64")}, planned=2)
    with TraceWriter(path, kind="training", config={}, series=[spec]) as w:
        for step in range(7):
            w.append("train", {"step": step, "loss": 1.0 / (step + 1)})
    with open_trace(path) as trace:
        series = trace.series("train")
        np.testing.assert_array_equal(series["step"], np.arange(7))
        np.testing.assert_allclose(series["loss"], 1.0 / np.arange(1, 8))


def test_row_with_wrong_shape_is_refused(tmp_path):
    spec = Series("s", {"x": ((2,), "tensor")}, planned=1)
    with pytest.raises(ValueError, match="shape"):
        with TraceWriter(tmp_path / "w.h5", kind="training", config={}, series=[spec]) as w:
            w.append("s", {"x": np.zeros(3)})


def test_steps_by_timestep(tmp_path):
    path = tmp_path / "t.h5"
    recs, _ = write(path, steps=5)
    with open_trace(path) as trace:
        for r in recs:
            assert trace.index_of_t(r.t) == r.index
        with pytest.raises(KeyError):
            trace.index_of_t(99)
        assert trace.nearest_index(99) == 0
        step = trace.step(2)
        assert step["t"] == recs[2].t and step["x0_pred"].shape == (3, 1, 4, 4)


def test_overwrite_writes_beside_and_replaces_only_a_complete_trace(tmp_path):
    path = tmp_path / "o.h5"
    partial = tmp_path / ".o.h5.partial"
    write(path, steps=3)
    before = path.read_bytes()

    def broken():
        for i, record in enumerate(records(SCHEDULE, 10, seed=1)):
            if i == 4:
                raise RuntimeError("model exploded")
            yield record

    with pytest.raises(RuntimeError):
        record_sampling(broken(), path, schedule=SCHEDULE, config={}, planned=10, labels=None, overwrite=True)
    assert path.read_bytes() == before  # the old trace is intact ...
    with h5py.File(partial, "r") as f:  # ... and the failed run's committed steps are beside it
        assert f["status"][()] == b"failed" and f["steps/t"].shape == (4,)

    with TraceWriter(path, kind="training", config={}, series=[Series("train", {"t": ((), "int64")}, planned=2)],
                     overwrite=True) as writer:
        assert writer.file_path == partial and path.read_bytes() == before
        with h5py.File(partial, "r", libver="latest", swmr=True) as f:  # a new file: the failed run's partial is gone
            assert f["status"][()] == b"running" and f["train/t"].shape == (2,) and f["progress/train"][()] == 0
        writer.append("train", {"t": 7})
    assert not partial.exists()
    with open_trace(path) as trace:
        assert trace.kind == "training" and trace.status == "complete" and trace.series("train")["t"].tolist() == [7]


def test_publish_moves_an_open_trace_onto_its_path(tmp_path):
    path = tmp_path / "p.h5"
    write(path, steps=2)
    spec = Series("train", {"step": ((), "int64")}, planned=4)
    with TraceWriter(path, kind="training", config={}, series=[spec], overwrite=True) as writer:
        writer.append("train", {"step": 1})
        writer.publish()
        assert writer.file_path == path and not (tmp_path / ".p.h5.partial").exists()
        writer.append("train", {"step": 2})
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            assert f["progress/train"][()] == 2 and f["status"][()] == b"running"
    with open_trace(path) as trace:
        assert trace.status == "complete" and trace.series("train")["step"].tolist() == [1, 2]


def test_a_file_that_is_not_a_trace_is_never_replaced(tmp_path):
    from safetensors.torch import save_file

    checkpoint = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(3)}, str(checkpoint))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(3)
    text = tmp_path / "notes.h5"
    text.write_text("my notes")
    for path in (checkpoint, other, text):
        before = path.read_bytes()
        with pytest.raises(TraceExistsError, match="is not a noisescope trace; refusing to replace it") as error:
            write(path, overwrite=True)
        assert "\n" not in str(error.value)
        assert path.read_bytes() == before and not (tmp_path / f".{path.name}.partial").exists()


def test_scalar_series_grow_past_a_chunk_without_losing_rows(tmp_path):
    """Scalars are stored in chunks of 4,096 rows, given their space ahead; growing never rewrites a chunk that holds rows."""
    path = tmp_path / "long.h5"
    spec = Series("train", {"step": ((), "int64"), "loss": ((), "float64")}, planned=5000)
    with TraceWriter(path, kind="training", config={}, series=[spec]) as w:
        for step in range(11_000):
            w.append("train", {"step": step, "loss": step / 2})
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["train/step"][()], np.arange(11_000))
        np.testing.assert_array_equal(f["train/loss"][()], np.arange(11_000) / 2)


def test_a_writer_that_is_not_live_puts_nothing_at_the_path_until_complete(tmp_path):
    path = tmp_path / "copy.h5"
    spec = Series("train", {"step": ((), "int64")}, planned=2)
    with pytest.raises(RuntimeError):
        with TraceWriter(path, kind="training", config={}, series=[spec], live=False) as writer:
            writer.append("train", {"step": 1})
            assert not path.exists() and writer.file_path == tmp_path / ".copy.h5.partial"
            raise RuntimeError("copy failed")
    assert not path.exists()
    with TraceWriter(path, kind="training", config={}, series=[spec], live=False) as writer:
        writer.append("train", {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.h5"]
    with open_trace(path) as trace:
        assert trace.status == "complete" and trace.series("train")["step"].tolist() == [2]


def test_recover_overwrite_of_a_failed_trace_replaces_the_copy(tmp_path):
    from tracer.cli import main

    def broken():
        for i, record in enumerate(records(SCHEDULE, 10)):
            if i == 4:
                raise RuntimeError("model exploded")
            yield record

    with pytest.raises(RuntimeError):
        record_sampling(broken(), tmp_path / "failed.h5", schedule=SCHEDULE, config={}, planned=10, labels=None)
    out = tmp_path / "out.h5"
    write(out, steps=6)
    assert main(["recover", str(tmp_path / "failed.h5"), "--out", str(out), "--overwrite"]) == 0
    with h5py.File(out, "r") as f:
        assert f["steps/t"].shape == (4,) and "recovered_from" in f.attrs
    assert not (tmp_path / ".out.h5.partial").exists()
