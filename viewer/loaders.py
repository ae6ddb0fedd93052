"""Cached loaders over the trace reader: what the viewer reads, and how long it keeps it.

- One open ``Trace`` per file, shared by every session (``st.cache_resource``), keyed on
  path and inode: a trace replaced on disk (a new inode) is opened afresh.
- Whole-trace summaries that are O(steps) small (scalars, per-step statistics, colour
  ranges, 2-D trajectories, aligned distances) are cached keyed on path, inode and the
  committed row count, so a live trace refreshes as rows arrive and a finished one is
  read once.
- One step's tensors are read on demand (one chunk per tensor) and never cached, so
  memory does not grow with the number of steps visited or with the trace's length.
- The tensors the viewer derives (viewer/symbols.py DERIVED: guidance_delta =
  eps_cond - eps_uncond; x_t_scaled = x_t / sqrt(1 + sigma_t^2) of a sigma-space
  trace) are computed here (``read_step``), from the rows and the step's scalars,
  wherever a recorded tensor would be read (``step_tensors``, ``colour_ranges``): nowhere else.

Nothing here computes the diffusion math; statistics are summaries for the plots.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from tracer.trace import schema
from tracer.trace.choice import shared_samples
from tracer.trace.reader import Trace, TraceError, open_trace
from viewer.noise import nearest, noise_level
from viewer.symbols import DERIVED

COLOUR_PROBE_STEPS = 12  # steps sampled to fix a tensor's colour range for the whole trace
COLOUR_QUANTILE = 99.5  # percentile of |value| that ends the symmetric range


@dataclass(frozen=True)
class TraceInfo:
    """What a panel needs to know about a trace before reading any tensor. Status is fresh."""

    path: str
    inode: int
    kind: str
    status: str
    rows: int  # committed rows of the main series: steps (sampling) or train (training)
    planned: int
    sample_shape: tuple[int, ...]
    batch: int
    tensors: tuple[str, ...]
    tensor_dtype: str
    config: dict[str, Any]
    schedule_T: int | None
    created: str
    recovered_from: str | None
    scalar_names: tuple[str, ...] = ()  # the per-step scalars of its steps series (sigma_t, t_flow, ...)
    # A run that recorded less (noisescope sample --record/--every/--samples, tracer/trace/choice.py): the run's batch index
    # of each stored sample (() where the whole batch is stored), and what it kept and left out, for people ("" for everything).
    sample_indices: tuple[int, ...] = ()
    recorded: str = ""
    run_steps: int = 0  # the run's planned steps where the trace keeps only some (--every K); 0 otherwise
    # The file says "running" but its writer is gone (tracer/trace/liveness.py: killed before it could close the trace):
    # ``status`` is then "failed", as the run's, so that nothing waits for rows that will not come.
    killed: bool = False

    @property
    def run_samples(self) -> tuple[int, ...]:
        """The run's batch index of each stored sample: ``sample_indices``, or 0 .. batch - 1 where the whole batch is stored
        (the reader's ``Trace.sample_indices``)."""
        return self.sample_indices or tuple(range(self.batch))

    @property
    def is_2d(self) -> bool:
        return self.sample_shape == (2,)

    @property
    def is_image(self) -> bool:
        return len(self.sample_shape) == 3


@dataclass
class TraceHandle:
    """An open trace with a lock (Streamlit runs sessions on threads) and per-step statistics computed once."""

    trace: Trace
    lock: threading.RLock = field(default_factory=threading.RLock)
    stats: dict[str, list[float]] = field(default_factory=lambda: {"std_x_t": [], "rms_eps": []})
    memo: dict[Any, Any] = field(default_factory=dict)  # results valid for a given row count (e.g. failing steps)


def stat_key(path: Path) -> tuple[str, int]:
    """(path, inode) of a file; raises TraceError (one line) if it is gone."""
    try:
        st_result = os.stat(path)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except OSError as error:
        raise TraceError(f"{path} cannot be read: {error.strerror}") from None
    return str(path), int(st_result.st_ino)


def checked_open(path: str | Path) -> Trace:
    """open_trace, with any low-level failure of a damaged file (h5py raises RuntimeError for some) as one TraceError line."""
    try:
        return open_trace(path)
    except TraceError:
        raise
    except Exception as error:  # noqa: BLE001 - a corrupt file must never surface as a traceback
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TraceError(f"{path} is truncated or corrupt: {first}") from None


@st.cache_resource(max_entries=32, show_spinner=False)
def _handle(path: str, inode: int) -> TraceHandle:
    return TraceHandle(checked_open(path))


def open_handle(path: Path | str) -> TraceHandle:
    """The shared open trace at ``path`` (opened on first use); raises TraceError for a bad file."""
    key_path, inode = stat_key(Path(path))
    handle = _handle(key_path, inode)
    with handle.lock:
        handle.trace.refresh()
    return handle


def main_series(trace: Trace) -> str:
    return schema.STEPS if trace.kind == "sampling" else schema.TRAIN


def _static(handle: TraceHandle) -> dict[str, Any]:
    """What cannot change while a trace is open: looked up once per handle."""
    trace = handle.trace
    schedule = trace.schedule
    return {
        "path": str(trace.path),
        "inode": int(os.stat(trace.path).st_ino),
        "kind": trace.kind,
        "sample_shape": trace.sample_shape,
        "batch": trace.batch_size,
        "tensors": tuple(trace.tensor_names(schema.STEPS)),
        "scalar_names": tuple(n for n in trace.field_names(schema.STEPS) if n not in trace.tensor_names(schema.STEPS))
        if trace.kind == "sampling" else (),
        "tensor_dtype": trace.tensor_dtype,
        "config": trace.config,
        "schedule_T": None if schedule is None else schedule.T,
        "created": trace.created,
        "recovered_from": trace.recovered_from,
        **_recorded(trace),
    }


def _recorded(trace: Trace) -> dict[str, Any]:
    """sample_indices and recorded of TraceInfo: what a run that recorded less kept (the reader's ``recorded``)."""
    recorded = trace.recorded if trace.kind == "sampling" else None
    if recorded is None:
        return {}
    note = recorded.choice.describe(recorded.batch)
    if recorded.left_out:
        note += f"; not recorded: {', '.join(recorded.left_out)}"
    return {"sample_indices": tuple(recorded.rows) if recorded.choice.samples is not None else (), "recorded": note,
            "run_steps": recorded.steps if recorded.choice.skips else 0}


def static_info(handle: TraceHandle) -> dict[str, Any]:
    with handle.lock:
        static = handle.memo.get("static")
        if static is None:
            static = handle.memo["static"] = _static(handle)
        return static  # type: ignore[no-any-return]


def info(handle: TraceHandle) -> TraceInfo:
    """A summary whose status and committed rows are read fresh from the file on every call; a trace whose writer was
    killed before it closed it reads as failed (``killed``)."""
    trace = handle.trace
    static = static_info(handle)
    with handle.lock:
        series = main_series(trace)
        killed = trace.abandoned
        return TraceInfo(status="failed" if killed else trace.status, rows=trace.rows(series), planned=trace.planned(series),
                         killed=killed, **static)


def read_row(handle: TraceHandle, name: str, i: int, rows: int, series: str = schema.STEPS) -> np.ndarray:
    """Row ``i`` of ``series/name`` as float32, for ``i`` below the committed row count ``rows`` the reader reported.

    ``Trace.tensor``, one chunk: every read goes through the reader's one handle per dataset.
    """
    if not 0 <= i < rows:
        raise IndexError(f"step {i} is out of range: {rows} steps recorded")
    with handle.lock:
        return handle.trace.tensor(name, i, series)


def derivable(present: Sequence[str], scalars: Sequence[str] = ()) -> tuple[str, ...]:
    """The derived tensors (symbols.DERIVED) a trace can show: those whose every term is among its step tensors
    ``present`` and every scalar among its per-step ``scalars`` (x_t_scaled needs sigma_t: sigma-space traces only)."""
    return tuple(name for name, derived in DERIVED.items()
                 if all(term in present for term in derived.terms) and all(name in scalars for name in derived.scalars))


def scalar_at(handle: TraceHandle, name: str, i: int, rows: int, series: str = schema.STEPS) -> float:
    """Row ``i`` of a per-step scalar; the column is read once per handle and again only when a live trace grows past it."""
    if not 0 <= i < rows:
        raise IndexError(f"step {i} is out of range: {rows} steps recorded")
    with handle.lock:
        key = ("column", series, name)
        column = handle.memo.get(key)
        if column is None or len(column) <= i:
            column = handle.memo[key] = np.asarray(handle.trace.column(name, series), dtype=np.float64)
        return float(column[i])


def derive(name: str, terms: Sequence[np.ndarray], scalars: Sequence[float]) -> np.ndarray:
    """A derived tensor (symbols.DERIVED[name]) from its terms' rows and its scalars' values at the step, float32."""
    op = DERIVED[name].op
    if op == "difference":
        return (terms[0] - terms[1]).astype(np.float32)
    if op == "vp_input":  # x_t / sqrt(1 + sigma_t^2), in float64 (sigma_t up to ~160)
        return (terms[0].astype(np.float64) / np.sqrt(1.0 + scalars[0] ** 2)).astype(np.float32)
    raise ValueError(f"unknown derived tensor operation {op!r}")


def read_step(handle: TraceHandle, name: str, i: int, rows: int, series: str = schema.STEPS,
              read: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Row ``i`` of a recorded tensor (``read_row``), or of a derived one (``derive``: from its terms' rows and the
    step's scalars), float32.

    ``read`` keeps the rows already read in one call (eps_cond shown beside guidance_delta is read once).
    """
    read = {} if read is None else read
    if name not in read:
        if name in DERIVED:
            derived = DERIVED[name]
            terms = [read_step(handle, term, i, rows, series, read) for term in derived.terms]
            read[name] = derive(name, terms, [scalar_at(handle, s, i, rows, series) for s in derived.scalars])
        else:
            read[name] = read_row(handle, name, i, rows, series)
    return read[name]


# -- whole-trace summaries, cached on (path, inode, rows) ---------------------------------------------


@st.cache_data(max_entries=64, show_spinner=False)
def scalars(path: str, inode: int, rows: int, series: str = schema.STEPS) -> dict[str, np.ndarray]:
    """Every per-row scalar of ``series``, cut to ``rows`` committed rows."""
    handle = _handle(path, inode)
    with handle.lock:
        return {name: values[:rows] for name, values in handle.trace.scalars(series).items()}


@st.cache_data(max_entries=32, show_spinner=False)
def schedule_arrays(path: str, inode: int) -> dict[str, np.ndarray] | None:
    """beta, alpha, alpha_bar of the trace's schedule (float64), or None if it has none."""
    handle = _handle(path, inode)
    with handle.lock:
        schedule = handle.trace.schedule
    if schedule is None:
        return None
    return {"beta": np.asarray(schedule.beta), "alpha": np.asarray(schedule.alpha), "alpha_bar": np.asarray(schedule.alpha_bar)}


@st.cache_data(max_entries=32, show_spinner=False)
def final_array(path: str, inode: int, name: str, written: bool) -> np.ndarray | None:
    """A root dataset written at the end (samples, labels, ...), or None; ``written`` keys the cache on progress/final."""
    handle = _handle(path, inode)
    with handle.lock:
        return handle.trace.final(name)


def has_final(handle: TraceHandle) -> bool:
    with handle.lock:
        return handle.trace.has_final()


def step_stats(handle: TraceHandle, rows: int) -> dict[str, np.ndarray]:
    """Per step: std of x_t over the batch, and the RMS of eps, ||eps||_2 / sqrt(d) (for the scalar plots).

    Computed once per step in float64, one step read at a time; new rows of a live trace
    are added as they arrive.
    """
    names = static_info(handle)["tensors"]
    with handle.lock:
        for i in range(len(handle.stats["std_x_t"]), rows):
            x_t = read_row(handle, "x_t", i, rows).astype(np.float64) if "x_t" in names else None
            eps = read_row(handle, "eps", i, rows).astype(np.float64) if "eps" in names else None
            handle.stats["std_x_t"].append(float(x_t.std()) if x_t is not None else float("nan"))
            handle.stats["rms_eps"].append(float(np.sqrt(np.mean(eps**2))) if eps is not None else float("nan"))
        return {name: np.asarray(values[:rows]) for name, values in handle.stats.items()}


def probe_steps(rows: int, count: int = COLOUR_PROBE_STEPS) -> np.ndarray:
    """Evenly spaced step indices, first and last included."""
    if rows <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, rows - 1, min(count, rows)).round().astype(np.int64))


@st.cache_data(max_entries=64, show_spinner=False)
def colour_ranges(path: str, inode: int, rows: int, names: tuple[str, ...], series: str = schema.STEPS) -> dict[str, tuple[float, float]]:
    """A symmetric range (-q, q) per tensor: q is the median over a dozen evenly spaced steps of each step's
    99.5th percentile of |value|.

    Fixed for the whole trace, so the colour scale does not jump from step to step; the
    median keeps a few extreme steps (x0_pred at the noisiest t, where 1/sqrt(alpha_bar_t)
    is large) from washing out all the others, which saturate instead.
    """
    handle = _handle(path, inode)
    out: dict[str, tuple[float, float]] = {}
    with handle.lock:
        for name in names:
            per_step = [float(np.percentile(np.abs(read_step(handle, name, int(i), rows, series)), COLOUR_QUANTILE)) for i in probe_steps(rows)]
            if not per_step:
                out[name] = (-1.0, 1.0)
                continue
            q = float(np.median(per_step))
            q = q if np.isfinite(q) and q > 0 else 1.0
            out[name] = (-q, q)
    return out


def step_tensors(handle: TraceHandle, i: int, names: Sequence[str], samples: Sequence[int], rows: int) -> dict[str, np.ndarray]:
    """Step tensors of row ``i`` (of ``rows`` committed) for the chosen samples, [N, *D] float32: one chunk each, not cached.

    A derived name (``derivable``: guidance_delta of a guided trace, x_t_scaled of a sigma-space one) is computed by ``read_step``;
    a name the trace neither records nor can derive is left out.
    """
    index = np.asarray(samples, dtype=np.int64)
    static = static_info(handle)
    present = static["tensors"]
    shown = set(present) | set(derivable(present, static["scalar_names"]))
    read: dict[str, np.ndarray] = {}
    return {name: read_step(handle, name, i, rows, read=read)[index] for name in names if name in shown}


@st.cache_data(max_entries=16, show_spinner=False)
def trajectory(path: str, inode: int, rows: int, name: str = "x_t") -> np.ndarray:
    """All rows of a small tensor field, [S, B, *D] float32: for 2-D point clouds and their trajectories."""
    handle = _handle(path, inode)
    with handle.lock:
        return np.asarray(handle.trace.column(name)[:rows], dtype=np.float32)


def nearest_steps(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each value of the reference (a t, or a noise level), the step of the other trace whose value is closest
    (ties: the earlier step; viewer/noise.py ``nearest``)."""
    return nearest(ref, other)


def step_levels(path: str, inode: int, rows: int, measure: str | None) -> np.ndarray | None:
    """Each step's noise level in ``measure`` (viewer/noise.py) from its recorded alpha_bar_t; None where the trace does not
    record alpha_bar_t, or ``measure`` is None."""
    alpha_bar = scalars(path, inode, rows).get("alpha_bar_t") if measure is not None else None
    return None if alpha_bar is None or measure is None else noise_level(alpha_bar, measure)


@st.cache_data(max_entries=32, show_spinner=False)
def aligned_distance(
    path_a: str, inode_a: int, rows_a: int, path_b: str, inode_b: int, rows_b: int, name: str, measure: str | None = None,
    batch_rows_a: tuple[int, ...] | None = None, batch_rows_b: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(x of A, distance) over A's steps: mean over the compared samples of ||A_i - B_j|| / sqrt(d), j the step of B nearest
    to A's step i in noise level ``measure`` (log_snr, sigma, flow_t: viewer/noise.py, from alpha_bar_t), x A's level in it;
    by t (x the t of A) where ``measure`` is None or a trace lacks alpha_bar_t.

    Samples are paired by the run's sample index, not by row: row ``batch_rows_a[k]`` of A against row ``batch_rows_b[k]``
    of B (the rows of the same samples of the run; the arguments key the cache). Left out, they are the samples both
    traces keep (tracer/trace/choice.py ``shared_samples`` of the readers' ``sample_indices``: for two whole batches,
    their common leading samples). TraceError where no sample is paired.
    """
    handle_a, handle_b = _handle(path_a, inode_a), _handle(path_b, inode_b)
    if batch_rows_a is None or batch_rows_b is None:
        with handle_a.lock, handle_b.lock:
            _, (pick_a, pick_b) = shared_samples(handle_a.trace.sample_indices(), handle_b.trace.sample_indices())
    else:
        pick_a, pick_b = list(batch_rows_a), list(batch_rows_b)
    if len(pick_a) != len(pick_b):
        raise ValueError(f"{len(pick_a)} rows of A paired with {len(pick_b)} of B: give one row of each for every sample")
    if not pick_a:
        raise TraceError(f"{path_a} and {path_b} keep no sample of the run in common: no distance to compute")
    level_a, level_b = step_levels(path_a, inode_a, rows_a, measure), step_levels(path_b, inode_b, rows_b, measure)
    if level_a is None or level_b is None:
        level_a = scalars(path_a, inode_a, rows_a)["t"]
        level_b = scalars(path_b, inode_b, rows_b)["t"]
    match = nearest_steps(level_a, level_b)
    distance = np.full(rows_a, np.nan)
    for i in range(rows_a):
        a = read_row(handle_a, name, i, rows_a).astype(np.float64)
        b = read_row(handle_b, name, int(match[i]), rows_b).astype(np.float64)
        if a.shape[1:] != b.shape[1:]:
            raise TraceError(f"{name} has shape {a.shape[1:]} in one trace and {b.shape[1:]} in the other: they cannot be compared")
        diff = (a[pick_a] - b[pick_b]).reshape(len(pick_a), -1)
        distance[i] = float(np.mean(np.linalg.norm(diff, axis=1) / np.sqrt(diff.shape[1])))
    return level_a, distance


@st.cache_data(max_entries=32, show_spinner=False)
def parting(path_a: str, inode_a: int, rows_a: int, path_b: str, inode_b: int, rows_b: int) -> dict[str, Any]:
    """``noisescope diff`` of two traces (tracer/diff.py): its JSON document without the per-pair gaps, plus ``error``
    (one line) where they cannot be compared. Keyed by the row counts: a live trace is compared again as it grows."""
    from tracer.diff import DiffError, diff_dict, diff_traces

    handle_a, handle_b = _handle(path_a, inode_a), _handle(path_b, inode_b)
    with handle_a.lock, handle_b.lock:
        try:
            doc = diff_dict(diff_traces(handle_a.trace, handle_b.trace, path_a=path_a, path_b=path_b))
        except DiffError as error:
            return {"error": str(error)}
    doc.pop("pairs")
    return doc


@st.cache_data(max_entries=32, show_spinner=False)
def findings(path: str, inode: int, rows: int, registry_name: str, _registry: Any) -> list[Any]:
    """The registry's ``trace_findings`` of a trace (tracer/equations/findings.py: one pass over its rows), computed once
    per file and committed row count; ``registry_name`` keys the cache on the registry (``_registry`` is not hashed)."""
    handle = _handle(path, inode)
    with handle.lock:
        return list(_registry.trace_findings(handle.trace))


# -- training traces -------------------------------------------------------------------------------


@st.cache_data(max_entries=32, show_spinner=False)
def train_log(path: str, inode: int, rows: int) -> dict[str, np.ndarray]:
    """The ``train`` series (step, loss, lr, grad_norm, loss_by_bucket), committed rows only."""
    handle = _handle(path, inode)
    with handle.lock:
        if not handle.trace.has_series(schema.TRAIN):
            return {}
        return {name: values[:rows] for name, values in handle.trace.series(schema.TRAIN).items()}


def series_rows(handle: TraceHandle, series: str) -> int:
    with handle.lock:
        return handle.trace.rows(series)


@st.cache_data(max_entries=32, show_spinner=False)
def series_scalars(path: str, inode: int, rows: int, series: str) -> dict[str, np.ndarray]:
    """The scalar fields of a series (e.g. snapshots/step, examples/t), committed rows only."""
    handle = _handle(path, inode)
    with handle.lock:
        if not handle.trace.has_series(series):
            return {}
        return {name: values[:rows] for name, values in handle.trace.scalars(series).items()}


def json_attr(handle: TraceHandle, name: str) -> Any:
    with handle.lock:
        try:
            return handle.trace.json_attr(name)
        except ValueError:
            return None


def tensor_row(handle: TraceHandle, name: str, i: int, series: str) -> np.ndarray:
    """One row of a tensor field of any series, float32 (not cached)."""
    with handle.lock:
        return handle.trace.tensor(name, i, series)


def memo(handle: TraceHandle, key: Any, compute: Any) -> Any:
    """``compute()`` once per handle and key (e.g. ("failing", rows)); for results too costly to redo per rerun."""
    with handle.lock:
        if key not in handle.memo:
            handle.memo[key] = compute()
        return handle.memo[key]


@st.cache_data(max_entries=4096, show_spinner=False)
def peek_kind(path: str, mtime_ns: int, size: int) -> str:
    """'sampling' or 'training' for a readable trace, 'unreadable' otherwise (for the pickers); keyed on mtime and size."""
    try:
        with checked_open(path) as trace:
            return trace.kind
    except TraceError:
        return "unreadable"


def kind_of(path: Path) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "unreadable"
    return peek_kind(str(path), stat.st_mtime_ns, stat.st_size)
