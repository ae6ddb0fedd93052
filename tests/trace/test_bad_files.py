"""Files that are not (readable) traces: one clear line, exit code 2, never a traceback."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.trace.synthetic import records
from tests.trace.writer_process import killed_writer
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


def killed_trace(tmp_path):
    """A trace whose writer was SIGKILLed: its superblock still says a (SWMR) writer holds it."""
    path = tmp_path / "killed.h5"
    killed_writer(path, 100, 0.01, after=5)
    return path


def test_damaged_files_a_writer_held_never_hang(tmp_path):
    """Once, a superblock checksum error or a 46-byte truncation of such a file hung open for over ten minutes
    (the SWMR fallback retried every metadata read 100 times with growing sleeps)."""
    import time

    from tracer.trace.reader import superblock_flags

    source = killed_trace(tmp_path)
    assert superblock_flags(source) & 0x05  # opened for SWMR write, never closed
    data = source.read_bytes()
    mutants = {"superblock checksum": bytearray(data), "46 bytes": bytearray(data[:46]), "half": bytearray(data[: len(data) // 2])}
    mutants["superblock checksum"][44] ^= 0xFF  # the superblock's checksum (bytes 44-47 of a version 3 superblock)
    for label, content in mutants.items():
        path = tmp_path / f"{label}.h5"
        path.write_bytes(bytes(content))
        start = time.monotonic()
        with pytest.raises(TraceError) as info:
            open_trace(path)
        assert time.monotonic() - start < 30, label  # a bound far above the milliseconds it takes, far below a hang
        assert "\n" not in str(info.value) and "corrupt" in str(info.value), label
    with open_trace(source) as trace:  # the undamaged killed trace reads
        assert trace.live and trace.num_steps >= 6


@pytest.mark.parametrize("mutation", ["external link", "external storage", "virtual dataset", "schema_version inf",
                                      "negative counter", "counter past the data", "config not an object", "t as float"])
def test_structure_is_validated_at_open(tmp_path, good, mutation):
    path = tmp_path / "bad.h5"
    path.write_bytes(good.read_bytes())
    (tmp_path / "other.h5").write_bytes(good.read_bytes())
    with h5py.File(path, "r+") as f:
        if mutation == "external link":
            f["steps/eps_cond"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/steps/eps")
        elif mutation == "external storage":
            (tmp_path / "raw.bin").write_bytes(b"\0" * 64)
            f.create_dataset("steps/extra", shape=(8,), dtype="f8", external=[(str(tmp_path / "raw.bin"), 0, 64)])
        elif mutation == "virtual dataset":
            layout = h5py.VirtualLayout(shape=(8,), dtype="i8")
            layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "steps/t", shape=(8,))
            f.create_virtual_dataset("steps/virtual", layout)
        elif mutation == "schema_version inf":
            f.attrs["schema_version"] = float("inf")
        elif mutation == "negative counter":
            f["progress/steps"][()] = -1
        elif mutation == "counter past the data":
            f["progress/steps"][()] = 9
        elif mutation == "config not an object":
            f.attrs["config"] = "[1, 2]"
        elif mutation == "t as float":
            del f["steps/t"]
            f["steps/t"] = np.arange(8, dtype=np.float64)
    with pytest.raises(TraceError) as info:
        open_trace(path)
    assert "\n" not in str(info.value)
    assert main(["check", str(path)]) == 2 and main(["inspect", str(path)]) == 2 and main(["recover", str(path)]) == 2
