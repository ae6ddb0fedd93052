"""``noisescope inspect``: what a trace holds, at a glance or as JSON, and what a run that recorded less kept.

The JSON fields are documented in docs/trace-format.md ("inspect --json").
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from tracer.cli.common import nonnegative_int, nonempty_path
from tracer.trace import schema
from tracer.trace.choice import ordinal
from tracer.trace.reader import Trace, open_trace

SUMMARISED = schema.known(schema.STEPS, "x_t", "eps", "x0_pred")  # the step tensors with per-step mean and std


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "inspect",
        help="summarise a trace: status, settings, shapes, per-step statistics",
        description="Print a trace's kind, status, steps recorded and planned, sampler settings, tensor shapes, what a run "
        "that recorded less kept (noisescope sample --record, --every, --samples, --dtype) and the per-step mean and std "
        "of x_t, eps and x0_pred.",
    )
    p.add_argument("trace", type=nonempty_path, help="the trace file (.h5)")
    p.add_argument("--json", action="store_true", help="print everything as one JSON object (every step)")
    p.add_argument("--rows", type=nonnegative_int, default=12, help="steps shown in the text table, evenly spaced (default 12; 0 = all)")
    p.set_defaults(run=run)


def step_statistics(trace: Trace, series: str = schema.STEPS) -> list[dict[str, Any]]:
    """Per step: t and the mean and std of x_t, eps and x0_pred (float64 accumulations, one step read at a time)."""
    committed = trace.rows(series)  # first: a live trace's scalars, read next, hold at least these rows
    scalars = trace.scalars(series)
    names = [n for n in SUMMARISED if n in trace.tensor_names(series)]
    index = trace.step_indices(series)  # the run's step of each row: the row itself unless steps were skipped (--every K)
    rows = []
    for i in range(committed):  # damaged values (inf, nan) give inf or nan statistics, without warnings
        row: dict[str, Any] = {"step": int(index[i]) if i < len(index) else i, "t": int(scalars["t"][i]) if "t" in scalars else None}
        for name in names:
            with np.errstate(all="ignore"):
                values = trace.tensor(name, i, series).astype(np.float64)
                row[f"{name}_mean"] = float(values.mean())
                row[f"{name}_std"] = float(values.std())
        rows.append(row)
    return rows


# What a "running" status means, by whether its writer still runs (Trace.writer_state).
WRITER_NOTE: dict[str, dict[str, str]] = {
    "running": {"gone": " (its writer is gone: the run was killed before it could close the trace)",
                "alive": " (being written)"},
}


def summary(trace: Trace) -> dict[str, Any]:
    info: dict[str, Any] = {
        "path": str(trace.path),
        "format": schema.FORMAT,
        "schema_version": trace.schema_version,
        "kind": trace.kind,
        "status": trace.status,
        "writer": trace.writer_state(),  # alive, gone or unknown (tracer/trace/liveness.py)
        "created": trace.created,
        "tensor_dtype": trace.tensor_dtype,
        "recovered_from": trace.recovered_from,
        "config": trace.config,
        "schedule": None,
        "series": {},
    }
    if trace.schedule is not None:
        info["schedule"] = {"name": trace.schedule.name, "T": trace.schedule.T, "zero_terminal_snr": trace.schedule.zero_terminal_snr}
    for name in schema.SERIES:
        if trace.has_series(name):
            shapes = {field: list(shape) for field, (shape, _) in trace.field_specs(name).items()}
            info["series"][name] = {"recorded": trace.rows(name), "planned": trace.planned(name), "shapes": shapes}
    if trace.kind == "sampling":
        info["steps_recorded"] = trace.num_steps
        info["steps_planned"] = trace.planned()
        info["sample_shape"] = list(trace.sample_shape)
        info["batch"] = trace.batch_size
        recorded = trace.recorded
        info["record"] = None if recorded is None else recorded.to_json()
        info["sample_indices"] = list(trace.sample_indices())
        info["step_indices"] = [int(k) for k in trace.step_indices()]
        info["steps"] = step_statistics(trace)
    else:
        train = trace.series(schema.TRAIN) if trace.has_series(schema.TRAIN) else {}
        loss, step = schema.known(schema.TRAIN, "loss", "step")
        if train.get(loss) is not None and len(train[loss]):
            info["last_loss"] = float(train[loss][-1])
            info["last_step"] = int(train[step][-1]) if step in train else None
    return info


def _text(info: dict[str, Any], rows: int) -> str:
    lines = [
        f"{info['path']}",
        f"  kind      {info['kind']}   status {info['status']}{WRITER_NOTE.get(info['status'], {}).get(info['writer'], '')}   "
        f"schema v{info['schema_version']}   created {info['created']}",
    ]
    if info["recovered_from"]:
        lines.append(f"  recovered from {info['recovered_from']}")
    if info["schedule"]:
        zero_snr = ", zero terminal SNR (alpha_bar[T-1] = 0)" if info["schedule"]["zero_terminal_snr"] else ""
        lines.append(f"  schedule  {info['schedule']['name']}, T = {info['schedule']['T']}{zero_snr}")
    sampler = info["config"].get("sampler")
    if isinstance(sampler, dict):
        settings = ", ".join(f"{k}={v}" for k, v in sampler.items() if v is not None)
        lines.append(f"  sampler   {settings}")
    for name, series in info["series"].items():
        shapes = ", ".join(f"{f}{tuple(s)}" for f, s in series["shapes"].items() if s)
        # A recording-API trace whose caller did not say how many steps its loop makes has no plan (0).
        planned = f"of {series['planned']} planned rows" if series["planned"] else "rows (no plan recorded)"
        lines.append(f"  {name:<9} {series['recorded']} {planned}   tensors: {shapes or '-'}")
    if info["kind"] == "sampling":
        lines.append(f"  tensors   {info['tensor_dtype']}, batch {info['batch']}, sample shape {tuple(info['sample_shape'])}")
        lines += _recorded_lines(info)
        steps = info["steps"]
        if steps:
            shown = steps if rows <= 0 or len(steps) <= rows else [steps[int(i)] for i in np.unique(np.linspace(0, len(steps) - 1, rows).round())]
            header = f"  {'step':>5} {'t':>5}" + "".join(f" {n + ' mean':>13} {n + ' std':>12}" for n in SUMMARISED if f"{n}_mean" in steps[0])
            lines += ["", header]
            for row in shown:
                cells = "".join(f" {row[f'{n}_mean']:>13.4f} {row[f'{n}_std']:>12.4f}" for n in SUMMARISED if f"{n}_mean" in row)
                lines.append(f"  {row['step']:>5} {row['t']:>5}{cells}")
            if len(shown) < len(steps):
                lines.append(f"  ({len(shown)} of {len(steps)} steps shown; --rows 0 for all, --json for everything)")
    elif "last_loss" in info:
        lines.append(f"  last loss {info['last_loss']:.5f} at step {info['last_step']}")
    return "\n".join(lines)


def _recorded_lines(info: dict[str, Any]) -> list[str]:
    """What a trace that records less than everything kept (tracer/trace/choice.py), a few lines; none for everything."""
    record = info.get("record")
    if not record:
        return []
    kept = ", ".join(sorted(f for f, s in info["series"].get(schema.STEPS, {}).get("shapes", {}).items() if len(s) > 1))
    chosen = "every tensor the sampler yields" if record["tensors"] is None else "--record " + ",".join(record["tensors"]) + "; x_t always"
    lines = [f"  recorded  tensors {kept} ({chosen}" + (", x_prev with --every" if record["every"] > 1 else "") + ")"]
    if record["left_out"]:
        lines.append(f"            left out: {', '.join(record['left_out'])}")
    steps = info["step_indices"]
    if record["every"] > 1:
        lines.append(f"            every {ordinal(record['every'])} step and the last: {len(steps)} of {record['steps'] or '?'} steps "
                     f"(steps {_list(steps)})")
    else:
        lines.append("            every step")
    rows, batch = info["sample_indices"], record["batch"]
    if record["samples"] is not None:
        start, stop, step = record["samples"]
        lines.append(f"            samples {start}:{stop}" + (f":{step}" if step != 1 else "") + f" of a batch of {batch}: "
                     f"{len(rows)} kept (samples {_list(rows)})")
    else:
        lines.append(f"            the whole batch of {batch}")
    lines.append(f"            tensors stored as {info['tensor_dtype']}")
    return lines


def _list(values: list[int], shown: int = 6) -> str:
    """A list of integers, its middle elided when long."""
    if len(values) <= shown:
        return ", ".join(map(str, values))
    return ", ".join(map(str, values[: shown - 2])) + ", ..., " + ", ".join(map(str, values[-2:]))


def run(args: argparse.Namespace) -> int:
    with open_trace(args.trace) as trace:
        info = summary(trace)
    print(json.dumps(info, indent=2) if args.json else _text(info, args.rows))
    return 0
