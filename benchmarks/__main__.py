"""``make bench``: run every benchmark module and print one table of ratios.

Each ``benchmarks/bench_*.py`` exposes ``run(quick: bool) -> list[Ratio]`` (or a
list of extra Markdown lines via ``report``). ``--quick`` uses fewer repeats.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from benchmarks.common import format_table


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for a smoke run)")
    parser.add_argument("--only", help="comma-separated module names, e.g. bench_trace")
    args = parser.parse_args()
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    if args.only:
        wanted = set(args.only.split(","))
        names = [n for n in names if n in wanted]
    rows, extra = [], []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", file=sys.stderr, flush=True)
        result = module.run(quick=args.quick)
        rows.extend(result)
        if hasattr(module, "report"):
            extra.extend(module.report())
    print(format_table(rows))
    for line in extra:
        print(line)
    return 0 if all(r.verdict == "yes" for r in rows) else 1  # an undecided target is not a met one


if __name__ == "__main__":
    raise SystemExit(main())
