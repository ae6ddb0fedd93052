"""``noisescope diff A.h5 B.h5``: where two sampling traces part (tracer/diff.py). Exit 0 agree, 1 differ, 2 bad input."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tracer.cli.common import float_in, nonempty_path

EXIT_AGREE, EXIT_DIFFER = 0, 1

EPILOG = """examples:
  noisescope diff ours_ddim.h5 diffusers_ddim.h5
  noisescope diff ddim50.h5 ddpm1000.h5 --tol 1e-3 --json > diff.json
lined up: step by step when the traces have as many steps (their timesteps compared too), else by noise
  level (the steps at the same alpha_bar_t); samples by their index in the run's batch (a trace recorded with
  --samples is compared on the samples both keep). gap = max |A - B| / max(1, max |A|, max |B|), per tensor.
exit codes: 0 they agree (every compared value within the tolerance), 1 they part (the report names the
  first step and tensor, by how much, and how the gap grows), 2 bad input (not sampling traces, other
  sample shapes, runs of other batch sizes, no shared sample or noise level, a bad --tol)
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="where two sampling traces part: the first step and tensor beyond a tolerance, and how the gap grows",
        description="Line two sampling traces up (step by step, or by noise level where their step counts differ), "
        "compare every step tensor both hold and the final samples, and report the first step where they part beyond "
        "the tolerance, by how much, and how the gap grows from there.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", type=nonempty_path, metavar="A.h5", help="the first sampling trace")
    p.add_argument("b", type=nonempty_path, metavar="B.h5", help="the second sampling trace")
    p.add_argument("--tol", type=float_in(0.0, low_open=True), help="relative tolerance of a gap (default 1e-5 for float32 traces, 1e-2 "
                   "where either holds float16)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON: every pair's gaps")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tracer.diff import diff_dict, diff_traces, format_diff
    from tracer.trace.reader import open_trace

    with open_trace(args.a) as a, open_trace(args.b) as b:
        result = diff_traces(a, b, tol=args.tol, path_a=str(args.a), path_b=str(args.b))
    print(json.dumps(diff_dict(result), indent=1) if args.json else format_diff(result))
    return EXIT_AGREE if result.agree else EXIT_DIFFER
