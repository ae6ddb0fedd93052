"""Traces larger than memory (issue 15, point 4): the resident memory of writing, checking, inspecting and viewing a
sampling trace of about 10 GB, beside the same at about 1 GB.

A synthetic noise predictor keeps the run to minutes on 2 cores: the exact Gaussian model
(tracer/models/analytic.py, GaussianOracle: data N(mu, 0.5^2 I) with a ring pattern as mu, one
closed form a step). DDPM (Ho et al. 2020, Alg. 2) samples BATCH images of 3x64x64 through the real
recording path (tracer/recording.py ``record_run``) on a linear schedule of T steps, one step a
timestep, recording five tensors a step (x_t, eps, x0_pred, x0_pred_raw, noise: DDPM clips, so the
raw prediction is kept): STEP_BYTES = 5 x 40 x 3 x 64 x 64 x 4 bytes, 9.8 MB a step. The size asked
for sets T (10 GB: 1,017 steps; 1 GB: 102), so the two traces differ only in their length and
what does not grow with the length shows as equal numbers.

Each phase runs in a process of its own and reports its own peak resident set (VmHWM from
/proc: a child's getrusage maximum would start from the parent's across fork and exec):

- write: ``record_run`` into the trace;
- check: ``noisescope check FILE`` (every equation at every step, the findings);
- inspect: ``noisescope inspect FILE`` (per-step mean and std of x_t, eps, x0_pred);
- view: a real ``noisescope view`` server driven by headless Chromium (Playwright): the playback
  page opened, the player's first frame, the page drawn whole (the findings and the failing steps:
  one pass over every row each, the scalar plots' per-step statistics: another), the player's prefetch
  of its frames ended (every chunk written by the server and fetched, or its budget of compressed
  frames full: viewer/player_frontend/player.js), and a scrub to SCRUB_POINTS positions across the
  trace, backwards then forwards, each waited for until the server has drawn that step's label (the
  player fetches the chunks it let go as it goes). Measured: the Streamlit server process's peak RSS,
  the page's JS heap (CDP, after a forced GC), the renderer's RSS and every Chromium process's.

Every peak is held to BOUND_MB (a ratio row: peak / BOUND_MB <= 1), and each phase at the large
size against the small one (a ratio row: <= 1.25). The load average is printed beside the
numbers, the file size and the phase times too. The trace and the player's frame files live in a
temporary folder removed at the end, on failure too; a disk without room for the trace (its size
plus 3 GB) skips the size with a line.

``python -m benchmarks --only bench_scale`` runs 1 GB and 10 GB (``--quick``: 0.25 and 1 GB);
``python -m benchmarks.bench_scale --gb 1,10`` picks the sizes; $NOISESCOPE_BENCH_SCALE_GB too, and
$NOISESCOPE_BENCH_SCALE_DIR the folder the temporary one is made in.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import Ratio, viewer_server

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (3, 64, 64)
BATCH = 40
TENSORS = 5  # x_t, eps, x0_pred, x0_pred_raw, noise
STEP_BYTES = TENSORS * BATCH * SHAPE[0] * SHAPE[1] * SHAPE[2] * 4
MIN_STEPS = 25  # the linear schedule needs T > 20
BOUND_MB = 600.0
GROWTH_TARGET = 1.25  # peak at the large size / peak at the small one
SCRUB_POINTS = 8
SIZES_GB = (1.0, 10.0)
QUICK_SIZES_GB = (0.25, 1.0)
SIZES_ENV = "NOISESCOPE_BENCH_SCALE_GB"
DIR_ENV = "NOISESCOPE_BENCH_SCALE_DIR"
DISK_MARGIN = 3 << 30  # free space left beside the trace (the player's frame files, the rest of the machine)
WAIT_MS = 1_800_000  # the longest any one wait of the browser phase may take (a 10 GB trace is read several times)
_REPORT: list[str] = []


def steps_for(gb: float) -> int:
    return max(MIN_STEPS, round(gb * 1e9 / STEP_BYTES))


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def vm_mb(field: str, pid: int | str = "self") -> float:
    """VmHWM (peak) or VmRSS (now) of a process in MB, from /proc; 0 if it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- the phases' own processes --------------------------------------------------------------------------


def _mean_image() -> Any:
    """The data mean: a ring, +0.8 on it and -0.8 off it, in each of the three channels."""
    import torch

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SHAPE[1]), torch.linspace(-1, 1, SHAPE[2]), indexing="ij")
    ring = torch.where((xx**2 + yy**2 - 0.45).abs() < 0.2, 0.8, -0.8).to(torch.float64)
    return ring.expand(SHAPE).clone()


def child_write(path: str, steps: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # 49,152-value tensors: OpenMP threads only contend on a busy 2-core machine
    from tracer.models.analytic import GaussianOracle
    from tracer.recording import record_run
    from tracer.samplers.config import SamplerConfig
    from tracer.samplers.loop import initial_noise
    from tracer.schedules import make_schedule

    started = vm_mb("VmRSS")
    schedule = make_schedule("linear", steps)
    model = GaussianOracle(schedule, _mean_image(), 0.5)
    generator = torch.Generator().manual_seed(0)
    x_T = initial_noise((BATCH, *SHAPE), generator=generator)  # noqa: N806
    record_run(model, schedule, SamplerConfig(sampler="ddpm"), x_T=x_T, labels=None, generator=generator, out=path, progress=False)
    return {"start_mb": started}


def child_cli(argv: Sequence[str]) -> dict[str, Any]:
    from tracer.cli import main

    started = vm_mb("VmRSS")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    lines = out.getvalue().strip().splitlines()
    return {"start_mb": started, "exit": code, "last": lines[-1] if lines else ""}


def run_child(*args: str) -> dict[str, Any]:
    """``python -m benchmarks.bench_scale --child ARGS`` in a process of its own: its JSON, with its peak RSS and wall time."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", "--child", *args], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {args[0]} phase failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - start
    return result


# -- the viewer, in a browser -----------------------------------------------------------------------------


def server_pid(proc: subprocess.Popen[bytes]) -> int:
    """The Streamlit process ``noisescope view`` started (``python -m viewer.serve``)."""
    from benchmarks.bench_player import descendants

    for pid in descendants(proc.pid):
        with contextlib.suppress(OSError):
            if b"viewer.serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise RuntimeError("no viewer.serve process under noisescope view")


def step_label_shown(page: Any, step: int, rows: int) -> None:
    """Wait until the server has drawn the label of ``step`` (0-based) below the player."""
    page.wait_for_function("(text) => Array.from(document.querySelectorAll('[class*=\"st-key-step-label\"]'))"
                           ".some((e) => e.innerText.includes(text))", arg=f"Step {step + 1} of {rows}", timeout=WAIT_MS, polling=100)


SCRUB_ONE_JS = """(i) => { const s = document.getElementById('slider'); s.value = String(i); s.dispatchEvent(new Event('input')); }"""


def frames_loaded(page: Any, frame: Any, frames: Path, start: float) -> tuple[int, int]:
    """Wait until the player's prefetch has ended: every chunk of frames fetched, or its byte budget full (a line on stderr
    each minute); (chunks fetched, chunks in all)."""
    deadline, told = time.monotonic() + WAIT_MS / 1000, time.monotonic()
    while True:
        done, loaded, total = frame.evaluate("() => { const s = window.__noisescopePlayer; return [s.prefetched, s.chunksLoaded, s.chunksTotal]; }")
        if done:
            return int(loaded), int(total)
        written = len(list(frames.rglob("*.json")))
        if time.monotonic() > deadline:
            raise RuntimeError(f"the player fetched {loaded} of {total} chunks in {WAIT_MS / 1000:.0f} s ({written} written by the server)")
        if time.monotonic() - told > 60:
            told = time.monotonic()
            print(f"   bench_scale: {time.perf_counter() - start:.0f} s, {loaded} of {total} chunks loaded, {written} written, load {load()}",
                  file=sys.stderr, flush=True)
        page.wait_for_timeout(500)


def child_view(folder: Path, name: str, rows: int) -> dict[str, Any]:
    """The browser phase (run in the benchmark's own process: the server and Chromium are its children)."""
    from playwright.sync_api import sync_playwright

    from benchmarks.bench_player import CHROMIUM, CHROMIUM_ARGS, js_memory, player_frame, renderer_rss

    frames = folder / "frames"
    times: dict[str, float] = {}
    with viewer_server(folder, {"NOISESCOPE_FRAMES_DIR": str(frames)}) as (base, proc), sync_playwright() as p:
        serve = server_pid(proc)
        idle_mb = vm_mb("VmRSS", serve)
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            start = time.perf_counter()
            page.goto(f"{base}/?view=playback&trace={name}", timeout=WAIT_MS)
            frame = player_frame(page, timeout_s=WAIT_MS / 1000)
            times["first frame"] = time.perf_counter() - start
            page.locator("[class*='st-key-eq-'] .katex").first.wait_for(timeout=WAIT_MS)  # findings, failing steps, statistics
            times["page whole"] = time.perf_counter() - start
            fetched, chunks = frames_loaded(page, frame, frames, start)
            times["frames loaded"] = time.perf_counter() - start
            targets = [round(k * (rows - 1) / (SCRUB_POINTS - 1)) for k in range(SCRUB_POINTS)]
            start = time.perf_counter()
            for i in [*reversed(targets[:-1]), *targets[1:]]:  # the first frame shows step 0's neighbourhood: backwards from the end, then forwards
                frame.evaluate(SCRUB_ONE_JS, i)
                step_label_shown(page, i, rows)
            scrubs = 2 * (SCRUB_POINTS - 1)
            times["scrub"] = (time.perf_counter() - start) / scrubs
            page.wait_for_timeout(1000)
            evicted, kept = frame.evaluate("() => [window.__noisescopePlayer.evicted, window.__noisescopePlayer.control.kept()[0]]")
            renderer, browser_mb = renderer_rss()
            mem = js_memory(page)
            peak, now = vm_mb("VmHWM", serve), vm_mb("VmRSS", serve)
            cli_peak = vm_mb("VmHWM", proc.pid)
        finally:
            browser.close()
    frame_bytes = sum(f.stat().st_size for f in frames.rglob("*") if f.is_file()) if frames.exists() else 0
    return {"peak_mb": peak, "rss_end_mb": now, "start_mb": idle_mb, "cli_peak_mb": cli_peak, "renderer_mb": renderer,
            "browser_mb": browser_mb, "mem": mem, "times": times, "scrubs": scrubs, "chunks": chunks, "fetched": fetched, "evicted": evicted, "kept_mb": kept / 1e6,
            "frame_mb": frame_bytes / 1e6}


# -- one size, every phase ---------------------------------------------------------------------------------


def measure_size(gb: float, base_dir: Path | None, browser: bool) -> dict[str, Any] | None:
    steps = steps_for(gb)
    expected = steps * STEP_BYTES
    where = base_dir if base_dir is not None else Path(tempfile.gettempdir())
    free = shutil.disk_usage(where).free
    if free < expected + DISK_MARGIN:
        _REPORT.append(f"- {gb:g} GB: skipped, {free / 1e9:.1f} GB free in {where} (the trace needs {expected / 1e9:.1f} GB and "
                       f"{DISK_MARGIN >> 30} GB are left beside it)")
        return None
    out: dict[str, Any] = {"gb": gb, "steps": steps}
    with tempfile.TemporaryDirectory(prefix="noisescope-bench-scale-", dir=base_dir) as tmp:
        folder = Path(tmp)
        path = folder / f"scale{steps}.h5"
        try:
            out["load_before"] = load()
            out["write"] = run_child("write", str(path), str(steps))
            out["size"] = path.stat().st_size
            out["check"] = run_child("cli", "check", str(path))
            out["inspect"] = run_child("cli", "inspect", str(path))
            if browser:
                start = time.perf_counter()
                out["view"] = child_view(folder, path.name, steps)
                out["view"]["seconds"] = time.perf_counter() - start
            out["load_after"] = load()
        finally:
            path.unlink(missing_ok=True)  # the folder goes too, with the player's frame files
    return out


PHASES = ("write", "check", "inspect", "view")


def _line(r: dict[str, Any]) -> str:
    parts = [f"- {r['size'] / 1e9:.2f} GB trace ({r['steps']} DDPM steps, batch {BATCH} of {'x'.join(map(str, SHAPE))}, "
             f"{STEP_BYTES / 1e6:.1f} MB a step), load average {r['load_before']} before, {r['load_after']} after ({os.cpu_count()} cores):"]
    w, c, i = r["write"], r["check"], r["inspect"]
    parts.append(f"write peak RSS {w['peak_mb']:.0f} MB ({w['start_mb']:.0f} after the imports; {w['seconds']:.0f} s, "
                 f"{r['size'] / 1e6 / w['seconds']:.0f} MB/s);")
    parts.append(f"check {c['peak_mb']:.0f} MB ({c['start_mb']:.0f} after the imports; {c['seconds']:.0f} s, exit {c['exit']}: {c['last'][:60]!r});")
    parts.append(f"inspect {i['peak_mb']:.0f} MB ({i['start_mb']:.0f} after the imports; {i['seconds']:.0f} s);")
    v = r.get("view")
    if v is not None:
        t = v["times"]
        m = v["mem"]
        parts.append(f"view: server peak RSS {v['peak_mb']:.0f} MB ({v['start_mb']:.0f} started, {v['rss_end_mb']:.0f} at the end; "
                     f"the `noisescope view` parent {v['cli_peak_mb']:.0f}), first frame {t['first frame']:.1f} s, page drawn whole "
                     f"{t['page whole']:.0f} s, the player's prefetch done {t['frames loaded']:.0f} s ({v['fetched']} of {v['chunks']} chunks, "
                     f"{v['frame_mb']:.0f} MB of frame files), {v['scrubs']} scrubs {t['scrub']:.1f} s each to the server's label, "
                     f"{v['evicted']} chunks let go and {v['kept_mb']:.0f} MB of compressed frames kept at the end; "
                     f"page: JS heap used {m['heap_used_mb']:.1f} MB ({m['heap_used_gc_mb']:.1f} after a forced GC), ArrayBuffers "
                     f"{m['backing_gc_mb']:.1f} MB, renderer RSS {v['renderer_mb']:.0f} MB, all Chromium processes {v['browser_mb']:.0f} MB.")
    return " ".join(parts)


def _ratios(results: list[dict[str, Any]]) -> list[Ratio]:
    rows: list[Ratio] = []
    big = results[-1]
    for phase in PHASES:
        if phase not in big:
            continue
        peak = float(big[phase]["peak_mb"])
        rows.append(Ratio(name=f"scale: {phase} peak RSS / {BOUND_MB:.0f} MB ({big['size'] / 1e9:.1f} GB trace)", median=peak / BOUND_MB,
                          low=peak / BOUND_MB, high=peak / BOUND_MB, seconds_a=0.0, seconds_b=float(big[phase]["seconds"]),
                          target="<= 1.0", note=f"peak {peak:.0f} MB"))
    if len(results) > 1:
        small = results[0]
        for phase in PHASES:
            if phase in big and phase in small:
                a, b = float(small[phase]["peak_mb"]), float(big[phase]["peak_mb"])
                rows.append(Ratio(name=f"scale: {phase} peak RSS, {big['size'] / 1e9:.1f} GB / {small['size'] / 1e9:.1f} GB trace",
                                  median=b / a, low=b / a, high=b / a, seconds_a=float(small[phase]["seconds"]),
                                  seconds_b=float(big[phase]["seconds"]), target=f"<= {GROWTH_TARGET}", note=f"{a:.0f} vs {b:.0f} MB"))
    return rows


def sizes(quick: bool) -> list[float]:
    text = os.environ.get(SIZES_ENV)
    if text:
        return sorted(float(part) for part in text.split(",") if part.strip())
    return list(QUICK_SIZES_GB if quick else SIZES_GB)


def run(quick: bool, gbs: Sequence[float] | None = None) -> list[Ratio]:
    _REPORT.clear()
    _REPORT.append("")
    _REPORT.append("Traces larger than memory (benchmarks/bench_scale.py): peak resident memory of each phase, each in its own process:")
    browser = True
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        browser = False
        _REPORT.append("- the viewer phase is skipped: playwright (python) is not installed")
    from benchmarks.bench_player import CHROMIUM

    if browser and not CHROMIUM.exists():
        browser = False
        _REPORT.append(f"- the viewer phase is skipped: no chromium at {CHROMIUM} (make browser)")
    base_dir = Path(os.environ[DIR_ENV]) if os.environ.get(DIR_ENV) else None
    results = []
    for gb in (sorted(gbs) if gbs else sizes(quick)):
        print(f"   bench_scale: {gb:g} GB ({steps_for(gb)} steps), load {load()}", file=sys.stderr, flush=True)
        result = measure_size(gb, base_dir, browser)
        if result is not None:
            results.append(result)
            _REPORT.append(_line(result))
    return _ratios(results) if results else []


def report() -> list[str]:
    return list(_REPORT)


def _child(argv: list[str]) -> None:
    kind, rest = argv[0], argv[1:]
    result = child_write(rest[0], int(rest[1])) if kind == "write" else child_cli(rest)
    result["peak_mb"] = vm_mb("VmHWM")
    print(json.dumps(result))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--child":
        _child(args[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.25 and 1 GB instead of 1 and 10 GB")
    parser.add_argument("--gb", help="comma-separated trace sizes in GB, e.g. 1,10")
    parsed = parser.parse_args(args)
    from benchmarks.common import format_table

    table = run(parsed.quick, [float(x) for x in parsed.gb.split(",")] if parsed.gb else None)
    print(format_table(table))
    print("\n".join(report()))
    return 0 if all(r.passed for r in table) else 1


if __name__ == "__main__":
    raise SystemExit(main())
