"""The crash campaign: noisescope's writers killed, starved of disk, and read while they write.

``python -m tests.fuzz.crash --runs N [--seed S] [--only SCENARIO]`` runs each scenario N times
with random kill moments and limits drawn from the seed, and prints per scenario the runs, what
was lost, and the violations. Scenarios (SCENARIOS):

- ``sample-kill``: ``noisescope sample`` (DDPM or DDIM) SIGKILLed at a random moment;
- ``train-kill``: ``noisescope train --dataset moons --model mlp`` SIGKILLed at a random moment;
- ``resume-kill``: ``train --resume`` of a finished run SIGKILLed; ``overwrite-kill``: ``train --overwrite`` likewise;
- ``recover-kill``: ``noisescope recover`` of a killed trace SIGKILLed;
- ``sample-full``, ``train-full``: the same commands under RLIMIT_FSIZE (writes past it fail with
  EFBIG; SIGXFSZ ignored), ``sample`` with ``--overwrite`` onto a good trace;
- ``live-readers``: check, inspect and the reader API, each in a forked child, over and over while a
  writer runs: tests/fuzz/writer.py (sampling), or ``noisescope train`` every other run.

After each run: the committed rows read with plain h5py in SWMR mode against the rows the writer
had reported committed (tests/fuzz/writer.py prints each; ``sample`` and ``train`` progress bars
count them), the trace opened and checked (exit 0 or 3 only: a killed trace is incomplete, never
wrong or unreadable), ``recover`` of it and check of the copy, and that the run directory's
previous model (and resume state) still load after a killed --resume or --overwrite. "lost" is
reported rows minus readable rows where positive (it must be 0).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz.bases import ROOT

SCENARIOS = ("sample-kill", "train-kill", "resume-kill", "overwrite-kill", "recover-kill", "sample-full", "train-full",
             "live-readers")
TRAIN_ARGS = ["--dataset", "moons", "--model", "mlp", "--channels", "32,32", "--batch", "64", "--log-every", "5",
              "--snapshot-every", "40", "--device", "cpu"]


@dataclass
class Run:
    """One run of a scenario: what it did, what was lost, which rules it broke."""

    scenario: str
    number: int
    detail: str
    reported: int | None = None  # rows (or the training step) the writer had reported committed
    readable: int | None = None  # rows (or the last step) plain h5py SWMR reads back
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        if self.reported is None or self.readable is None:
            return 0
        return max(self.reported - self.readable, 0)


def noisescope(*args: str) -> list[str]:
    """The ``noisescope`` command line, run by this interpreter."""
    return [sys.executable, "-c", "import sys; from tracer.cli import main; sys.exit(main())", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _limit_fsize(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def start(argv: list[str], preexec: Callable[[], None] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)


def kill_after(proc: subprocess.Popen[str], delay: float) -> tuple[str, str, bool]:
    """SIGKILL ``proc`` after ``delay`` s unless it ends first; (stdout, stderr, killed)."""
    try:
        out, err = proc.communicate(timeout=delay)
        return out, err, False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        return out, err, True


def _appeared(path: Path) -> bool:
    """``path`` or a temporary file named after it (.NAME.partial) exists."""
    return path.exists() or (path.parent.is_dir() and any(path.name in p.name for p in path.parent.iterdir()))


def bar_count(stderr: str) -> int | None:
    """The last count a tqdm bar printed ('12/40'): rows the command had committed."""
    counts = re.findall(r"\|\s*(\d+)/(\d+)\s*\[", stderr) or re.findall(r"(\d+)/(\d+) \[", stderr)
    return int(counts[-1][0]) if counts else None


def last_line(stderr: str) -> str:
    """The last line of stderr, progress-bar redraws (carriage returns) split off, from the error on."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last[last.index("noisescope: error:"):] if "noisescope: error:" in last else last


def describe_failure(result: dict[str, Any] | None, call: Any) -> str:
    """One line for a call that broke a rule: the hang, signal, exception (type at file:line) or exit code."""
    if call.hang:
        return f"hang ({call.seconds:.0f} s)"
    if call.signal:
        return f"killed by signal {call.signal}"
    result = result or {}
    errors = ([result["exception"]] if result.get("exception") else []) + list(result.get("api_errors") or [])
    if errors:
        e = errors[0]
        return f"{e.get('call', '')} {e['type']} at {e['where']}: {e['message'][:120]}".strip()
    if result.get("trace_errors"):
        return f"TraceError: {result['trace_errors'][0][:160]}"
    first = (call.stderr.strip().splitlines() or [""])[0][:120]
    return f"exit {result.get('exit_code')}: {first}"


def _one_line_errors(run: Run, name: str, rc: int | None, stderr: str) -> None:
    if "Traceback" in stderr:
        first = next(line for line in stderr.splitlines() if "Traceback" in line)
        run.violations.append(f"{name}: traceback on stderr ({first[:80]}; last: {stderr.strip().splitlines()[-1][:120]})")
    if rc is not None and rc not in (0, 1, 2, 3, -9):
        run.violations.append(f"{name}: exit code {rc}")
    if rc == 2:
        lines = [line for line in stderr.splitlines() if line.strip() and "\r" not in line and "%|" not in line]
        if len(lines) > 1:
            run.violations.append(f"{name}: exit 2 with {len(lines)} stderr lines: {lines[0][:100]}")


# -- what is on disk after a run ------------------------------------------------------------------------


def swmr_rows(path: Path, series: str) -> tuple[int | None, Any]:
    """Committed rows of ``series`` read with plain h5py (SWMR reader), and the last value of its 'step' if any."""
    import h5py

    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            committed = int(f[f"progress/{series}"][()])
            fields = [ds for ds in f[series].values()]
            if any(ds.shape[0] < committed for ds in fields):
                return None, "a dataset is shorter than its committed rows"
            last = None
            if committed and "step" in f[series]:
                last = int(f[f"{series}/step"][committed - 1])
            for ds in fields:  # every committed row reads back
                ds[:committed]
            return committed, last
    except Exception as error:  # noqa: BLE001
        return None, f"{type(error).__name__}: {str(error).splitlines()[0][:100] if str(error) else ''}"


def judge_trace(run: Run, path: Path, work: Path, *, complete: bool = False) -> None:
    """A killed or starved trace: check exits 0 or 3, the API reads it, recover's copy checks 0 or 3."""
    from tests.fuzz.runner import api_probe, cli_call, run_in_child

    if not path.exists():
        run.notes.append("no trace file")
        return
    result, call = run_in_child(lambda: cli_call(["check", str(path)]), 30)
    code = result.get("exit_code") if result else None
    allowed = (0,) if complete else (0, 3)
    if call.hang or call.signal or (result and result.get("exception")) or code not in allowed:
        run.violations.append(f"check: {describe_failure(result, call)}")
    result, call = run_in_child(lambda: api_probe(str(path)), 30)
    if call.hang or call.signal or not result or result["api_errors"] or result["trace_errors"]:
        run.violations.append(f"api: {describe_failure(result, call)}")
    copy = work / f"{path.stem}.recovered.h5"
    copy.unlink(missing_ok=True)
    result, call = run_in_child(lambda: cli_call(["recover", str(path), "--out", str(copy)]), 30)
    if not result or result.get("exit_code") != 0:
        run.violations.append(f"recover: {describe_failure(result, call)}")
    else:
        result, call = run_in_child(lambda: cli_call(["check", str(copy)]), 30)
        if not result or result.get("exit_code") not in (0, 3):
            run.violations.append(f"check of the recovered copy: {describe_failure(result, call)}")


def loads_model(run_dir: Path) -> str | None:
    """None if the run directory's model and resume state load, else what failed."""
    from tracer.checkpoints import load_checkpoint

    try:
        load_checkpoint(run_dir)
    except Exception as error:  # noqa: BLE001
        return f"model: {type(error).__name__}: {str(error)[:100]}"
    state = run_dir / "train_state.pt"
    if state.exists():
        import torch

        try:
            torch.load(state, weights_only=True)
        except Exception as error:  # noqa: BLE001
            return f"train_state.pt: {type(error).__name__}: {str(error)[:100]}"
    return None


# -- scenarios --------------------------------------------------------------------------------------------


@dataclass
class Campaign:
    seed: int
    work: Path
    rng: random.Random
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)

    def fixture_run(self) -> Path:
        """A finished 80-step moons run (a checkpoint for sample, a run to resume or overwrite)."""
        run_dir = self.work / "fixture-run"
        if not (run_dir / "model.safetensors").exists():
            subprocess.run(noisescope("train", *TRAIN_ARGS, "--steps", "80", "--out", str(run_dir), "--quiet"),
                           cwd=ROOT, env=_env(), check=True, capture_output=True)
        return run_dir

    def killed_trace(self) -> Path:
        """A trace whose writer was killed after step 300 of 400 (for recover-kill: long enough to copy)."""
        path = self.work / "killed-source.h5"
        if not path.exists():
            proc = start([sys.executable, "-m", "tests.fuzz.writer", str(path), "400", "0.002"])
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.strip() == "step 300":
                    break
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        return path

    def duration(self, key: str, argv: list[str], watch: Path) -> tuple[float, float]:
        """(when ``watch`` appears, when the command ends), measured once: kill moments are drawn within them."""
        if key not in self.timings:
            began = time.monotonic()
            proc = start(argv)
            appear = None
            while proc.poll() is None:
                if appear is None and _appeared(watch):
                    appear = time.monotonic() - began
                time.sleep(0.01)
            proc.communicate()
            total = time.monotonic() - began
            self.timings[key] = (appear if appear is not None else total * 0.8, total)
        return self.timings[key]

    def kill_moment(self, timing: tuple[float, float]) -> float:
        """Mostly while the output is being written, sometimes during start-up."""
        appear, total = timing
        return self.rng.uniform(0.2, appear) if self.rng.random() < 0.15 else self.rng.uniform(appear, total)

    # each returns one Run
    def sample_kill(self, n: int, full: bool = False) -> Run:
        run_dir = self.fixture_run()
        sampler = self.rng.choice(["ddpm", "ddim"])
        out = self.work / f"sample-{n}.h5"
        extra = ["--steps", "200"] if sampler == "ddim" else []
        argv = noisescope("sample", "--checkpoint", str(run_dir), "--sampler", sampler, *extra, "--batch", "4",
                          "--device", "cpu", "--out", str(out), "--overwrite")
        if full:
            good = self.work / "sample-good.h5"
            if not good.exists():
                subprocess.run(argv[:-2] + [str(good)], cwd=ROOT, env=_env(), check=True, capture_output=True)
            shutil.copyfile(good, out)
            limit = self.rng.choice([2_000, 20_000, 60_000, 150_000, 400_000])
            run = Run("sample-full", n, f"{sampler}, RLIMIT_FSIZE {limit} B, --overwrite onto a good trace")
            proc = start(argv, _limit_fsize(limit))
            out_text, err, _ = kill_after(proc, 120)
            _one_line_errors(run, "sample", proc.returncode, err)
            if proc.returncode == 0:
                judge_trace(run, out, self.work, complete=True)
            else:
                # The old trace survives a failed --overwrite, whole.
                if not out.exists():
                    run.violations.append("the previous trace is gone after a failed --overwrite")
                elif out.read_bytes() != good.read_bytes():
                    run.violations.append("the previous trace changed after a failed --overwrite")
                run.notes.append(f"exit {proc.returncode}: {last_line(err)[:100]}")
            return run
        out.unlink(missing_ok=True)
        timing = self.duration(f"sample-{sampler}", argv, out)
        delay = self.kill_moment(timing)
        out.unlink(missing_ok=True)
        run = Run("sample-kill", n, f"{sampler}, SIGKILL at {delay:.2f} s (trace at {timing[0]:.1f}, end at {timing[1]:.1f})")
        proc = start(argv)
        _, err, killed = kill_after(proc, delay)
        _one_line_errors(run, "sample", None if killed else proc.returncode, err)
        self._rows(run, out, "steps", bar_count(err), killed)
        return run

    def _rows(self, run: Run, path: Path, series: str, reported: int | None, killed: bool, *, by_step: bool = False) -> None:
        if not path.exists():
            run.notes.append("killed before the trace existed" if killed else "no trace")
            if reported:
                run.violations.append(f"the writer reported {reported} but no trace exists")
            return
        rows, last = swmr_rows(path, series)
        if rows is None:
            run.violations.append(f"plain h5py SWMR cannot read the committed rows: {last}")
            return
        run.reported = reported
        run.readable = (last if isinstance(last, int) else 0) if by_step else rows
        judge_trace(run, path, self.work, complete=not killed)
        partial = path.with_name(f".{path.name}.partial")  # a resumed or overwriting run's successor, unfinished
        if partial.exists():
            more, more_last = swmr_rows(partial, series)
            if more is None:
                run.violations.append(f"the unfinished {partial.name} cannot be read: {more_last}")
            else:
                newer = (more_last if isinstance(more_last, int) else 0) if by_step else more
                run.notes.append(f"newer rows wait in {partial.name}")
                run.readable = max(run.readable, newer)

    def train_kill(self, n: int, mode: str = "fresh") -> Run:
        steps = self.rng.choice([150, 300])
        run_dir = self.work / f"train-{mode}-{n}"
        shutil.rmtree(run_dir, ignore_errors=True)
        flags: list[str] = []
        if mode in ("resume", "overwrite"):
            shutil.copytree(self.fixture_run(), run_dir)
            flags = ["--resume"] if mode == "resume" else ["--overwrite"]
        argv = noisescope("train", *TRAIN_ARGS, "--steps", str(steps), "--out", str(run_dir), *flags)
        # A fresh run's trace appears as train.h5; a resumed or overwritten one is written beside it first.
        watch = run_dir / ("train.h5" if mode == "fresh" else ".train.h5.partial")
        timing = self.duration(f"train-{mode}-{steps}", argv + (["--overwrite"] if mode == "fresh" else []), watch)
        if mode == "fresh":
            shutil.rmtree(run_dir, ignore_errors=True)
        elif mode == "resume":  # duration() ran it to the end: start again from the fixture
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.copytree(self.fixture_run(), run_dir)
        delay = self.kill_moment(timing)
        run = Run(f"{mode}-kill" if mode != "fresh" else "train-kill", n,
                  f"{steps} steps, SIGKILL at {delay:.2f} s (trace at {timing[0]:.1f}, end at {timing[1]:.1f})")
        proc = start(argv)
        _, err, killed = kill_after(proc, delay)
        _one_line_errors(run, "train", None if killed else proc.returncode, err)
        reported = bar_count(err)
        trace = run_dir / "train.h5"
        # The bar advances after a row is committed; rows are logged every 5 steps.
        self._rows(run, trace, "train", (reported // 5) * 5 if reported else None, killed, by_step=True)
        if mode in ("resume", "overwrite") or (run_dir / "model.safetensors").exists():
            problem = loads_model(run_dir)
            if problem:
                run.violations.append(f"after the kill the run's {problem}")
        if mode == "resume" and killed:
            again = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True)
            if again.returncode != 0:
                run.violations.append(f"--resume after the kill exits {again.returncode}: {last_line(again.stderr)[:120]}")
        return run

    def train_full(self, n: int) -> Run:
        run_dir = self.work / f"train-full-{n}"
        shutil.rmtree(run_dir, ignore_errors=True)
        limit = self.rng.choice([4_000, 30_000, 100_000, 300_000])
        run = Run("train-full", n, f"100 steps, RLIMIT_FSIZE {limit} B")
        proc = start(noisescope("train", *TRAIN_ARGS, "--steps", "100", "--out", str(run_dir), "--quiet"), _limit_fsize(limit))
        _, err, _ = kill_after(proc, 180)
        _one_line_errors(run, "train", proc.returncode, err)
        run.notes.append(f"exit {proc.returncode}: {last_line(err)[:100]}")
        if proc.returncode == 0:
            judge_trace(run, run_dir / "train.h5", self.work, complete=True)
            if loads_model(run_dir):
                run.violations.append(f"exit 0 but {loads_model(run_dir)}")
        elif (run_dir / "train.h5").exists():
            rows, last = swmr_rows(run_dir / "train.h5", "train")
            if rows is None:
                run.violations.append(f"the trace left by a full disk is unreadable: {last}")
        return run

    def recover_kill(self, n: int) -> Run:
        source = self.killed_trace()
        out = self.work / f"recovered-{n}.h5"
        out.unlink(missing_ok=True)
        argv = noisescope("recover", str(source), "--out", str(out))
        timing = self.duration("recover", argv, out)
        out.unlink(missing_ok=True)
        delay = self.kill_moment(timing)
        run = Run("recover-kill", n, f"SIGKILL at {delay:.2f} s (copy at {timing[0]:.2f}, end at {timing[1]:.2f})")
        proc = start(argv)
        _, err, killed = kill_after(proc, delay)
        _one_line_errors(run, "recover", None if killed else proc.returncode, err)
        if out.exists():  # a copy under the asked name is whole, never half written
            rows, last = swmr_rows(out, "steps")
            run.reported, run.readable = 301, rows
            if rows is None:
                run.violations.append(f"a half-written copy under the output name: {last}")
            else:
                judge_trace(run, out, self.work)
        else:
            run.notes.append("no copy (killed before the rename)")
        # Whatever the kill left (a .partial), recover again must work.
        again = subprocess.run(argv + ["--overwrite"], cwd=ROOT, env=_env(), capture_output=True, text=True)
        if again.returncode != 0:
            run.violations.append(f"recover after the kill exits {again.returncode}: {last_line(again.stderr)[:120]}")
        else:
            judge_trace(run, out, self.work)
        return run

    def live_readers(self, n: int, steps: int = 40) -> Run:
        from tests.fuzz.runner import api_probe, cli_call, run_in_child

        training = n % 2 == 1  # every other run reads a training trace while `noisescope train` writes it
        if training:
            run_dir = self.work / f"live-train-{n}"
            shutil.rmtree(run_dir, ignore_errors=True)
            path = run_dir / "train.h5"
            run = Run("live-readers", n, "noisescope train (300 steps), check/inspect/API while it writes")
            proc = start(noisescope("train", *TRAIN_ARGS, "--steps", "300", "--out", str(run_dir), "--quiet"))
        else:
            path = self.work / f"live-{n}.h5"
            path.unlink(missing_ok=True)
            run = Run("live-readers", n, f"{steps}-step writer, check/inspect/API while it writes")
            proc = start([sys.executable, "-m", "tests.fuzz.writer", str(path), str(steps), "0.05"])
        assert proc.stdout is not None
        reported = 0
        os.set_blocking(proc.stdout.fileno(), False)
        reads = 0
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            for line in proc.stdout.readlines():
                if line.startswith("step "):
                    reported = int(line.split()[1]) + 1
            if not path.exists():
                time.sleep(0.05)
                continue
            known = reported
            which = reads % 3
            reads += 1
            if which == 0:
                result, call = run_in_child(lambda: cli_call(["check", str(path)]), 20)
                ok = result is not None and result.get("exit_code") in (0, 3)
            elif which == 1:
                result, call = run_in_child(lambda: cli_call(["inspect", str(path), "--json"]), 20)
                ok = result is not None and result.get("exit_code") == 0
            else:
                result, call = run_in_child(lambda: api_probe(str(path)), 20)
                ok = result is not None and not result["api_errors"] and not result["trace_errors"]
            if not ok:
                name = ("check", "inspect", "api")[which]
                what = describe_failure(result, call)
                run.violations.append(f"{name} while writing ({known} rows committed): {what}")
        proc.wait(timeout=60)
        run.notes = [f"{reads} reads while writing"]
        if training:
            _, last = swmr_rows(path, "train")
            run.reported, run.readable = 300, last if isinstance(last, int) else None
        else:
            rows, _ = swmr_rows(path, "steps")
            run.reported, run.readable = reported, rows
        return run


def run_scenario(campaign: Campaign, scenario: str, n: int) -> Run:
    handlers: dict[str, Callable[[int], Run]] = {
        "sample-kill": campaign.sample_kill,
        "sample-full": lambda i: campaign.sample_kill(i, full=True),
        "train-kill": campaign.train_kill,
        "resume-kill": lambda i: campaign.train_kill(i, "resume"),
        "overwrite-kill": lambda i: campaign.train_kill(i, "overwrite"),
        "train-full": campaign.train_full,
        "recover-kill": campaign.recover_kill,
        "live-readers": campaign.live_readers,
    }
    try:
        return handlers[scenario](n)
    except Exception as error:  # noqa: BLE001 - the campaign itself failed: report it, go on
        return Run(scenario, n, "harness error", violations=[f"harness: {type(error).__name__}: {error}"[:200]])


def report(runs: list[Run]) -> str:
    lines = [f"{'scenario':<15} {'runs':>5} {'violations':>10} {'rows lost':>10} {'max lost':>9}  notes"]
    for scenario in SCENARIOS:
        mine = [r for r in runs if r.scenario == scenario]
        if not mine:
            continue
        bad = sum(bool(r.violations) for r in mine)
        lost = sum(r.lost for r in mine)
        notes = sorted({note for r in mine for note in r.notes if note})[:2]
        lines.append(f"{scenario:<15} {len(mine):>5} {bad:>10} {lost:>10} {max(r.lost for r in mine):>9}  {'; '.join(notes)[:90]}")
    bad_runs = [r for r in runs if r.violations]
    if bad_runs:
        lines.append("")
        for r in bad_runs[:30]:
            lines.append(f"{r.scenario} #{r.number} ({r.detail}): {r.violations[0][:200]}")
    return "\n".join(lines)


SECTION = "== crash campaign"


def write_findings(path: Path, runs: list[Run], seed: int) -> None:
    """Replace the crash-campaign section of the findings file (the fuzz harness writes the rest)."""
    text = path.read_text() if path.exists() else ""
    text = text.split(SECTION)[0].rstrip("\n")
    bad = [r for r in runs if r.violations]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"{SECTION}, {stamp}: python -m tests.fuzz.crash --seed {seed}: {len(runs)} runs, {len(bad)} with violations"]
    grouped: dict[str, list[Run]] = {}
    for r in bad:
        key = re.sub(r"\d+", "N", r.violations[0].split(":")[0] + ":" + r.violations[0].split(" at ")[-1][:60])
        grouped.setdefault(key, []).append(r)
    for key, members in sorted(grouped.items(), key=lambda item: -len(item[1])):
        example = members[0]
        lines.append(f"[{len(members)}x] {example.scenario}: {example.violations[0][:220]}")
        lines.append(f"   replay: python -m tests.fuzz.crash --seed {seed} --only {example.scenario} --runs {example.number + 1} --keep /tmp/crash")
    path.write_text((text + "\n\n" if text else "") + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz.crash", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per scenario (default 3)")
    p.add_argument("--seed", type=int, default=None, help="seed of the kill moments and limits (default: today's date)")
    p.add_argument("--only", action="append", choices=SCENARIOS, help="run just this scenario (repeatable)")
    p.add_argument("--keep", type=Path, help="keep the runs' files in this directory")
    p.add_argument("--findings", default="/tmp/fuzz_findings.txt", help="append the violations to this file's crash section ('' for none)")
    args = p.parse_args(argv)
    from tests.fuzz.__main__ import default_seed

    seed = args.seed if args.seed is not None else default_seed()
    work = args.keep or Path(tempfile.mkdtemp(prefix="noisescope-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"crash campaign seed {seed}, {args.runs} runs per scenario, files in {work}", flush=True)
    campaign = Campaign(seed, work, random.Random(f"noisescope-crash:{seed}"))
    runs: list[Run] = []
    began = time.monotonic()
    for scenario in args.only or SCENARIOS:
        for n in range(args.runs):
            run = run_scenario(campaign, scenario, n)
            runs.append(run)
            state = "ok" if not run.violations else f"VIOLATION: {run.violations[0][:120]}"
            print(f"  {scenario} #{n}: {run.detail}; reported {run.reported}, readable {run.readable}; {state}", flush=True)
    print()
    print(report(runs))
    bad = sum(bool(r.violations) for r in runs)
    print(f"crash campaign seed {seed}: {len(runs)} runs, {bad} with violations, "
          f"{sum(r.lost for r in runs)} rows lost, {time.monotonic() - began:.0f} s")
    if args.findings:
        write_findings(Path(args.findings), runs, seed)
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
