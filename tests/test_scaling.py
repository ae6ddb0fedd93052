"""docs/scaling.md: the size of a sampling trace as a formula, held to real traces' file sizes, and its table recomputed.

    bytes = S n B P b + 8 S c + B P b + 8 B + 24 T + H,   0 < H <= 48 KiB + 2 (root attribute bytes) + 16 S n

S rows, n step tensors, B samples, P values a sample, b bytes a value, c step scalars, T the schedule's length; H is
HDF5's structure. S and B come from the recording choice (tracer/trace/choice.py), the rest from what the trace holds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tracer.models.analytic import GaussianOracle
from tracer.recording import record_run
from tracer.samplers.config import SamplerConfig
from tracer.schedules import make_schedule
from tracer.trace import schema
from tracer.trace.choice import RecordChoice

DOC = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"
KIB = 1024


def formula(S: int, n: int, B: int, P: int, b: int, c: int, T: int) -> int:  # noqa: N803 - the document's symbols
    """docs/scaling.md without H (S <= 4,096: the scalars' chunks hold S rows exactly)."""
    return S * n * B * P * b + 8 * S * c + B * P * b + 8 * B + 24 * T


def h_bound(S: int, n: int, attribute_bytes: int) -> int:  # noqa: N803
    return 48 * KIB + 2 * attribute_bytes + 16 * S * n


RUNS = {  # name: (sampler, options, planned steps N, batch, sample shape, choice, dtype)
    "ddpm everything": ("ddpm", {}, 200, 8, (3, 8, 8), RecordChoice(), "float32"),
    "ddpm all four options": ("ddpm", {}, 200, 8, (3, 8, 8), RecordChoice.from_cli("x_t,x0_pred", every=10, samples="0:3"), "float16"),
    "ddim x_t alone, a strided slice": ("ddim", {"steps": 40}, 40, 6, (1, 16, 16), RecordChoice.from_cli("x_t", samples="1::2"), "float32"),
    "ddim float16": ("ddim", {"steps": 40}, 40, 6, (1, 16, 16), RecordChoice(), "float16"),
    "heun everything": ("heun", {"steps": 60}, 60, 4, (1, 8, 8), RecordChoice(), "float32"),
    "dpmpp_2m every 7": ("dpmpp_2m", {"steps": 90}, 90, 4, (2, 8, 8), RecordChoice(every=7), "float32"),
    "ddpm tiny samples": ("ddpm", {}, 200, 2, (2,), RecordChoice(), "float32"),
}


@pytest.mark.parametrize("name", list(RUNS), ids=list(RUNS))
def test_the_formula_predicts_a_real_traces_file_size(tmp_path: Path, name: str) -> None:
    sampler, options, N, batch, shape, choice, dtype = RUNS[name]  # noqa: N806
    T = 200  # noqa: N806
    schedule = make_schedule("linear", T)
    model = GaussianOracle(schedule, torch.zeros(shape), 0.3)
    generator = torch.Generator().manual_seed(0)
    path = tmp_path / "t.h5"
    record_run(model, schedule, SamplerConfig(sampler, **options), x_T=torch.randn(batch, *shape, generator=generator), labels=None,  # type: ignore[arg-type]
               generator=generator, out=path, tensor_dtype=dtype, progress=False, choice=choice)
    S, B, P, b = choice.kept_steps(N), len(choice.rows(batch)), math.prod(shape), np.dtype(dtype).itemsize  # noqa: N806
    with h5py.File(path, "r") as f:
        steps = f[schema.STEPS]
        n = sum(steps[k].ndim > 1 for k in steps)
        c = sum(steps[k].ndim == 1 for k in steps)
        assert steps["x_t"].shape == (S, B, *shape)  # S and B are the choice's
        attribute_bytes = sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in f.attrs.values())
        if choice.skips:
            assert schema.X_PREV in steps and schema.STEP_INDEX in steps  # n and c count them: +1 each
    predicted = formula(S, n, B, P, b, c, T)
    size = path.stat().st_size
    assert predicted < size <= predicted + h_bound(S, n, attribute_bytes), (size, predicted, size - predicted)


# -- the table ---------------------------------------------------------------------------------------------------


def table_rows() -> list[dict[str, str]]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("| options | S | n | B | b | size |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip().strip("|").split("|")), strict=True)))
    return rows


def shown(size: float) -> str:
    """A size as the table writes it: 3 significant digits, in GB or MB."""
    return f"{size / 1e9:.3g} GB" if size >= 1e9 else f"{size / 1e6:.3g} MB"


def test_the_tables_sizes_follow_from_the_formula() -> None:
    N = T = 1000  # noqa: N806
    batch, P, tensors = 64, 3 * 32 * 32, 5  # DDPM: x_t, eps, x0_pred, noise, x0_pred_raw (it clips by default)  # noqa: N806
    rows = table_rows()
    assert len(rows) == 6
    full = None
    for row in rows:
        options = re.findall(r"--(\w+) ([^ `]+)", row["options"])
        given = dict(options)
        choice = RecordChoice.from_cli(given.get("record"), given.get("every"), given.get("samples"))
        S, B = choice.kept_steps(N), len(choice.rows(batch))  # noqa: N806
        n = (tensors if choice.tensors is None else len({"x_t", *choice.tensors})) + choice.skips
        b = 2 if given.get("dtype") == "float16" else 4
        c = 7 + choice.skips
        assert (int(row["S"]), int(row["n"]), int(row["B"]), int(row["b"])) == (S, n, B, b), row
        size = formula(S, n, B, P, b, c, T)
        full = full or size
        assert row["size"] == shown(size), (row, size)
        factor = full / size
        expected = "1" if size == full else f"1/{factor:.2g}" if factor < 10 else f"1/{factor:.0f}"
        assert row["of the full trace"] == expected, (row, factor)
