"""noisescope's fuzz harness: damaged traces against inspect, check, recover and the reader API.

- bases.py: the clean traces mutants start from (sampling DDPM/DDIM/guided/synthetic, training,
  killed, live), built once per session;
- mutate.py: the mutation kinds, planned from (seed, index) and applied to a copy of a base;
- runner.py: each call in a forked child with a time limit, the oracle, and the reports;
- writer.py: a slowed real sampling run in its own process (killed and live bases, the campaign);
- crash.py: the crash campaign (SIGKILL, disk full, concurrent readers) of ``make fuzz``;
- __main__.py: ``python -m tests.fuzz`` (``--count``, ``--seed``, ``--only N --keep DIR`` to replay).

docs/reliability.md describes the oracle and the results.
"""
