"""Running mutants against noisescope, each call in a forked child, and the oracle over what they did.

``run_mutants(seed, indices, bases, work, workers)`` makes each mutant (tests/fuzz/mutate.py) and
runs, each in its own forked child with a time limit: ``inspect`` (text or --json), ``check``,
``recover --out`` (the CLI's in-process ``main(argv)``, stdout and stderr captured at the file
descriptors) and the reader's Python API (``api_probe``); then, if recover wrote a copy, ``check``
and the API on the copy. A child that outlives the limit is killed (a hang), one that a signal ends
is a crash (a segfault in HDF5). ``oracle(mutant, calls)`` turns the results into violations; the
rules are written out in docs/reliability.md ("The oracle").

Everything is imported, and every call run once, before the first fork, so a child starts in
milliseconds. At most ``workers`` mutants run at once, in a pool of spawned workers (fresh
interpreters that never import torch: forking a small process is cheaper).
"""

from __future__ import annotations

import faulthandler
import functools
import io
import json
import multiprocessing
import os
import re
import select
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz.bases import ROOT, Base
from tests.fuzz.mutate import STRUCTURAL, Mutant, make, plan

CALL_TIMEOUT = 10.0  # seconds a call may take before it counts as a hang
MAKE_TIMEOUT = 30.0
SERIES = ("steps", "train", "snapshots", "examples")
FINALS = ("samples", "labels", "snapshot_x_T", "snapshot_labels")
ALLOWED_EXIT = {"inspect": {0, 2}, "check": {0, 1, 2, 3}, "recover": {0, 2}}
OUTPUT_CAP = 20_000  # characters of a child's stdout or stderr kept


@dataclass
class Call:
    """What one call did. ``command`` is inspect, check, recover, api, or check/api 'of copy' (recover's output)."""

    command: str
    argv: list[str] = field(default_factory=list)
    exit_code: int | None = None
    signal: int | None = None  # the child was killed by this signal: a crash
    hang: bool = False
    died: str | None = None  # the child ended without reporting (should not happen)
    exception: dict[str, str] | None = None  # an exception that escaped main(): a traceback for a user
    api_errors: list[dict[str, str]] = field(default_factory=list)  # API calls that raised something other than TraceError
    trace_errors: list[str] = field(default_factory=list)  # TraceError messages from the API
    api_notes: list[str] = field(default_factory=list)  # API answers that break its contract (negative rows, ...)
    outside: list[str] = field(default_factory=list)  # recover's copy: links or storage pointing outside it
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0


@dataclass
class Violation:
    """One broken rule: ``group`` names the failure for the findings (same bug, same group)."""

    rule: str
    command: str
    what: str
    group: str


@dataclass
class MutantResult:
    mutant: Mutant
    calls: list[Call]
    violations: list[Violation]
    make_error: str | None = None  # the mutant could not be made (a harness problem, not noisescope's)

    def call(self, command: str) -> Call | None:
        return next((c for c in self.calls if c.command == command), None)


# -- exceptions and children ------------------------------------------------------------------------


def _rel(filename: str) -> str:
    for prefix in (str(ROOT) + os.sep, sys.prefix + os.sep):
        if filename.startswith(prefix):
            filename = filename[len(prefix):]
    marker = "site-packages" + os.sep
    return filename.split(marker, 1)[1] if marker in filename else filename


def describe_exception(error: BaseException) -> dict[str, str]:
    """Type, first line, the raising frame, and the innermost frame in tracer/ (where to fix it)."""
    frames = traceback.extract_tb(error.__traceback__)
    raised = f"{_rel(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
    ours = [f for f in frames if f"{os.sep}tracer{os.sep}" in f.filename]
    where = f"{_rel(ours[-1].filename)}:{ours[-1].lineno}" if ours else raised
    lines = str(error).strip().splitlines()
    return {"type": type(error).__name__, "message": (lines[0] if lines else "")[:200], "where": where, "raised_at": raised}


def run_in_child(fn: Callable[[], dict[str, Any]], timeout: float) -> tuple[dict[str, Any] | None, Call]:
    """Run ``fn`` in a forked child with fds 1 and 2 captured; returns its result dict (None if none came) and a Call."""
    out_file, err_file = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    read_end, write_end = os.pipe()
    start = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_end)
            faulthandler.disable()  # a segfault shows as a signal, not a dump on the parent's stderr
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.dup2(out_file.fileno(), 1)
            os.dup2(err_file.fileno(), 2)
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
            payload = json.dumps(fn(), default=str).encode()
            sys.stdout.flush()
            sys.stderr.flush()
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        except BaseException:  # noqa: BLE001 - the harness itself failed in the child
            code = 70
        os._exit(code)
    os.close(write_end)
    call = Call(command="")
    chunks: list[bytes] = []
    deadline = start + timeout
    status = None
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                call.hang = True
                break
            ready, _, _ = select.select([pipe], [], [], min(left, 1.0))
            if ready:
                chunk = pipe.read(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    if call.hang:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    call.seconds = time.monotonic() - start
    for handle, name in ((out_file, "stdout"), (err_file, "stderr")):
        handle.seek(0)
        setattr(call, name, handle.read(OUTPUT_CAP).decode(errors="replace"))
        handle.close()
    result: dict[str, Any] | None = None
    if not call.hang:
        if os.WIFSIGNALED(status):
            call.signal = os.WTERMSIG(status)
        elif chunks:
            result = json.loads(b"".join(chunks))
        else:
            call.died = f"child exited with status {os.WEXITSTATUS(status)} and no result"
    return result, call


# -- the calls ----------------------------------------------------------------------------------------


def cli_call(argv: list[str]) -> dict[str, Any]:
    """``noisescope ARGV`` in-process; an exception escaping main() is what a user sees as a traceback."""
    from tracer.cli import main

    try:
        return {"exit_code": main(argv)}
    except SystemExit as exit_:
        return {"exit_code": exit_.code if isinstance(exit_.code, int) else 1}
    except BaseException as error:  # noqa: BLE001
        return {"exception": describe_exception(error)}


def _self_contained(path: Path) -> list[str]:
    """Links and storage in a (recovered) file that point outside it."""
    import h5py

    found: list[str] = []
    with h5py.File(path, "r") as f:
        def visit(name: str, link: Any) -> None:
            if isinstance(link, h5py.ExternalLink):
                found.append(f"{name} is an external link to {link.filename}")
            elif isinstance(link, h5py.HardLink):
                item = f.get(name)
                if isinstance(item, h5py.Dataset):
                    if item.external:
                        found.append(f"{name} has external storage {item.external[0][0]}")
                    if item.is_virtual:
                        found.append(f"{name} is a virtual dataset")

        f.visititems_links(visit)
    return found


def api_probe(path: str, copy: bool = False) -> dict[str, Any]:
    """Every reader call on ``path``; each must work or raise TraceError (one line). Reads every committed row."""
    from tracer.trace.reader import TraceError, open_trace

    errors: list[dict[str, str]] = []
    trace_errors: list[str] = []
    notes: list[str] = []

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except TraceError as error:
            trace_errors.append(f"{name}: {error}")
        except Exception as error:  # noqa: BLE001
            errors.append({"call": name, **describe_exception(error)})
        return None

    trace = attempt("open_trace", lambda: open_trace(path))
    if trace is not None:
        for prop in ("status", "config", "schedule", "created", "tensor_dtype", "recovered_from", "live", "num_steps",
                     "sample_shape", "batch_size"):
            attempt(prop, lambda: getattr(trace, prop))
        for series in SERIES:
            attempt(f"planned({series})", lambda: trace.planned(series))
            rows = attempt(f"rows({series})", lambda: trace.rows(series))
            if rows is not None and (not isinstance(rows, int) or rows < 0):
                notes.append(f"rows({series}) = {rows!r}")
            scalars = attempt(f"scalars({series})", lambda: trace.scalars(series))
            if isinstance(scalars, dict) and isinstance(rows, int):
                wrong = [k for k, v in scalars.items() if len(v) != max(rows, 0)]
                if wrong:
                    notes.append(f"scalars({series})[{wrong[0]}] has {len(scalars[wrong[0]])} values, rows({series}) = {rows}")
            names = attempt(f"tensor_names({series})", lambda: trace.tensor_names(series)) or []
            for name in names:
                for i in range(min(rows, 10_000) if isinstance(rows, int) else 0):
                    before = len(errors) + len(trace_errors)
                    attempt(f"tensor({name}, i, {series})", lambda: trace.tensor(name, i, series))
                    if len(errors) + len(trace_errors) > before:
                        break  # one failure per tensor is enough
            if trace.kind == "training":
                attempt(f"series({series})", lambda: trace.series(series))
        for name in FINALS:
            attempt(f"final({name})", lambda: trace.final(name))
        attempt("close", trace.close)
    contained: list[str] = []
    if copy:
        try:
            contained = _self_contained(Path(path))
        except Exception as error:  # noqa: BLE001 - recover's copy is a closed, ordinary HDF5 file
            contained = [f"copy is not readable by plain h5py: {type(error).__name__}: {str(error)[:100]}"]
    return {"api_errors": errors, "trace_errors": trace_errors, "api_notes": notes, "outside": contained}


# -- one mutant ---------------------------------------------------------------------------------------


@dataclass
class Context:
    """What every worker needs; set before the pool forks."""

    seed: int
    bases: dict[str, Base]
    work: Path
    keep: bool = False
    timeout: float = CALL_TIMEOUT


_CONTEXT: Context | None = None


def _run(command: str, fn: Callable[[], dict[str, Any]], argv: list[str], timeout: float) -> Call:
    result, call = run_in_child(fn, timeout)
    call.command, call.argv = command, argv
    if result is not None:
        call.exit_code = result.get("exit_code")
        call.exception = result.get("exception")
        call.api_errors = result.get("api_errors", [])
        call.trace_errors = result.get("trace_errors", [])
        call.api_notes = result.get("api_notes", [])
        call.outside = result.get("outside", [])
    return call


def run_mutant(index: int, context: Context | None = None) -> MutantResult:
    """Make mutant ``index``, run every call on it, and judge the calls."""
    ctx = context or _CONTEXT
    assert ctx is not None
    mutant = plan(ctx.seed, index, ctx.bases)
    path = ctx.work / f"m{index}-{mutant.kind}-{mutant.base}.h5"
    copy = ctx.work / f"m{index}.recovered.h5"
    for stale in (path, copy):
        stale.unlink(missing_ok=True)

    def make_it() -> dict[str, Any]:
        try:
            make(mutant, ctx.bases, path)
            return {}
        except Exception as error:  # noqa: BLE001
            return {"exception": describe_exception(error)}

    if mutant.kind in STRUCTURAL or mutant.kind == "not_trace":  # h5py writes these: it may crash on what it made
        made = _run("make", make_it, [], MAKE_TIMEOUT)
    else:  # byte edits: plain Python, no child needed
        made = Call("make", exception=make_it().get("exception"))
    if made.exception or made.hang or made.signal or made.died:
        problem = made.exception or {"type": "hang" if made.hang else f"signal {made.signal}" if made.signal else str(made.died)}
        return MutantResult(mutant, [made], [], make_error=f"{problem.get('type')}: {problem.get('message', '')}")
    calls = []
    inspect_argv = ["inspect", str(path)] + (["--json"] if index % 2 else [])
    check_argv = ["check", str(path)] + (["--json"] if index % 3 == 1 else [])
    recover_argv = ["recover", str(path), "--out", str(copy)]
    for command, argv in (("inspect", inspect_argv), ("check", check_argv), ("recover", recover_argv)):
        calls.append(_run(command, functools.partial(cli_call, argv), argv, ctx.timeout))
    calls.append(_run("api", lambda: api_probe(str(path)), ["api", str(path)], ctx.timeout))
    recover = calls[2]
    if recover.exit_code == 0 and copy.exists():
        argv = ["check", str(copy)]
        calls.append(_run("check of copy", lambda: cli_call(argv), argv, ctx.timeout))
        calls.append(_run("api of copy", lambda: api_probe(str(copy), copy=True), ["api", str(copy)], ctx.timeout))
    result = MutantResult(mutant, calls, [])
    result.violations = oracle(result, copy_exists=copy.exists())
    if not ctx.keep:
        for done in (path, copy):
            done.unlink(missing_ok=True)
    return result


# -- the oracle -----------------------------------------------------------------------------------------


def _stderr_lines(call: Call) -> list[str]:
    return [line for line in call.stderr.splitlines() if line.strip()]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def call_violations(call: Call, control: bool) -> list[Violation]:
    """The rules every call obeys: no hang, no crash, no traceback, known exit codes, one-line errors."""
    out: list[Violation] = []
    cmd = call.command
    family = cmd.split()[0]

    def add(rule: str, what: str, group: str) -> None:
        out.append(Violation(rule, cmd, what, group))

    if call.hang:
        add("hang", f"no answer in {call.seconds:.0f} s", f"hang: {family}")
        return out
    if call.signal is not None:
        name = _signal_name(call.signal)
        add("crash", f"killed by {name}", f"crash ({name}): {family}")
        return out
    if call.died:
        add("died", call.died, f"harness: {family} child died")
        return out
    if call.exception:
        e = call.exception
        add("traceback", f"{e['type']} at {e['where']}: {e['message']}", f"{e['type']} at {e['where']} (escapes main)")
    lines = _stderr_lines(call)
    for marker in ("Traceback", "HDF5-DIAG"):
        if marker in call.stderr:
            first = next(line for line in lines if marker in line)
            add("traceback", f"{marker} on stderr: {first[:120]}", f"{marker} on stderr: {family}")
    if family in ALLOWED_EXIT and call.exit_code is not None:
        code = call.exit_code
        allowed = ALLOWED_EXIT[family]
        if control:
            allowed = {"inspect": {0}, "check": {0, 3}, "recover": {0}}[family]
        if code not in allowed:
            first = lines[0][:120] if lines else "(no stderr)"
            add("exit code", f"exit {code}: {first}", f"{family} exits {code}" + (" on an undamaged trace" if control else ""))
        if code == 2 and len(lines) != 1:
            first = lines[0][:100] if lines else ""
            add("stderr", f"exit 2 with {len(lines)} stderr lines: {first}",
                f"exit 2 with {'no' if not lines else 'multi-line'} stderr: {family}")
    for e in call.api_errors:
        add("api exception", f"{e['call']}: {e['type']} at {e['where']}: {e['message']}", f"{e['type']} at {e['where']} (reader API)")
    for message in call.trace_errors:
        if "\n" in message.split(": ", 1)[-1]:
            add("api", f"multi-line TraceError: {message[:100]!r}", "TraceError message of several lines")
    for note in call.api_notes:
        add("api contract", note, f"reader API answer out of contract: {note.split(' ')[0]}")
    for note in call.outside:
        add("copy not self-contained", note, f"recover's copy points outside itself: {note.split(' ', 1)[1][:30]}")
    if family == "api" and (control or cmd == "api of copy") and call.trace_errors:
        what = "undamaged trace" if control else "recover's copy"
        add("unreadable", f"TraceError on the {what}: {call.trace_errors[0][:140]}", f"reader refuses the {what}")
    return out


def oracle(result: MutantResult, copy_exists: bool = True) -> list[Violation]:
    """Every call's rules, and recover's: a copy it writes is readable and fails check only where the source did."""
    control = result.mutant.kind == "none"
    violations = [v for call in result.calls if call.command != "make" for v in call_violations(call, control)]
    check, recover, copy_check = result.call("check"), result.call("recover"), result.call("check of copy")
    api = result.call("api")
    if result.mutant.kind == "data_value" and check is not None and check.exit_code in (0, 3):
        # One committed value an equation covers is wrong: check must say FAIL (1) or refuse (2).
        verdict = "PASS" if check.exit_code == 0 else "INCOMPLETE"
        violations.append(Violation("verdict", "check", f"check says {verdict} (exit {check.exit_code}) with {result.mutant.detail}",
                                    f"check misses a wrong committed value: {result.mutant.params['field']} "
                                    f"({result.mutant.params['how']}) -> exit {check.exit_code}"))
    if check is not None and check.exit_code == 0 and not control:
        # A PASS means the file is whole: every row the reader lists reads back, and recover can copy it.
        if api is not None and api.trace_errors:
            violations.append(Violation("verdict", "check", f"check passes, the reader says: {api.trace_errors[0][:140]}",
                                        "check passes (exit 0) a trace the reader cannot read whole"))
        if recover is not None and recover.exit_code == 2:
            first = (_stderr_lines(recover) or ["(no stderr)"])[0]
            violations.append(Violation("verdict", "check", f"check passes, recover refuses: {first[:140]}",
                                        "check passes (exit 0) a trace recover refuses"))
    if recover is not None and recover.exit_code == 0:
        if not copy_exists or copy_check is None:
            violations.append(Violation("recover", "recover", "exit 0 but no copy written", "recover: exit 0, no copy"))
        elif copy_check.exit_code == 2:
            first = (_stderr_lines(copy_check) or ["(no stderr)"])[0]
            violations.append(Violation("recover", "check of copy", f"check refuses recover's copy: {first[:120]}",
                                        "recover writes a copy that check refuses (exit 2)"))
        elif copy_check.exit_code == 1 and (check is None or check.exit_code != 1):
            source = check.exit_code if check is not None else None
            violations.append(Violation("recover", "check of copy", f"copy fails check, source exits {source}",
                                        "recover's copy fails check where the source did not"))
    return violations


# -- many mutants ---------------------------------------------------------------------------------------


def _init_worker(context: Context) -> None:
    """A pool worker: a fresh interpreter (spawned, without the parent's torch or pytest), warmed up once."""
    global _CONTEXT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _CONTEXT = context
    warm_up(context.bases, context.work, tag=str(os.getpid()))


def warm_up(bases: dict[str, Base], work: Path, tag: str = "") -> None:
    """Import every module a call uses and run each call once in-process, before forking: children start warm."""
    import contextlib
    import gc

    import h5py  # noqa: F401

    import tracer.check  # noqa: F401
    import tracer.trace.recover  # noqa: F401
    from tracer.cli import build_parser

    build_parser()
    sink = io.StringIO()
    for base in bases.values():
        if base.name not in ("ddpm", "training"):
            continue
        copy = work / f"warm-{tag}{base.name}.h5"
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            for argv in (["inspect", str(base.path)], ["check", str(base.path)], ["recover", str(base.path), "--out", str(copy)]):
                cli_call(argv)
            api_probe(str(base.path))
            api_probe(str(copy), copy=True)
        copy.unlink(missing_ok=True)
    gc.collect()
    gc.freeze()  # the collector leaves the parent's objects alone: fewer copy-on-write pages in each child


def run_mutants(context: Context, indices: Iterable[int], workers: int = 2,
                progress: Callable[[MutantResult], None] | None = None) -> list[MutantResult]:
    """Run every mutant in ``indices``, at most ``workers`` at a time; results in index order."""
    context.work.mkdir(parents=True, exist_ok=True)
    results: list[MutantResult] = []
    todo = list(indices)
    if workers <= 1:
        warm_up(context.bases, context.work)
        for index in todo:
            results.append(run_mutant(index, context))
            if progress:
                progress(results[-1])
    else:
        # Spawned workers: small processes (no torch, no pytest), so each fork of a call is cheap.
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(context,))
        try:
            for result in pool.imap_unordered(run_mutant, todo, chunksize=2):
                results.append(result)
                if progress:
                    progress(result)
        finally:
            pool.terminate()
            pool.join()
    return sorted(results, key=lambda r: r.mutant.index)


# -- reports --------------------------------------------------------------------------------------------


def replay_command(mutant: Mutant) -> str:
    return f"python -m tests.fuzz --seed {mutant.seed} --only {mutant.index} --keep /tmp/fuzz-{mutant.index}"


def violation_table(results: list[MutantResult], limit: int = 40) -> str:
    """One line per violation: kind, base, command, what happened, and how to replay the mutant."""
    rows = [(r.mutant, v) for r in results for v in r.violations]
    lines = [f"{'kind':<15} {'base':<10} {'command':<14} what happened", "-" * 100]
    for mutant, v in rows[:limit]:
        lines.append(f"{mutant.kind:<15} {mutant.base:<10} {v.command:<14} {v.what[:150]}")
        lines.append(f"{'':<15} {mutant.detail[:80]}   replay: {replay_command(mutant)}")
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more violations")
    return "\n".join(lines)


_PATH = re.compile(r"/\S*?/(m\d+[-.][\w.-]*?\.h5)")


def normalise(text: str) -> str:
    """A violation's text without the mutant's temporary path, so that equal failures read equal."""
    return re.sub(r"m\d+[-.][\w.-]*?\.h5", "FILE", _PATH.sub(r"\1", text)).replace("noisescope: error: ", "")


@dataclass
class Group:
    """Violations of one kind of failure (the same exception site, hang, exit code or broken rule)."""

    name: str
    count: int
    example: Mutant
    violation: Violation
    kinds: set[str] = field(default_factory=set)
    variants: list[str] = field(default_factory=list)  # distinct messages, paths removed (first few)


def groups(results: list[MutantResult]) -> list[Group]:
    """Violations grouped by failure, most frequent first."""
    seen: dict[str, Group] = {}
    for r in results:
        for v in r.violations:
            group = seen.setdefault(v.group, Group(v.group, 0, r.mutant, v))
            group.count += 1
            group.kinds.add(r.mutant.kind)
            text = normalise(v.what)[:110]
            if text not in group.variants and len(group.variants) < 4:
                group.variants.append(text)
    return sorted(seen.values(), key=lambda g: -g.count)


def findings_text(results: list[MutantResult], header: str, top: int = 30) -> str:
    """The findings file for colleagues: one block per distinct failure, most frequent first."""
    found = groups(results)
    bad = sum(bool(r.violations) for r in results)
    lines = [header, f"{len(results)} mutants, {bad} with violations, {sum(g.count for g in found)} violations in {len(found)} groups", ""]
    for i, g in enumerate(found[:top], 1):
        lines.append(f"{i}. [{g.count}x] {g.name}")
        lines.append(f"   e.g. {g.example.label}")
        lines.append(f"   {g.violation.command}: {normalise(g.violation.what)[:200]}")
        for variant in g.variants[1:]:
            lines.append(f"   also: {variant}")
        lines.append(f"   kinds: {', '.join(sorted(g.kinds))}")
        lines.append(f"   replay: {replay_command(g.example)}")
    if len(found) > top:
        lines.append(f"... {len(found) - top} more groups")
    return "\n".join(lines) + "\n"


def outcome_of(result: MutantResult) -> str:
    """A mutant's outcome in one word: what check said of it, or that it broke a rule."""
    if result.make_error:
        return "not made"
    if result.violations:
        return "VIOLATION"
    check = result.call("check")
    code = check.exit_code if check else None
    return {0: "pass", 1: "fail", 2: "refused", 3: "incomplete"}.get(code, f"exit {code}") if code is not None else "?"


OUTCOMES = ("pass", "fail", "refused", "incomplete", "VIOLATION", "not made")


def summary_table(results: list[MutantResult]) -> str:
    """Counts per mutation kind and outcome, and recover's answers."""
    per_kind: dict[str, Counter[str]] = {}
    for r in results:
        counter = per_kind.setdefault(r.mutant.kind, Counter())
        counter[outcome_of(r)] += 1
        recover = r.call("recover")
        if recover is not None:
            counter["recovered" if recover.exit_code == 0 else "recover refused" if recover.exit_code == 2 else "recover other"] += 1
    cols = [*OUTCOMES, "recovered", "recover refused"]
    lines = [f"{'kind':<15} {'mutants':>7} " + " ".join(f"{c:>10}" for c in cols)]
    total: Counter[str] = Counter()
    for kind in sorted(per_kind):
        counter = per_kind[kind]
        n = sum(counter[o] for o in OUTCOMES)
        total.update(counter)
        lines.append(f"{kind:<15} {n:>7} " + " ".join(f"{counter[c]:>10}" for c in cols))
    lines.append(f"{'all':<15} {len(results):>7} " + " ".join(f"{total[c]:>10}" for c in cols))
    return "\n".join(lines)


def summary_line(results: list[MutantResult], seed: int, seconds: float) -> str:
    bad = [r for r in results if r.violations]
    made = sum(not r.make_error for r in results)
    return (f"fuzz seed {seed}: {len(results)} mutants ({made} made), {sum(len(r.violations) for r in results)} violations "
            f"in {len(bad)} mutants, {len(groups(results))} groups, {seconds:.1f} s")


def result_json(result: MutantResult) -> dict[str, Any]:
    return asdict(result)
