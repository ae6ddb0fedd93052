"""The in-browser player (issue 12, point 2), measured in a real browser: Debian's chromium driven by Playwright.

Two traces like the demo's, made with the exact Gaussian model (GaussianOracle) and
record_run: images 1x16x16, batch 20, a 50-step DDIM run and a 1,000-step DDPM run.
For each, a real ``noisescope view`` server is started and the page opened; through
the stats the player exposes (``window.__noisescopePlayer``: every frame drawn with its
performance.now() time) this measures:

- first paint: from the request (page.goto) to the first frame drawn (target <= 2 s), the
  first player page of a fresh browser (its cache cold: Streamlit's scripts for
  components and KaTeX are fetched then) and the next ones; and the page drawn whole (the
  scalar strips plotted and the equations typeset: on a session's first draw they follow
  the player, viewer/panels/playback.py);
- play at a requested 30 steps a second once the page has drawn (the equations shown: the
  Streamlit page shares the iframe's main thread), frames possibly still arriving:
  distinct steps shown a second between the first and the last frame of the play (target >= 25), the median and worst interval between frames, stalls (ticks
  that waited for a chunk not yet arrived: the frame shown stays), and blank panels
  (every panel's canvas looked at every 50 ms during play; target 0);
- one scrub once every frame has arrived and the page has settled from the pause's rerun (2 s):
  the slider's input event to the frame painted (two animation frames later), median and worst
  of 20 (target <= 50 ms); and to the
  frame drawn on the canvas (the player's own stats);
- the memory of the browser's processes (resident set, from /proc) once the trace's frames
  are all loaded (target <= 300 MB for the page's renderer with the DDPM trace): after the
  play and the scrubs (the play's looks at every panel read the canvases back, garbage of
  their own), and on a DDPM page loaded and left idle; as found and again after
  a forced garbage collection (CDP HeapProfiler.collectGarbage: what is live, without the
  garbage a collection has not reclaimed yet); and the page's JS heap (CDP
  Performance.getMetrics, Runtime.getHeapUsage: the V8 heap and the ArrayBuffer backing
  stores outside it, where the player's frames are). The player's iframe is same-origin: it
  runs in the page's renderer, on its main thread and in its V8 isolate, so these numbers
  cover the page and the player together.

- the first frame beside its floor: fresh pages of the DDIM trace (browser cache warm) taken in turn with fresh
  pages of a Streamlit page holding only a custom component that paints one frame from its arguments
  (benchmarks/player_floor/, served by the viewer's server process with its flags), FLOOR_ROUNDS of each,
  each started on a quiet page (the one before closed, 2 s waited): what any Streamlit component page takes
  to its first frame on this machine now, and what the player adds to it.

Nothing here is asserted; the numbers are printed with the machine's load average.
Skipped (a line in the report) without chromium or playwright.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import Ratio, viewer_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--no-first-run"]
BATCH, SHAPE, T = 20, (1, 16, 16), 1000
REQUESTED = 30
FLOOR_APP = Path(__file__).resolve().parent / "player_floor" / "app.py"
FLOOR_ROUNDS = 6
_REPORT: list[str] = []


def ring(size: int = 16) -> Any:
    import torch

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    return torch.where((xx**2 + yy**2 - 0.5).abs() < 0.25, 0.9, -0.9).unsqueeze(0).to(torch.float64)


def make_traces(folder: Path) -> dict[str, Path]:
    """ddim50.h5 and ddpm1000.h5 under ``folder``: the exact Gaussian model, 20 images of 1x16x16."""
    import torch

    from tracer.models.analytic import GaussianOracle
    from tracer.recording import record_run
    from tracer.samplers.config import SamplerConfig
    from tracer.samplers.loop import initial_noise
    from tracer.schedules import make_schedule

    schedule = make_schedule("linear", T)
    model = GaussianOracle(schedule, ring(), 0.3)
    out = {}
    for name, config in (("ddim50", SamplerConfig(sampler="ddim", steps=50)), ("ddpm1000", SamplerConfig(sampler="ddpm"))):
        generator = torch.Generator().manual_seed(0)
        x_T = initial_noise((BATCH, *SHAPE), generator=generator)  # noqa: N806
        path = folder / f"{name}.h5"
        record_run(model, schedule, config, x_T=x_T, labels=None, generator=generator, out=path, progress=False)
        out[name] = path
    return out


@contextlib.contextmanager
def server(folder: Path) -> Iterator[str]:
    """``noisescope view FOLDER`` on a free port; its base URL; stopped in every case."""
    with viewer_server(folder) as (base, _):
        yield base


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def renderer_rss() -> tuple[float, float]:
    """(largest renderer's RSS, all browser processes' RSS) in MB: chromium's processes below this one."""
    pids = [p for p in descendants(os.getpid()) if "chrom" in Path(f"/proc/{p}/comm").read_text(errors="replace").lower()]
    renderers = [p for p in pids if "--type=renderer" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    return max((rss_mb(p) for p in renderers), default=0.0), sum(rss_mb(p) for p in pids)


def js_memory(page: Any) -> dict[str, float]:
    """The page's V8 heap (used, total) and ArrayBuffer backing stores in MB; and the renderer's RSS after a forced GC."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        usage = cdp.send("Runtime.getHeapUsage")
        cdp.send("HeapProfiler.collectGarbage")
        page.wait_for_timeout(1000)
        after = cdp.send("Runtime.getHeapUsage")
        renderer_gc, _ = renderer_rss()
    finally:
        cdp.detach()
    mb = 2**20
    return {"heap_used_mb": metrics["JSHeapUsedSize"] / mb, "heap_total_mb": metrics["JSHeapTotalSize"] / mb,
            "backing_mb": usage.get("backingStorageSize", 0) / mb, "heap_used_gc_mb": after["usedSize"] / mb,
            "backing_gc_mb": after.get("backingStorageSize", 0) / mb, "renderer_gc_mb": renderer_gc}


def memory_text(renderer: float, mem: dict[str, float]) -> str:
    return (f"renderer RSS {renderer:.0f} MB ({mem['renderer_gc_mb']:.0f} MB after a forced GC), JS heap used {mem['heap_used_mb']:.1f} MB "
            f"of {mem['heap_total_mb']:.1f} ({mem['heap_used_gc_mb']:.1f} after the GC), ArrayBuffer backing stores {mem['backing_mb']:.1f} MB "
            f"({mem['backing_gc_mb']:.1f} after the GC)")


def player_frame(page: Any, timeout_s: float = 60, component: str = "player") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for frame in page.frames:
            if f".{component}/index.html" in frame.url:
                with contextlib.suppress(Exception):
                    if frame.evaluate("() => !!(window.__noisescopePlayer && window.__noisescopePlayer.firstPaint !== null)"):
                        return frame
        page.wait_for_timeout(10)  # (not time.sleep: Playwright handles the page's events while it waits)
    raise RuntimeError("the player did not paint a frame")


PLAY_JS = """async ([speed, seconds]) => {
  const s = window.__noisescopePlayer; s.shown.length = 0;
  s.control.setSpeed(speed); s.control.go(0, false); s.stalls = 0; s.shown.length = 0;
  const t0 = performance.now(); s.control.play();
  let blank = 0, checks = 0;
  const white = (c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let k = 0; k < d.length; k += 4) if (d[k] !== 255 || d[k + 1] !== 255 || d[k + 2] !== 255) return false; return true; };
  while (performance.now() - t0 < seconds * 1000 && s.control.state().playing) {
    await new Promise(r => setTimeout(r, 50));
    checks += 1; blank += Array.from(document.querySelectorAll('canvas.img:not(.empty)')).filter(white).length;
  }
  const t1 = performance.now(); s.control.pause();
  const shown = s.shown.filter(([i, t]) => t >= t0 && t <= t1);
  return {shown, elapsed: (t1 - t0) / 1000, unloaded: s.unloaded, stalls: s.stalls, blank, checks};
}"""

SCRUB_JS = """async (steps) => {
  const slider = document.getElementById('slider'); const out = [];
  for (const i of steps) {
    const t0 = performance.now(); slider.value = String(i); slider.dispatchEvent(new Event('input'));
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    out.push(performance.now() - t0);
  }
  return out;
}"""


def first_frame(page: Any, url: str, component: str = "player") -> tuple[Any, float]:
    """Open ``url``; the component's frame and ms from the request to its first frame drawn."""
    start_ms = time.time() * 1000
    page.goto(url, timeout=90_000)
    frame = player_frame(page, component=component)
    return frame, frame.evaluate("() => performance.timeOrigin + window.__noisescopePlayer.firstPaint") - start_ms


def beside_floor(browser: Any, base: str, folder: Path) -> str:
    """FLOOR_ROUNDS fresh pages of the DDIM trace and of the floor, in turn: the line of the report."""
    times: dict[str, list[float]] = {"player": [], "floor": []}
    loads = []
    with viewer_server(folder, app=FLOOR_APP) as (floor_base, _):
        for k in range(FLOOR_ROUNDS + 1):  # the first round warms the floor's server and the browser's cache
            for which in ("player", "floor") if k % 2 else ("floor", "player"):
                page = browser.new_page(viewport={"width": 1400, "height": 1400})
                if which == "floor":
                    _, ms = first_frame(page, f"{floor_base}/", "floor")
                else:
                    _, ms = first_frame(page, f"{base}/?view=playback&trace=ddim50.h5")
                    page.locator("[class*='st-key-eq-'] .katex").first.wait_for(timeout=90_000)  # its second run done
                page.close()
                if k:
                    times[which].append(ms)
                    loads.append(os.getloadavg()[0])
                time.sleep(2)
    p, f = (statistics.median(times[w]) for w in ("player", "floor"))
    return (f"- first frame beside its floor, {FLOOR_ROUNDS} fresh pages of each in turn (load average {min(loads):.2f} to {max(loads):.2f}): "
            f"the DDIM trace's player median {p:.0f} ms ({min(times['player']):.0f} to {max(times['player']):.0f}), "
            f"{sum(t <= 2000 for t in times['player'])} of {FLOOR_ROUNDS} within 2 s; a page of only a component painting one frame "
            f"median {f:.0f} ms ({min(times['floor']):.0f} to {max(times['floor']):.0f}); the player adds {p - f:+.0f} ms (medians)")


def measure(page: Any, base: str, name: str, rows: int) -> dict[str, Any]:
    start_ms = time.time() * 1000
    frame, first_paint = first_frame(page, f"{base}/?view=playback&trace={name}.h5")
    page.locator("[class*='st-key-eq-'] .katex").first.wait_for(timeout=90_000)  # the rest of the page drawn (same main thread)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length > 0", timeout=90_000, polling=20)
    whole = time.time() * 1000 - start_ms
    page.wait_for_timeout(1000)
    seconds = min(10.0, rows / REQUESTED + 0.5)
    played = frame.evaluate(PLAY_JS, [REQUESTED, seconds])
    frame.wait_for_function("() => window.__noisescopePlayer.chunksLoaded >= window.__noisescopePlayer.chunksTotal", timeout=120_000)
    page.wait_for_timeout(2000)  # the pause sent the step back: let the page's rerun (charts, equations) settle first
    frame.evaluate("() => { window.__noisescopePlayer.scrubLatencies.length = 0; }")
    scrubs = frame.evaluate(SCRUB_JS, [int(k * (rows - 1) / 19) for k in range(20)])
    page.wait_for_timeout(200)
    drawn = frame.evaluate("() => window.__noisescopePlayer.scrubLatencies.slice()") or [float("nan")]
    renderer, total = renderer_rss()
    mem = js_memory(page)
    times = [t for _, t in played["shown"]]
    steps = [i for i, _ in played["shown"]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    span = (times[-1] - times[0]) / 1000 if len(times) > 1 else float("nan")
    return {"first_paint_ms": first_paint, "whole_ms": whole, "mem": mem, "achieved": (len(set(steps)) - 1) / span, "frames": len(steps),
            "median_ms": statistics.median(gaps) if gaps else float("nan"), "worst_ms": max(gaps, default=float("nan")),
            "stalls": played["stalls"], "unloaded": played["unloaded"], "blank": played["blank"], "checks": played["checks"], "scrub_median_ms": statistics.median(scrubs),
            "drawn_median_ms": statistics.median(drawn), "drawn_worst_ms": max(drawn),
            "scrub_worst_ms": max(scrubs), "renderer_mb": renderer, "browser_mb": total}


def run(quick: bool) -> list[Ratio]:
    _REPORT.append("")
    _REPORT.append("Player in the browser (benchmarks/bench_player.py):")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _REPORT.append("- skipped: playwright (python) is not installed")
        return []
    if not CHROMIUM.exists():
        _REPORT.append(f"- skipped: no chromium at {CHROMIUM}")
        return []
    with tempfile.TemporaryDirectory(prefix="noisescope-bench-player-") as tmp:
        folder = Path(tmp)
        made = time.perf_counter()
        make_traces(folder)
        _REPORT.append(f"- traces made in {time.perf_counter() - made:.1f} s (GaussianOracle, record_run, batch {BATCH} of 1x16x16)")
        with server(folder) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1400})
                page.goto(f"{base}/?view=schedule&trace=ddpm1000.h5", timeout=90_000)
                page.get_by_text("distinct timesteps").first.wait_for(timeout=90_000)
                page.wait_for_timeout(3000)
                baseline, _ = renderer_rss()
                mem = js_memory(page)
                page.close()
                _REPORT.append(f"- baseline: the Schedule page (Streamlit and plotly, no player): {memory_text(baseline, mem)}")
                for name, rows, cache in (("ddim50", 50, "cold"), ("ddim50", 50, "warm"), ("ddpm1000", 1000, "warm")):
                    page = browser.new_page(viewport={"width": 1400, "height": 1400})
                    r = measure(page, base, name, rows)
                    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
                    _REPORT.append(
                        f"- {name} ({rows} steps, browser cache {cache}), load average {load} ({os.cpu_count()} cores): first frame {r['first_paint_ms']:.0f} ms "
                        f"after the request, the page drawn whole after {r['whole_ms']:.0f} ms; play at {REQUESTED} steps/s requested: "
                        f"{r['achieved']:.1f} distinct steps/s achieved, "
                        f"frame interval median {r['median_ms']:.1f} ms, worst {r['worst_ms']:.1f} ms, {r['blank']} blank panels "
                        f"in {r['checks']} looks at every panel during play, "
                        f"{r['stalls']} ticks waiting for a chunk; scrub to frame painted median {r['scrub_median_ms']:.1f} ms, "
                        f"worst {r['scrub_worst_ms']:.1f} ms (to the frame drawn: median {r['drawn_median_ms']:.1f} ms, worst {r['drawn_worst_ms']:.1f} ms); "
                        f"{memory_text(r['renderer_mb'], r['mem'])}; all chromium processes "
                        f"{r['browser_mb']:.0f} MB")
                    page.close()
                page = browser.new_page(viewport={"width": 1400, "height": 1400})
                page.goto(f"{base}/?view=playback&trace=ddpm1000.h5", timeout=90_000)
                player_frame(page).wait_for_function("() => window.__noisescopePlayer.chunksLoaded >= window.__noisescopePlayer.chunksTotal",
                                                     timeout=120_000)
                page.locator("[class*='st-key-eq-'] .katex").first.wait_for(timeout=90_000)
                page.wait_for_timeout(3000)
                renderer, total = renderer_rss()
                mem = js_memory(page)
                load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
                _REPORT.append(f"- ddpm1000 loaded and left idle (no play, no scrub), load average {load}: {memory_text(renderer, mem)}; "
                               f"all chromium processes {total:.0f} MB")
                page.close()
                _REPORT.append(beside_floor(browser, base, folder))
            finally:
                browser.close()
    return []


def report() -> list[str]:
    return _REPORT


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
    print("\n".join(_REPORT))
