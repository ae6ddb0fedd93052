"""Killed for real, nothing is lost.

Training and sampling runs in their own process (tests/pausing_run.py) are SIGKILLed at
chosen moments: mid-run, while a resumed run copies the old rows, and between the
replacements at the end of an --overwrite run. After each kill the previous model still
loads, train.h5 holds every old row (read with plain h5py as an SWMR reader), and the next
run removes what the killed one left half-written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.pausing_run import DATA, MODEL, SCHEDULE, config, run_and_kill
from tests.trace.synthetic import records
from tracer.checkpoints import load_checkpoint
from tracer.schedules import make_schedule
from tracer.trace.sampling import record_sampling
from tracer.training import RUN_FILES, STATE_FILE, TRACE_FILE, train


pytestmark = pytest.mark.slow


def run(run_dir: Path, steps: int, **kwargs: object) -> None:
    train(run_dir, data=DATA, model=MODEL, schedule=SCHEDULE, config=config(steps), progress=False, **kwargs)  # type: ignore[arg-type]


def files(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in RUN_FILES}


def partials(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".partial"))


def rows(path: Path, series: str) -> tuple[str, dict[str, np.ndarray]]:
    """(status, the committed rows of ``series``), read with plain h5py as an SWMR reader."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        n = int(f[f"progress/{series}"][()])
        return f["status"][()].decode(), {name: ds[:n] for name, ds in f[series].items()}


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 20-step run: the run that the killed runs must not lose."""
    run_dir = tmp_path_factory.mktemp("previous") / "run"
    run(run_dir, 20)
    return run_dir


@pytest.fixture
def run_dir(previous: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(previous, tmp_path / "run"))


@pytest.mark.parametrize("moment", ["record:10", "replace:train.h5", "replace:train_state.pt", "replace:model.safetensors"])
def test_a_killed_overwrite_keeps_the_previous_model(run_dir: Path, moment: str) -> None:
    before = files(run_dir)
    run_and_kill("train", str(run_dir), "overwrite", "20", "1", moment)
    after = files(run_dir)
    assert after[RUN_FILES[0]] == before[RUN_FILES[0]]  # model.safetensors: replaced last of all
    assert load_checkpoint(run_dir).extra["step"] == 20
    if moment in ("record:10", "replace:train.h5"):
        assert after == before  # the whole previous run, byte for byte
        status, new_rows = rows(run_dir / f".{TRACE_FILE}.partial", "train")  # the killed run's rows, beside
        expected = ("running", [10]) if moment == "record:10" else ("complete", [10, 20])
        assert (status, new_rows["step"].tolist()) == expected
    else:
        status, new_rows = rows(run_dir / TRACE_FILE, "train")  # replaced by the complete new history
        assert status == "complete" and new_rows["step"].tolist() == [10, 20]
        assert (after[STATE_FILE] == before[STATE_FILE]) == (moment == "replace:train_state.pt")
    run(run_dir, 20, overwrite=True)  # the next run: completes, and removes what the killed one left
    assert partials(run_dir) == []
    assert load_checkpoint(run_dir).extra["step"] == 20


@pytest.mark.parametrize("moment", ["copy:1", "replace:train.h5", "record:30"])
def test_a_killed_resume_keeps_the_history(run_dir: Path, tmp_path: Path, moment: str) -> None:
    before = files(run_dir)
    _, old_train = rows(run_dir / TRACE_FILE, "train")
    _, old_snapshots = rows(run_dir / TRACE_FILE, "snapshots")
    assert old_train["step"].tolist() == [10, 20]
    run_and_kill("train", str(run_dir), "resume", "40", "0", moment)
    after = files(run_dir)
    assert after[RUN_FILES[0]] == before[RUN_FILES[0]] and load_checkpoint(run_dir).extra["step"] == 20
    if moment != "record:30":
        assert after == before  # killed before the new trace replaced the old: the old history, byte for byte
        return
    status, new_train = rows(run_dir / TRACE_FILE, "train")  # the new history, with every old row
    _, new_snapshots = rows(run_dir / TRACE_FILE, "snapshots")
    assert status == "running" and new_train["step"].tolist() == [10, 20, 30]
    for old, new in ((old_train, new_train), (old_snapshots, new_snapshots)):
        for name, values in old.items():
            np.testing.assert_array_equal(new[name][: len(values)], values, err_msg=name)
    # Resumed again, the run ends as one that was never interrupted.
    run(run_dir, 40, resume=True)
    run(tmp_path / "whole", 40)
    _, resumed = rows(run_dir / TRACE_FILE, "train")
    _, whole = rows(tmp_path / "whole" / TRACE_FILE, "train")
    assert resumed["step"].tolist() == [10, 20, 30, 40]
    np.testing.assert_array_equal(resumed["loss"], whole["loss"])
    assert partials(run_dir) == []


def test_a_killed_sampling_overwrite_keeps_the_old_trace(tmp_path: Path) -> None:
    path = tmp_path / "trace.h5"
    schedule = make_schedule("linear", 1000)
    record_sampling(records(schedule, 30), path, schedule=schedule, config={}, planned=30, labels=None)
    before = path.read_bytes()
    run_and_kill("sample", str(path), "30", "1", "step:5")
    assert path.read_bytes() == before
    status, steps = rows(tmp_path / ".trace.h5.partial", "steps")  # the killed run's committed steps, beside
    truth = list(records(schedule, 30, seed=1))
    assert status == "running" and len(steps["x_t"]) >= 6
    for i, x_t in enumerate(steps["x_t"]):
        np.testing.assert_array_equal(x_t, truth[i].x_t.numpy())
    record_sampling(records(schedule, 30, seed=2), path, schedule=schedule, config={}, planned=30, labels=None, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.h5"]
