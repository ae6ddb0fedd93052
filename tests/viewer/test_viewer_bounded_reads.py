"""What the viewer holds of a trace at once (issue 15, point 4): one step of one tensor a read, a few steps kept.

Each test opens a copy of a real trace (a fresh path: no handle, no cached summary from another
test) and counts every read of its step tensors (tests/trace/reads.py): the colour ranges read a
bounded sample of steps, once; the scalar plots' statistics each step once; the player encodes a
chunk of frames one step at a time; the equations panel, scrubbed back and forth, keeps only the
rows near the step shown.
"""

from __future__ import annotations

import shutil
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.trace.reads import recorded_reads
from tests.viewer.conftest import Traces
from viewer import equations_panel, loaders, player

TENSORS = ("x_t", "eps", "x0_pred", "noise")


@pytest.fixture
def fresh(traces: Traces, tmp_path: Path) -> Path:
    """A copy of the DDPM image trace (50 steps, batch 12 of 1x8x8)."""
    return Path(shutil.copy(traces.images_ddpm, tmp_path / "ddpm.h5"))


def test_colour_ranges_read_a_dozen_steps_one_row_a_read_and_once(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = loaders.info(loaders.open_handle(fresh))
    probes = set(loaders.probe_steps(info.rows).tolist())
    assert len(probes) == loaders.COLOUR_PROBE_STEPS < info.rows
    with recorded_reads(monkeypatch) as reads:
        first = loaders.colour_ranges(info.path, info.inode, info.rows, ("x_t", "eps"))
        assert reads.most_rows == 1.0
        assert reads.per_row() == {(name, i): 1 for name in ("x_t", "eps") for i in probes}  # a bounded sample
        reads.clear()
        assert loaders.colour_ranges(info.path, info.inode, info.rows, ("x_t", "eps")) == first
        assert not reads.tensors  # cached


def test_the_scalar_plots_statistics_read_each_step_once(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handle = loaders.open_handle(fresh)
    rows = loaders.info(handle).rows
    with recorded_reads(monkeypatch) as reads:
        loaders.step_stats(handle, rows)
        assert reads.most_rows == 1.0 and reads.per_row() == {(name, i): 1 for name in ("x_t", "eps") for i in range(rows)}
        reads.clear()
        loaders.step_stats(handle, rows)
        assert not reads.tensors


def test_the_player_encodes_a_chunk_one_step_at_a_time(fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from viewer.panels.player import image_track

    monkeypatch.setattr(player.write_frames, "__defaults__", (tmp_path / "frames", True, (0,)))
    alive: list[int] = []  # frame rows of earlier steps still held when the next step's row is made
    made: list[weakref.ref[np.ndarray]] = []
    original = player.frame_row
    this_test = threading.get_ident()

    def frame_row(*args: Any, **kwargs: Any) -> tuple[np.ndarray, list[float]]:
        if threading.get_ident() != this_test:  # a frames thread an earlier test left running in this process
            return original(*args, **kwargs)
        alive.append(sum(ref() is not None for ref in made))
        row, shares = original(*args, **kwargs)
        made.append(weakref.ref(row))
        return row, shares

    monkeypatch.setattr(player, "frame_row", frame_row)
    handle = loaders.open_handle(fresh)
    info = loaders.info(handle)
    with recorded_reads(monkeypatch) as reads:
        track = image_track(handle, info, list(TENSORS), [0, 1, 2, 3], None, background=False)
    assert track["chunks"] == 2 and len(made) == info.rows + 1  # two chunks of 25 steps, and the final samples
    assert max(alive) <= 1  # the step before at most, not the chunk's 25
    assert reads.most_rows == 1.0 and {(name, i) for name in TENSORS for i in range(info.rows)} <= set(reads.per_row())


def test_scrubbing_the_equations_back_and_forth_keeps_only_the_rows_near_the_step(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = equations_panel.load_registry()
    assert registry is not None
    handle = loaders.open_handle(fresh)
    info = loaders.info(handle)
    scalars = loaders.scalars(info.path, info.inode, info.rows)
    with recorded_reads(monkeypatch) as reads, handle.lock:
        for i in range(info.rows - 1, -1, -1):  # every step, backwards, as the panel shows them
            assert equations_panel.equations_at(registry, handle.trace, i, scalars, info.tensor_dtype, memo=handle.memo)
        assert reads.most_rows == 1.0 and max(reads.per_row().values()) == 1  # each row read once on the way
        reads.clear()
        equations_panel.equations_at(registry, handle.trace, info.rows - 1, scalars, info.tensor_dtype, memo=handle.memo)
        assert ("x_t", info.rows - 1) in reads.per_row()  # the last step, far from step 0, was let go: read again
