"""``noisescope recover``: a clean copy of what a crashed or killed writer committed."""

from __future__ import annotations

import argparse
from typing import Any

from tracer.cli.common import check_output, nonempty_path
from tracer.trace.recover import recover


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "recover",
        help="write a clean copy of a trace whose writer crashed or was killed",
        description="Copy every step a trace committed (all of them for a complete trace) into a new, closed trace. "
        "The copy's status is 'complete' if the source completed, 'failed' otherwise.",
    )
    p.add_argument("trace", type=nonempty_path, help="the trace to recover (a .NAME.h5.partial left by a failed --overwrite run too)")
    p.add_argument("--out", type=nonempty_path, help="where to write the copy (default: TRACE.recovered.h5 beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_output(args.out, {"the trace being recovered": args.trace})
    out, kept = recover(args.trace, args.out, overwrite=args.overwrite)
    rows = ", ".join(f"{name}: {count} rows" for name, count in kept.items())
    print(f"wrote {out} ({rows})")
    return 0
