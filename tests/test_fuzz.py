"""The seeded fuzz suite: a few hundred damaged traces against inspect, check, recover and the reader API.

Every mutant (tests/fuzz/mutate.py) of every base trace (tests/fuzz/bases.py) must leave noisescope
without a traceback, a hang or a crash, with exit codes 0-3 and one-line errors, and recover's copy
must be readable (tests/fuzz/runner.py, docs/reliability.md). The seed is printed: it is
$NOISESCOPE_FUZZ_SEED, else today's date (UTC), so a new part of the space is tried each day and
a failure replays all day with ``python -m tests.fuzz --seed S --only N --keep DIR``.
NOISESCOPE_FUZZ_COUNT sets the number of mutants (default 200); ``make fuzz`` runs thousands.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.fuzz.__main__ import default_seed
from tests.fuzz.bases import Base, build_bases
from tests.fuzz.runner import Context, findings_text, groups, run_mutants, summary_line, summary_table, violation_table

COUNT = int(os.environ.get("NOISESCOPE_FUZZ_COUNT", "200"))


@pytest.fixture(scope="session")
def fuzz_bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Base]:
    return build_bases(tmp_path_factory.mktemp("fuzz-bases"))


def test_mutants_break_no_rule(fuzz_bases: dict[str, Base], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = default_seed()
    with capsys.disabled():
        print(f"\nfuzz seed {seed}, {COUNT} mutants (replay: NOISESCOPE_FUZZ_SEED={seed})")
    started = time.monotonic()
    results = run_mutants(Context(seed=seed, bases=fuzz_bases, work=tmp_path), range(COUNT), workers=2)
    line = summary_line(results, seed, time.monotonic() - started)
    with capsys.disabled():
        print(line)
    assert len(results) == COUNT
    assert not [r for r in results if r.make_error and r.mutant.kind == "none"], "a control mutant could not be made"
    if any(r.violations for r in results):
        found = groups(results)
        report = "\n".join([line, "", summary_table(results), "", violation_table(results, limit=25), "",
                            findings_text(results, f"{len(found)} groups", top=15)])
        pytest.fail(report, pytrace=False)


def test_readers_of_a_running_writer_break_no_rule(tmp_path: Path) -> None:
    """check, inspect and the reader API over and over while a real writer commits rows (the live case)."""
    import random

    from tests.fuzz.crash import Campaign

    run = Campaign(0, tmp_path, random.Random(0)).live_readers(0, steps=30)
    assert not run.violations, "\n".join(run.violations)
    assert run.readable == run.reported == 30
