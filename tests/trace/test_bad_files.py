"""Files that are not (readable) traces: one clear line, exit code 2, never a traceback."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.trace.synthetic import records
from tracer.cli import main
from tracer.schedules import make_schedule
from tracer.trace import schema
from tracer.trace.reader import TraceError, open_trace
from tracer.trace.sampling import record_sampling

SCHEDULE = make_schedule("linear", 40)


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.h5"
    record_sampling(records(SCHEDULE, 8), path, schedule=SCHEDULE, config={}, planned=8, labels=None)
    return path


def bad_files(tmp_path, good):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5 at all")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = [1, 2, 3]
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    damaged = tmp_path / "damaged.h5"  # the HDF5 signature intact, the object headers behind it garbage
    data = bytearray(good.read_bytes())
    data[64:2048] = np.random.default_rng(0).integers(0, 256, 2048 - 64, dtype=np.uint8).tobytes()
    damaged.write_bytes(bytes(data))
    newer = tmp_path / "newer.h5"
    newer.write_bytes(good.read_bytes())
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = schema.SCHEMA_VERSION + 1
    return {
        "missing": (tmp_path / "missing.h5", "no such file"),
        "not hdf5": (text, "not an HDF5 file"),
        "foreign hdf5": (foreign, "not a noisescope trace"),
        "truncated": (truncated, "truncated or corrupt"),
        "damaged metadata": (damaged, "corrupt"),
        "newer schema": (newer, "newer than this noisescope reads"),
        "directory": (tmp_path, "is a directory"),
    }


def test_reader_refuses_each_with_one_line(tmp_path, good):
    for label, (path, message) in bad_files(tmp_path, good).items():
        with pytest.raises(TraceError) as info:
            open_trace(path)
        assert message in str(info.value), label
        assert "\n" not in str(info.value), label


def test_inspect_exits_2_with_one_line(tmp_path, good, capsys):
    for label, (path, message) in bad_files(tmp_path, good).items():
        assert main(["inspect", str(path)]) == 2, label
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in captured.err, label


def test_inspect_text_and_json(good, capsys):
    assert main(["inspect", str(good)]) == 0
    text = capsys.readouterr().out
    assert "status complete" in text and "8 of 8 planned" in text
    assert main(["inspect", str(good), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "sampling" and info["status"] == "complete"
    assert info["steps_recorded"] == info["steps_planned"] == 8
    assert info["sample_shape"] == [1, 4, 4] and info["batch"] == 3
    assert [row["t"] for row in info["steps"]] == list(range(7, -1, -1))
    truth = list(records(SCHEDULE, 8))
    for row, rec in zip(info["steps"], truth):
        assert row["x_t_mean"] == pytest.approx(float(rec.x_t.double().mean()), rel=1e-6, abs=1e-7)
        assert row["eps_std"] == pytest.approx(float(rec.eps.double().std(unbiased=False)), rel=1e-5)
