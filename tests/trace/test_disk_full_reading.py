"""What a full disk leaves is read like any trace: the reader, check, inspect and recover see every committed row.

Once, a trace cut short by EFBIG was refused by all of them as "truncated or corrupt", while plain
h5py in SWMR mode read every committed row of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trace.test_disk_full import CLI, MODEL, SCHEDULE, STEPS, committed, one_line, run_limited, sample_args
from tracer.checkpoints import save_checkpoint
from tracer.cli import main
from tracer.models.registry import build_model
from tracer.trace.reader import open_trace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("disk") / "model.safetensors", build_model(MODEL),
                           model_config=MODEL, schedule_config=SCHEDULE)


def test_a_trace_cut_by_a_full_disk_reads_checks_and_recovers(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full.h5"
    assert main(sample_args(checkpoint, full)) == 0
    out = tmp_path / "limited.h5"
    line = one_line(run_limited(CLI, sample_args(checkpoint, out), full.stat().st_size // 2), "disk full after ")
    n = int(line.split("disk full after ")[1].split()[0])
    _, rows, truth = committed(out, "steps")  # plain h5py, SWMR: the reference
    assert rows == n and 0 < n < STEPS
    with open_trace(out) as trace:
        assert trace.num_steps == n and trace.status == "failed"
        for i in range(n):
            np.testing.assert_array_equal(trace.tensor("x_t", i), truth["x_t"][i])
        np.testing.assert_array_equal(trace.column("t"), truth["t"])
    capsys.readouterr()
    assert main(["check", str(out)]) == 3  # every committed step obeys DDIM's equations; the rest is not in the trace
    assert f"{n} of {STEPS} planned steps recorded" in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0 and f"{n} of {STEPS} planned" in capsys.readouterr().out
    copy = tmp_path / "copy.h5"
    assert main(["recover", str(out), "--out", str(copy)]) == 0
    with open_trace(copy) as trace:
        assert trace.num_steps == n and not trace.live
    assert main(["check", str(copy)]) == 3  # the recovered copy is the same unfinished run: INCOMPLETE, as its original
