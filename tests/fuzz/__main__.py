"""``python -m tests.fuzz``: run the fuzz harness; ``--only N --keep DIR`` replays one mutant and keeps its files.

Prints the seed, counts per mutation kind and outcome, the violations and a summary line; writes
the grouped findings to ``--findings`` (default /tmp/fuzz_findings.txt). Exit code 0 when no
mutant broke a rule, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz.bases import build_bases
from tests.fuzz.crash import SECTION as CRASH_SECTION
from tests.fuzz.runner import (
    CALL_TIMEOUT,
    Context,
    MutantResult,
    findings_text,
    result_json,
    run_mutants,
    summary_line,
    summary_table,
    violation_table,
)


def default_seed() -> int:
    """NOISESCOPE_FUZZ_SEED, else today's date as YYYYMMDD (UTC): a new seed each day, the same all day."""
    env = os.environ.get("NOISESCOPE_FUZZ_SEED")
    return int(env) if env else int(dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    p.add_argument("--seed", type=int, default=None, help="run seed (default: $NOISESCOPE_FUZZ_SEED or today's date)")
    p.add_argument("--count", type=int, default=300, help="mutants to run (default 300)")
    p.add_argument("--start", type=int, default=0, help="first mutant index (default 0)")
    p.add_argument("--only", type=int, action="append", help="run just this mutant index (repeatable); prints every call")
    p.add_argument("--workers", type=int, default=2, help="mutants run at once (default 2)")
    p.add_argument("--timeout", type=float, default=CALL_TIMEOUT, help=f"seconds per call before it is a hang (default {CALL_TIMEOUT:g})")
    p.add_argument("--keep", type=Path, help="keep the bases, mutants and recovered copies in this directory")
    p.add_argument("--bases", type=Path, help="directory of the base traces (built if missing; default: under --keep or a temp dir)")
    p.add_argument("--findings", default="/tmp/fuzz_findings.txt", help="grouped findings file ('' for none)")
    p.add_argument("--json", type=Path, help="write every result as JSON lines here")
    return p.parse_args(argv)


def show_one(result: MutantResult) -> None:
    print(result.mutant.label)
    if result.make_error:
        print(f"  could not make it: {result.make_error}")
    for call in result.calls:
        if call.command == "make":
            continue
        state = ("HANG" if call.hang else f"signal {call.signal}" if call.signal else
                 f"exception {call.exception}" if call.exception else f"exit {call.exit_code}")
        print(f"  {call.command:<14} {state}  ({call.seconds:.2f} s)  {' '.join(call.argv)}")
        for line in call.stderr.strip().splitlines()[:5]:
            print(f"      stderr: {line[:200]}")
        for e in call.api_errors[:5]:
            print(f"      api: {e['call']}: {e['type']} at {e['where']} (raised at {e['raised_at']}): {e['message']}")
        for message in call.trace_errors[:3]:
            print(f"      TraceError: {message[:200]}")
        for note in call.api_notes[:3]:
            print(f"      note: {note}")
    for v in result.violations:
        print(f"  VIOLATION [{v.rule}] {v.command}: {v.what}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else default_seed()
    print(f"fuzz seed {seed} (replay: NOISESCOPE_FUZZ_SEED={seed} or --seed {seed})", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="noisescope-fuzz-")) if args.keep is None else args.keep
    bases_dir = args.bases or scratch / "bases"
    started = time.monotonic()
    bases = build_bases(bases_dir)
    print(f"bases in {bases_dir} ({time.monotonic() - started:.1f} s)", flush=True)
    context = Context(seed=seed, bases=bases, work=scratch / "mutants", keep=args.keep is not None, timeout=args.timeout)
    indices = args.only or range(args.start, args.start + args.count)
    done = [0]

    def tick(result: MutantResult) -> None:
        done[0] += 1
        if args.only:
            show_one(result)
        elif done[0] % 250 == 0:
            print(f"  {done[0]} mutants, {time.monotonic() - started:.0f} s", flush=True)

    began = time.monotonic()
    results = run_mutants(context, indices, workers=args.workers, progress=tick)
    seconds = time.monotonic() - began
    if args.json:
        with args.json.open("w") as out:
            for result in results:
                out.write(json.dumps(result_json(result), default=str) + "\n")
    print()
    print(summary_table(results))
    if any(r.violations for r in results):
        print()
        print(violation_table(results))
    line = summary_line(results, seed, seconds)
    if args.findings and not args.only:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        header = f"noisescope fuzz findings, {stamp}: python -m tests.fuzz --seed {seed} --count {len(results)}"
        findings = Path(args.findings)
        old = findings.read_text() if findings.exists() else ""
        crash = old[old.index(CRASH_SECTION):] if CRASH_SECTION in old else ""  # the campaign's part stays
        findings.write_text(findings_text(results, header) + ("\n" + crash if crash else ""))
        print(f"findings: {args.findings}")
    print(line)
    if args.keep is None:  # the temporary directory (the bases too, unless --bases put them elsewhere)
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
