"""Where two sampling traces part: ``noisescope diff``.

Two traces are lined up step by step when they have as many steps (the same plan, or two
plans of one length: their timesteps are compared too, so a sampler that visits other
timesteps parts at the first step where they differ), or plan as many and one did not
finish (the steps both hold; the report says which stopped), and otherwise by noise level: a
step of A is paired with the step of B at the same alpha_bar_t (relative difference at
most ``LEVEL_RTOL``), so DDIM 50 against DDPM 1,000 on the same timesteps compares the
50 levels both visit. At each pair every step tensor both traces hold is compared, and
the final samples after the last pair (the noise z only where both steps add it, sigma > 0:
elsewhere no equation reads it); a gap is max |A - B| over the tensor divided by
max(1, max |A|, max |B|), the scale the check's tolerances use (docs/equations.md).

Samples are lined up by their index in the run's batch: a trace that kept a slice of it
(``noisescope sample --samples``, tracer/trace/choice.py) is compared on the samples both
traces keep, row for row of the same sample, never by position in the file. Traces of
runs of other batch sizes, or that keep no sample in common, are not compared.

The traces are read one step at a time through the reader: memory stays that of a few
steps whatever the trace's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from tracer.trace import schema
from tracer.trace.choice import samples_text, shared_samples
from tracer.trace.reader import Trace

LEVEL_RTOL: Final = 1e-9  # two alpha_bar_t closer than this (relative) are one noise level: float64 rounding of one formula
DEFAULT_TOL: Final = {"float32": 1e-5, "float16": 1e-2}  # as check's tensor tolerances (docs/equations.md)
SCALARS: Final = ("t", "t_prev", "alpha_bar_t", "alpha_bar_prev", "sigma")  # compared where the traces are lined up by step
NOISE: Final = "noise"  # compared only where both steps add it (sigma > 0): sigma z = 0 whatever z holds
SCALAR_TOL: Final = 1e-6  # as check's scalar tolerance
GROWTH_ROWS: Final = 10  # pairs shown in "how the gap grows"


class DiffError(ValueError):
    """Two traces that cannot be compared (not sampling traces, other sample shapes or run batches, no shared sample or noise level)."""


@dataclass(frozen=True)
class Pair:
    """Step ``a`` of A against step ``b`` of B (``b`` = -1 for the final samples, as ``a``), and each compared field's gap."""

    a: int
    b: int
    t_a: int | None
    t_b: int | None
    gaps: dict[str, float]

    @property
    def worst(self) -> tuple[str, float] | None:
        finite = [(k, v) for k, v in self.gaps.items() if not math.isnan(v)]
        nan = [(k, v) for k, v in self.gaps.items() if math.isnan(v)]
        if nan:
            return nan[0]  # a NaN on one side and not the other is the largest gap there is
        return max(finite, key=lambda kv: kv[1]) if finite else None


@dataclass
class Diff:
    """The comparison: how the traces were lined up, the tolerance, every pair's gaps, where they part."""

    path_a: str
    path_b: str
    lined_up_by: str  # "step" or "noise level"
    tol: float
    pairs: list[Pair]
    compared: list[str]  # the step tensors compared at every pair
    only_a: list[str]  # step tensors only A holds (not compared)
    only_b: list[str]
    unpaired: tuple[int, int]  # steps of A and of B that had no partner
    samples: list[int] = field(default_factory=list)  # the run's sample indices compared (those both traces keep)
    partial: bool = False  # whether a trace keeps samples the other does not (they are not compared)
    status: tuple[str, str] = ("complete", "complete")  # each trace's status (a run that did not finish: running, failed)
    final: Pair | None = None
    parts: Pair | None = field(default=None)

    @property
    def agree(self) -> bool:
        return self.parts is None

    def beyond(self, pair: Pair) -> dict[str, float]:
        """The fields of ``pair`` whose gap exceeds the tolerance (NaN on one side only counts as beyond)."""
        return {k: v for k, v in pair.gaps.items() if math.isnan(v) or v > self.tol}


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(1, max |a|, max |b|) over the finite values, in float64; NaN where a value is finite on one
    side and not on the other, or non-finite on both but not the same (inf against -inf or NaN)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    finite = np.isfinite(a64)
    if (finite != np.isfinite(b64)).any():
        return math.nan
    x, y = a64[~finite], b64[~finite]
    if not np.all((x == y) | (np.isnan(x) & np.isnan(y))):
        return math.nan
    a64, b64 = a64[finite], b64[finite]
    scale = max(1.0, float(np.abs(a64).max(initial=0.0)), float(np.abs(b64).max(initial=0.0)))
    return float(np.abs(a64 - b64).max(initial=0.0)) / scale


def _scalar_gap(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.nan
    return abs(a - b) / max(1.0, abs(a), abs(b))


def _check_comparable(a: Trace, b: Trace, path_a: str, path_b: str) -> tuple[list[int], list[int], list[int]]:
    """The run's sample indices both traces keep and the rows of A and of B holding them; DiffError where the traces
    cannot be compared."""
    for trace, path in ((a, path_a), (b, path_b)):
        if trace.kind != "sampling":
            raise DiffError(f"{path} is a {trace.kind} trace: diff compares sampling traces")
        if trace.num_steps == 0:
            raise DiffError(f"{path} has no steps recorded: nothing to compare")
    if tuple(a.sample_shape) != tuple(b.sample_shape):
        raise DiffError(f"the traces hold other shapes: {path_a} [{', '.join(map(str, a.sample_shape))}], "
                        f"{path_b} [{', '.join(map(str, b.sample_shape))}] a sample")
    if a.run_batch != b.run_batch:
        raise DiffError(f"the runs sampled batches of other sizes ({path_a} {a.run_batch}, {path_b} {b.run_batch}): "
                        "a sample's index in one is not the same sample in the other")
    kept_a, kept_b = a.sample_indices(), b.sample_indices()
    common, (rows_a, rows_b) = shared_samples(kept_a, kept_b)
    if not common:
        raise DiffError(f"{path_a} keeps samples {samples_text(kept_a)} and {path_b} samples {samples_text(kept_b)} of the "
                        f"run's batch of {a.run_batch}: no sample in common to compare")
    return common, rows_a, rows_b


def _rows(value: np.ndarray, rows: list[int] | None) -> np.ndarray:
    """The rows of ``value`` ([kept samples, ...]) holding the compared samples; None: all of them, in order."""
    return value if rows is None else value[rows]


def line_up(a: Trace, b: Trace) -> tuple[str, list[tuple[int, int]]]:
    """("step", pairs) when the traces have as many steps, or plan as many and one did not finish (the steps both
    hold); else ("noise level", the pairs at a shared alpha_bar_t)."""
    n_a, n_b = a.num_steps, b.num_steps
    planned_a, planned_b = a.planned(), b.planned()
    unfinished = a.status != "complete" or b.status != "complete"
    if n_a == n_b or (unfinished and planned_a == planned_b > 0):
        return "step", [(i, i) for i in range(min(n_a, n_b))]
    level_a = np.asarray(a.scalars()["alpha_bar_t"][:n_a], dtype=np.float64)
    level_b = np.asarray(b.scalars()["alpha_bar_t"][:n_b], dtype=np.float64)
    order = np.argsort(level_b, kind="stable")
    sorted_b = level_b[order]
    pairs = []
    for i, level in enumerate(level_a):
        k = int(np.searchsorted(sorted_b, level))
        for j in (k - 1, k):
            if 0 <= j < n_b and abs(sorted_b[j] - level) <= LEVEL_RTOL * max(abs(level), abs(sorted_b[j]), 1e-300):
                pairs.append((i, int(order[j])))
                break
    return "noise level", pairs


def diff_traces(a: Trace, b: Trace, *, tol: float | None = None, path_a: str = "A", path_b: str = "B") -> Diff:
    """Compare ``a`` and ``b`` (see the module's doc). DiffError when they cannot be compared."""
    common, rows_a, rows_b = _check_comparable(a, b, path_a, path_b)
    pick_a = None if rows_a == list(range(a.batch_size)) else rows_a  # None: every row of the trace, in order
    pick_b = None if rows_b == list(range(b.batch_size)) else rows_b
    if tol is None:
        tol = max(DEFAULT_TOL.get(a.tensor_dtype, 1e-5), DEFAULT_TOL.get(b.tensor_dtype, 1e-5))
    by, indices = line_up(a, b)
    if not indices:
        raise DiffError(f"{path_a} and {path_b} share no noise level (alpha_bar_t) and have other step counts "
                        f"({a.num_steps} and {b.num_steps}): nothing to line up")
    names_a, names_b = a.tensor_names(), b.tensor_names()
    order = [*schema.STEP_TENSORS, *schema.OPTIONAL_STEP_TENSORS]
    specs_a, specs_b = a.field_specs(), b.field_specs()  # per row: [kept samples, *shape]
    compared = [n for n in order if n in names_a and n in names_b and specs_a[n][0][1:] == specs_b[n][0][1:]]
    scalars_a, scalars_b = a.scalars(), b.scalars()
    t_a, t_b = scalars_a.get("t"), scalars_b.get("t")
    pairs = []
    for i, j in indices:
        gaps: dict[str, float] = {}
        if by == "step":
            for name in SCALARS:
                if name in scalars_a and name in scalars_b:
                    gaps[name] = _scalar_gap(float(scalars_a[name][i]), float(scalars_b[name][j]))
        for name in compared:
            if name == NOISE and not (float(scalars_a["sigma"][i]) > 0 and float(scalars_b["sigma"][j]) > 0):
                continue
            gaps[name] = _gap(_rows(a.tensor(name, i), pick_a), _rows(b.tensor(name, j), pick_b))
        pairs.append(Pair(i, j, int(t_a[i]) if t_a is not None else None, int(t_b[j]) if t_b is not None else None, gaps))
    result = Diff(path_a, path_b, by, tol, pairs, compared, [n for n in names_a if n not in compared],
                  [n for n in names_b if n not in compared], (a.num_steps - len(pairs), b.num_steps - len(pairs)),
                  common, pick_a is not None or pick_b is not None, (str(a.status), str(b.status)))
    final_a, final_b = a.final(schema.SAMPLES), b.final(schema.SAMPLES)
    if final_a is not None and final_b is not None and final_a.shape[1:] == final_b.shape[1:]:
        result.final = Pair(-1, -1, None, None, {schema.SAMPLES: _gap(_rows(final_a, pick_a), _rows(final_b, pick_b))})
    for pair in [*pairs, *([result.final] if result.final else [])]:
        if result.beyond(pair):
            result.parts = pair
            break
    return result


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.3g}"


def _where(pair: Pair, side: str) -> str:
    step, t = (pair.a, pair.t_a) if side == "a" else (pair.b, pair.t_b)
    return "the final samples" if step < 0 else f"step {step + 1}" + (f" (t = {t})" if t is not None else "")


def growth(result: Diff, rows: int = GROWTH_ROWS) -> list[Pair]:
    """Evenly spaced pairs from the parting one to the last (all of them when few), then the final samples."""
    start = result.pairs.index(result.parts) if result.parts in result.pairs else 0
    rest = result.pairs[start:]
    if len(rest) > rows:
        picks = sorted({round(k * (len(rest) - 1) / (rows - 1)) for k in range(rows)})
        rest = [rest[k] for k in picks]
    return rest + ([result.final] if result.final is not None else [])


def _unpaired(result: Diff) -> str:
    """The steps with no partner, in words ("" where every step has one)."""
    if not any(result.unpaired):
        return ""
    if result.lined_up_by == "step":  # one trace stopped early: its partner's steps past its last
        side, k = ("A", result.unpaired[0]) if result.unpaired[0] else ("B", result.unpaired[1])
        return f" ({k} step{'s' if k != 1 else ''} of {side} past the other's last)"
    return f" ({result.unpaired[0]} steps of A and {result.unpaired[1]} of B at levels the other does not visit)"


def format_diff(result: Diff) -> str:
    lines = [f"A: {result.path_a}", f"B: {result.path_b}",
             f"lined up by {result.lined_up_by}: {len(result.pairs)} pair{'s' if len(result.pairs) != 1 else ''}"
             + _unpaired(result)
             + f"; compared: {', '.join(result.compared) or 'no step tensor'}"
             + (", samples" if result.final is not None else "")]
    if result.partial:
        lines.append(f"samples compared: {samples_text(result.samples)} of the run's batch (the samples both traces keep)")
    for side, status in (("A", result.status[0]), ("B", result.status[1])):
        if status != "complete":
            lines.append(f"{side} did not finish (status {status}): only the steps it holds are compared, and its final samples are "
                         "not in the trace")
    if result.only_a or result.only_b:
        lines.append("not compared (held by one trace only, or of other shapes): "
                     + "; ".join(f"{side} {', '.join(names)}" for side, names in (("A", result.only_a), ("B", result.only_b)) if names))
    gap_note = "gap = max |A - B| / max(1, max |A|, max |B|)"
    if result.parts is None:
        worst = max(((p, *p.worst) for p in [*result.pairs, *([result.final] if result.final else [])] if p.worst),
                    key=lambda x: x[2], default=None)
        where = (f"; largest gap {_fmt(worst[2])} ({worst[1]}, A {_where(worst[0], 'a')})" if worst and worst[2] > 0
                 else "; every compared value is identical")
        lines.append(f"AGREE: every compared value within {result.tol:g} ({gap_note}){where}")
        return "\n".join(lines)
    pair = result.parts
    beyond = result.beyond(pair)
    lines.append(f"PART at A {_where(pair, 'a')}, B {_where(pair, 'b')}: "
                 + ", ".join(f"{k} by {_fmt(v)}" for k, v in sorted(beyond.items(), key=lambda kv: -kv[1] if not math.isnan(kv[1]) else -math.inf))
                 + f" (tolerance {result.tol:g}; {gap_note})")
    if "t" in beyond and pair.t_a is not None:
        lines.append(f"  they visit other timesteps there: t = {pair.t_a} in A, {pair.t_b} in B")
    lines.append("how the gap grows (the largest gap of each pair, over every compared value):")
    lines.append(f"  {'A':>22}  {'B':>22}  {'gap':>9}  field")
    for p in growth(result):
        largest = p.worst
        lines.append(f"  {_where(p, 'a'):>22}  {_where(p, 'b'):>22}  {_fmt(largest[1]) if largest else '-':>9}  "
                     f"{largest[0] if largest else ''}")
    return "\n".join(lines)


def _json(x: float) -> float | str:
    return "nan" if math.isnan(x) else x


def _pair_dict(p: Pair) -> dict[str, Any]:
    return {"step_a": p.a if p.a >= 0 else None, "step_b": p.b if p.b >= 0 else None, "t_a": p.t_a, "t_b": p.t_b,
            "final": p.a < 0, "gaps": {k: _json(v) for k, v in p.gaps.items()}}


def diff_dict(result: Diff) -> dict[str, Any]:
    """The --json document (docs/diff.md): steps counted from 0."""
    parts: dict[str, Any] | None = None
    if result.parts is not None:
        parts = {**_pair_dict(result.parts), "beyond": {k: _json(v) for k, v in result.beyond(result.parts).items()}}
    return {"a": result.path_a, "b": result.path_b, "lined_up_by": result.lined_up_by, "tolerance": result.tol,
            "agree": result.agree, "compared": result.compared, "only_a": result.only_a, "only_b": result.only_b,
            "unpaired": {"a": result.unpaired[0], "b": result.unpaired[1]}, "samples": result.samples, "status": {"a": result.status[0], "b": result.status[1]}, "parts": parts,
            "pairs": [_pair_dict(p) for p in result.pairs], "final": _pair_dict(result.final) if result.final else None}
