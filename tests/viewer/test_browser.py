"""The real thing: `noisescope view` served on a free localhost port, driven by headless Chromium through Playwright.

Needs Debian's chromium at /usr/bin/chromium (``make browser`` or ``.ci/run`` installs it);
without it the test is skipped, unless NOISESCOPE_REQUIRE_BROWSER=1 (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.viewer.conftest import Traces
from tests.viewer.hostile import FILE_NAME, MARKERS, RECOVERED_FROM, make_hostile
from tracer.trace import schema

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STARTUP_SECONDS = 90


def need(condition: bool, reason: str) -> None:
    """Skip for a missing browser, or fail when the environment says the browser is required."""
    if condition:
        return
    if os.environ.get("NOISESCOPE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (NOISESCOPE_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"noisescope view exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the viewer did not answer /_stcore/health within {STARTUP_SECONDS} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def viewer_server(root: Path, tmp_path: Path) -> Iterator[str]:
    """`noisescope view ROOT --port P` (the console script of this venv), its base URL; stopped in every case."""
    script = Path(sys.executable).with_name("noisescope")
    assert script.exists(), f"{script} is missing: install the package (pip install -e .)"
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(script), "view", str(root), "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: streamlit runs as its child
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc, log)
        assert f"noisescope viewer: {base}" in log.read_text()  # the URL is printed
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


@pytest.fixture
def server(traces: Traces, tmp_path: Path) -> Iterator[str]:
    with viewer_server(traces.root, tmp_path) as base:
        yield base


@contextlib.contextmanager
def chromium_page() -> Iterator[Any]:
    """A fresh 1400x1600 page of Debian's headless Chromium, closed afterwards (skipped, or failed under
    NOISESCOPE_REQUIRE_BROWSER, where chromium or Playwright is missing)."""
    need(CHROMIUM.exists(), f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright (python) is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1600})
        finally:
            browser.close()


def player_frame(page, timeout_ms: int = 60_000):  # noqa: ANN001, ANN201 - Playwright's Page and Frame
    """The player's iframe, once it has painted a frame (polled with Playwright's own wait, which keeps its events flowing)."""
    waited = 0
    while waited < timeout_ms:
        for frame in page.main_frame.child_frames:
            if ".player/index.html" in frame.url:
                with contextlib.suppress(Exception):
                    if frame.evaluate("() => !!(window.__noisescopePlayer && window.__noisescopePlayer.firstPaint !== null)"):
                        return frame
        page.wait_for_timeout(100)
        waited += 100
    raise AssertionError("the player did not paint a frame")


def test_stepping_forward_in_chromium_changes_the_step_and_renders_the_equations(server: str, traces: Traces, tmp_path: Path) -> None:
    """Next in the player moves its step at once and sends it to Python: the page's step label, the equations and the URL follow."""
    name = traces.name(traces.images_ddim)
    with chromium_page() as page:
        from playwright.sync_api import expect

        page.goto(f"{server}/?view=playback&trace={name}", timeout=60_000)
        label = page.locator(".st-key-step-label")
        expect(label).to_contain_text("Step 1 of 10", timeout=60_000)
        before = label.inner_text()
        player = player_frame(page)
        player.get_by_role("button", name="Next").click()
        expect(player.locator("#label")).to_contain_text("Step 2 of 10")
        expect(label).to_contain_text("Step 2 of 10", timeout=30_000)
        assert label.inner_text() != before
        page.wait_for_url("**step=1**", timeout=10_000)  # the URL follows the step
        equations = page.locator("[class*='st-key-eq-'] .katex")
        expect(equations.first).to_be_visible(timeout=30_000)
        assert equations.count() >= 2  # each equation, symbolic and with this step's values
        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
    assert (tmp_path / "viewer.png").stat().st_size > 10_000


def test_the_player_plays_in_the_page_pauses_to_python_and_obeys_the_keyboard(server: str, traces: Traces) -> None:
    """Play advances the player's step text several times a second with no round trip and no blank frame; pause sends
    the step back (the equations' step label follows); space, arrows, Home and End work; the final-sample frame ends it."""
    name = traces.name(traces.images_ddpm)  # 50 steps
    with chromium_page() as page:
        from playwright.sync_api import expect

        page.goto(f"{server}/?view=playback&trace={name}", timeout=60_000)
        label = page.locator(".st-key-step-label")
        expect(label).to_contain_text("Step 1 of 50", timeout=60_000)
        player = player_frame(page)
        player.wait_for_function("() => window.__noisescopePlayer.chunksLoaded >= window.__noisescopePlayer.chunksTotal", timeout=60_000)
        unloaded = player.evaluate("() => window.__noisescopePlayer.unloaded")  # frames asked for before their chunk came
        player.locator("#speed").select_option("10")
        player.get_by_role("button", name="Play").click()
        texts = set()
        for _ in range(10):  # one second, sampled every 100 ms
            texts.add(player.locator("#label").inner_text())
            page.wait_for_timeout(100)
        assert len(texts) >= 4, texts  # several steps a second, drawn in the page
        player.get_by_role("button", name="Pause").click()
        shown = player.locator("#label").inner_text()
        assert shown.startswith("Step ")
        step = shown.split()[1]
        expect(label).to_contain_text(f"Step {step} of 50", timeout=30_000)  # pause sent the step to Python
        stats = player.evaluate("() => ({unloaded: window.__noisescopePlayer.unloaded, shown: window.__noisescopePlayer.shown.length})")
        assert stats["unloaded"] == unloaded and stats["shown"] >= 5  # every frame played had arrived
        player.locator("#label").click()  # focus the player: keys go to it
        player.locator("body").press("Home")
        expect(player.locator("#label")).to_contain_text("Step 1 of 50")
        player.locator("body").press("ArrowRight")
        expect(player.locator("#label")).to_contain_text("Step 2 of 50")
        expect(label).to_contain_text("Step 2 of 50", timeout=30_000)
        player.locator("body").press("End")
        expect(player.locator("#label")).to_contain_text("Final sample")  # after the last step: the trace's samples
        player.locator("body").press("ArrowLeft")
        expect(player.locator("#label")).to_contain_text("Step 50 of 50")
        player.locator("body").press("End")  # at the end: play starts again from the first step (5 s of play at 10 steps/s)
        player.locator("body").press(" ")
        expect(player.get_by_role("button", name="Pause")).to_be_visible()  # space plays (from the start at the end)
        player.locator("body").press(" ")
        expect(player.get_by_role("button", name="Play")).to_be_visible()
        blank = player.evaluate("""() => Array.from(document.querySelectorAll('canvas.img:not(.empty)')).filter(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let k = 0; k < d.length; k += 4) if (d[k] !== 255 || d[k + 1] !== 255 || d[k + 2] !== 255) return false;
            return true; }).length""")
        assert blank == 0  # every panel has something drawn
        dialog = page.get_by_test_id("stDialog")  # a Streamlit dialog over the page (CI once saw one here; which, it did not say)
        with contextlib.suppress(AssertionError):
            expect(dialog).to_have_count(0, timeout=10_000)
        assert not dialog.count(), f"a Streamlit dialog covers the page: {dialog.first.inner_text()!r}"
        player.locator("canvas.img").first.hover(position={"x": 2, "y": 2})  # sample #0's top-left pixel
        expect(player.locator("#tip")).to_contain_text("sample #0 · pixel (0, 0) · x_t ≈")
        page.set_viewport_size({"width": 1024, "height": 900})  # a small screen: the panels wrap, the tiles stay readable
        player.wait_for_function("() => document.body.clientWidth < 800", timeout=10_000)
        page.wait_for_timeout(300)  # the player's resize handler lays the panels out again
        widths = player.evaluate("() => Array.from(document.querySelectorAll('canvas.img')).map(c => [c.getBoundingClientRect().width, c.getBoundingClientRect().right])")
        width = player.evaluate("() => document.body.clientWidth")
        assert all(w / 35 >= 3 and right <= width + 1 for w, right in widths), (widths, width)  # 4 tiles of 8 px + 3 gaps, >= 3 px a pixel, none cut off
        page.set_viewport_size({"width": 1400, "height": 1600})
        player.locator("#every").select_option("5")
        player.locator("body").press("Home")
        player.get_by_role("button", name="Next").click()
        expect(player.locator("#label")).to_contain_text("Step 6 of 50")  # every 5th step
        page.locator(".st-key-step-label").click()  # the keys work with the Streamlit page focused too
        page.keyboard.press("End")
        expect(player.locator("#label")).to_contain_text("Final sample")


CURSOR_JS = """() => Array.from(document.querySelectorAll('.st-key-scalar-strips .layer-above .shapelayer path')).map(p => p.getAttribute('d'))"""
PIXELS_JS = """(colour) => { const c = document.querySelector('canvas.pts'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let k = 0; k < d.length; k += 4) if (d[k] === colour[0] && d[k + 1] === colour[1] && d[k + 2] === colour[2]) n += 1; return n; }"""


def test_a_2d_trace_plays_in_the_page_and_the_scalar_cursor_moves_with_it(server: str, traces: Traces) -> None:
    """A 2-D trace's points play client-side (x_t drawn in its colour, a hover names the sample); while it plays the
    Streamlit page's scalar plots move their cursor without a rerun; at DDPM's last step (sigma = 0) z is dimmed with a note."""
    with chromium_page() as page:
        from playwright.sync_api import expect

        page.goto(f"{server}/?view=playback&trace={traces.name(traces.points_ddpm)}", timeout=60_000)
        player = player_frame(page)
        player.wait_for_function("() => window.__noisescopePlayer.chunksLoaded >= window.__noisescopePlayer.chunksTotal", timeout=60_000)
        expect(player.locator("#label")).to_contain_text("Step 1 of 50")
        assert player.evaluate(PIXELS_JS, [0x1F, 0x77, 0xB4]) > 20  # the x_t points, drawn
        page.locator(".st-key-scalar-strips .layer-above .shapelayer path").first.wait_for(state="attached", timeout=30_000)
        before = page.evaluate(CURSOR_JS)
        assert before
        player.locator("#speed").select_option("10")
        player.get_by_role("button", name="Play").click()
        expect(player.locator("#label")).not_to_contain_text("Step 1 of 50", timeout=10_000)
        page.wait_for_timeout(500)
        during = page.evaluate(CURSOR_JS)
        player.get_by_role("button", name="Pause").click()
        assert during != before  # the cursor lines moved while playing (Streamlit did not rerun: nothing was sent)
        shown = player.locator("#label").inner_text().split()[1]
        expect(page.locator(".st-key-step-label")).to_contain_text(f"Step {shown} of 50", timeout=30_000)
        spot = player.evaluate("""() => { const c = document.querySelector('canvas.pts'), g = c.getContext('2d');
            const d = g.getImageData(0, 0, c.width, c.height).data;
            for (let k = 0; k < d.length; k += 4) if (d[k] === 0x1f && d[k + 1] === 0x77 && d[k + 2] === 0xb4) return [(k / 4) % c.width, Math.floor(k / 4 / c.width)];
            return null; }""")
        assert spot is not None
        box = player.locator("canvas.pts").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + spot[0] + 1, box["y"] + spot[1] + 1)
        expect(player.locator("#tip")).to_contain_text("sample #")
        expect(player.locator("#tip")).to_contain_text("x0_pred ≈")

        page.goto(f"{server}/?view=playback&trace={traces.name(traces.images_ddpm)}", timeout=60_000)  # DDPM: sigma = 0 at the end
        player = player_frame(page)
        player.wait_for_function("() => window.__noisescopePlayer.chunksLoaded >= window.__noisescopePlayer.chunksTotal", timeout=60_000)
        assert player.locator(".bar", has_text="σ = 0").count() == 0  # sigma > 0 at the first step: z is drawn
        player.locator("#label").click()
        player.locator("body").press("End")  # the final samples
        player.locator("body").press("ArrowLeft")  # the last step, where sigma = 0
        expect(player.locator("#label")).to_contain_text("Step 50 of 50")
        expect(player.locator(".bar", has_text="σ = 0")).to_have_count(1, timeout=10_000)
        expect(player.locator("canvas.img.empty")).to_have_count(1)  # z only: every other panel drawn as usual


def test_compare_plays_every_trace_at_the_same_noise_level_and_pause_lines_the_tabs_up(server: str, traces: Traces) -> None:
    """Compare's player: one track per trace, each at its step nearest the shared noise level; pausing sends the
    position back and the alignment below follows A's step."""
    names = f"{traces.name(traces.images_ddim)},{traces.name(traces.images_ddpm)}"
    with chromium_page() as page:
        from playwright.sync_api import expect

        page.goto(f"{server}/?view=compare&compare={names}", timeout=60_000)
        player = player_frame(page)
        player.wait_for_function("() => window.__noisescopePlayer.chunksLoaded >= window.__noisescopePlayer.chunksTotal", timeout=60_000)
        assert player.locator("canvas.img").count() == 2  # x0_pred of A and of B
        label = player.locator("#label")
        expect(label).to_contain_text("A step 1 ")
        expect(label).to_contain_text("B step 1 ")
        player.locator("#speed").select_option("20")
        player.get_by_role("button", name="Play").click()
        page.wait_for_timeout(1500)
        player.get_by_role("button", name="Pause").click()
        text = label.inner_text()
        a_step = text.split("A step ")[1].split()[0]
        assert "B step " in text and a_step != "1", text
        expect(page.locator(".st-key-compare-alignment")).to_contain_text(f": step {a_step},", timeout=30_000)


def test_compare_plays_ddim_heun_and_flow_euler_by_noise_level(server: str, traces: Traces, tmp_path: Path) -> None:
    """Three families from one x_T (DDIM 50, Heun 25, flow Euler 50) in one player: three tracks, the label naming the
    noise level and each trace's step; played and paused, the alignment follows A's step; lined up by sigma instead,
    the label says sigma. A screenshot is saved."""
    names = ",".join(quote(traces.name(p)) for p in (traces.family_ddim, traces.family_heun, traces.family_flow))
    with chromium_page() as page:
        from playwright.sync_api import expect

        page.goto(f"{server}/?view=compare&compare={names}", timeout=60_000)
        player = player_frame(page)
        player.wait_for_function("() => window.__noisescopePlayer.chunksLoaded >= window.__noisescopePlayer.chunksTotal", timeout=60_000)
        assert player.locator("canvas.img").count() == 3  # x0_pred of A, B and C
        label = player.locator("#label")
        expect(label).to_contain_text("log SNR = -inf · A step 1 (t = 49) · B step 1 (t = 49) · C step 1 (t = 49)")
        player.locator("#speed").select_option("20")
        player.get_by_role("button", name="Play").click()
        page.wait_for_timeout(1500)
        player.get_by_role("button", name="Pause").click()
        text = label.inner_text()
        a_step = text.split("A step ")[1].split()[0]
        assert text.startswith("log SNR = ") and "B step " in text and "C step " in text and a_step != "1", text
        alignment = page.locator(".st-key-compare-alignment")
        expect(alignment).to_contain_text(f": step {a_step},", timeout=30_000)
        expect(alignment).to_contain_text("Δ log SNR")
        page.get_by_text("Distances over noise level").first.click()
        expect(page.locator(".st-key-compare-distances .js-plotly-plot")).to_be_visible(timeout=30_000)
        page.screenshot(path=str(tmp_path / "compare_families.png"), full_page=True)
        page.get_by_text("σ = √((1 − ᾱ)/ᾱ)").click()  # line up by sigma
        player = player_frame(page)
        expect(player.locator("#label")).to_contain_text("σ = ", timeout=30_000)
        expect(alignment).to_contain_text("Δσ", timeout=30_000)
        page.screenshot(path=str(tmp_path / "compare_families_sigma.png"), full_page=True)
    assert (tmp_path / "compare_families.png").stat().st_size > 10_000


def test_a_trace_being_written_grows_on_screen_and_then_plays_in_the_page(tmp_path: Path) -> None:
    """A trace still being written is followed (the step shown moves to the newest committed step as the writer goes
    on); once it is complete, the page reloads it into the player."""
    from tests.viewer.test_app import finish, live_writer, release, wait_for_line

    root = tmp_path / "live"
    root.mkdir()
    with live_writer("tests.trace.writer_process", root / "live.h5", "60", "gate", until="step 2") as proc, \
            viewer_server(root, tmp_path) as base, chromium_page() as page:
        from playwright.sync_api import expect

        page.goto(f"{base}/?view=playback&trace=live.h5", timeout=60_000)
        label = page.locator(".st-key-step-label")
        expect(label).to_contain_text("Step 3 of ", timeout=60_000)  # steps 0..2 committed: the newest is shown
        newest = 2
        for committed in (12, 24, 36):  # the writer commits more rows; the page follows on its own
            release(proc, committed - newest)
            wait_for_line(proc, f"step {committed}")
            newest = committed
            # while a rerun replaces it, the old label can stand beside the new one for a moment: wait for the newest
            expect(label.filter(has_text=f"Step {committed + 1} of ")).to_have_count(1, timeout=60_000)
        assert finish(proc) == 0
        player = player_frame(page)  # complete: the player takes over
        expect(player.locator("#label")).to_contain_text("of 60", timeout=30_000)


ATTRIBUTES_JS = """() => Array.from(document.querySelectorAll('*')).flatMap(e =>
    ['src', 'href', 'xlink:href', 'srcset', 'poster', 'data', 'action'].map(a => e.getAttribute(a)).filter(Boolean)
        .map(v => e.tagName.toLowerCase() + ' ' + v))"""


def test_a_hostile_trace_makes_the_browser_fetch_nothing_but_the_viewer(tmp_path: Path) -> None:
    """Every page of a trace whose name, config and attributes hold markdown images, links and <img> tags:
    Chromium asks only the viewer's own origin for anything, for no 'hostile-*' path, and no element's
    src or href names a hostile URL; the hostile strings are on the page as literal text."""
    hostile = make_hostile(tmp_path / "hostile")
    sampling, hand_made = hostile.name(hostile.sampling), hostile.name(hostile.hand_made)
    pages = [  # (query, text that shows the page has been drawn)
        (f"view=playback&trace={quote(sampling)}", "Step 1 of 8"),
        (f"view=playback&trace={quote(hand_made)}", "Step 1 of 8"),
        (f"view=compare&compare={quote(sampling)},{quote(hand_made)}", "at the same noise level"),
        (f"view=training&trace={quote(hostile.name(hostile.training))}", "Forward process explorer"),
        (f"view=schedule&trace={quote(sampling)}", "distinct timesteps"),
        (f"view=playback&trace={quote(hostile.name(hostile.corrupt))}", "corrupt"),
    ]
    requested: list[str] = []
    with viewer_server(hostile.root, tmp_path) as base, chromium_page() as page:
        from playwright.sync_api import expect

        own = urlsplit(base).netloc
        page.on("request", lambda request: requested.append(request.url))
        for k, (query, drawn) in enumerate(pages):
            page.goto(f"{base}/?{query}", timeout=60_000)
            expect(page.get_by_text(drawn).first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1500)  # let anything the page would load start loading
            if "trace=" + quote(sampling) in query and "playback" in query:
                expect(page.get_by_text(f"Recovered copy of {RECOVERED_FROM}.")).to_be_visible()  # literally
                expect(page.locator(".st-key-trace-status")).to_contain_text(FILE_NAME)
            attributes = [a for frame in page.frames for a in frame.evaluate(ATTRIBUTES_JS)]  # the player's frame too
            hostile_attributes = [a for a in attributes if any(m in a for m in MARKERS) and not a.split(" ", 1)[1].startswith("#")]  # a heading's own anchor
            assert not hostile_attributes, (query, hostile_attributes)
            assert page.locator("img[src*='127.0.0.1:9'], img[src*='hostile-'], a[href*='127.0.0.1:9']").count() == 0
            page.screenshot(path=str(tmp_path / f"hostile-{k}.png"), full_page=True)
    assert requested
    foreign = [u for u in requested if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != own]
    assert not foreign, foreign
    assert all(urlsplit(u).scheme in ("http", "https", "ws", "wss", "data", "blob") for u in requested), requested
    fetched_hostile = [u for u in requested if any(m in urlsplit(u).path for m in MARKERS)]
    assert not fetched_hostile, fetched_hostile


# Roles whose accessible name is what a screen reader announces for a control.
CONTROL_ROLES = frozenset({"button", "link", "tab", "checkbox", "switch", "radio", "combobox", "listbox", "option", "slider", "spinbutton",
                           "textbox", "searchbox", "menuitem", "menuitemcheckbox", "menuitemradio", "popupbutton", "togglebutton"})
# A Material Symbols ligature ("keyboard_double_arrow_left", "first_page icon" as Streamlit names an icon-only button) ...
ICON_LIGATURE = re.compile(r"^[a-z]+(?:_[a-z]+)+(?: icon)?$")
# ... or one of the one-word ones our code or Streamlit's could leave as a name.
MATERIAL_WORDS = frozenset({"error", "warning", "info", "check", "close", "menu", "search", "add", "remove", "delete", "download", "upload",
                            "settings", "refresh", "home", "help", "done", "cancel", "clear", "edit", "star", "visibility", "fullscreen"})
WORDS_OF_THE_TRACE = frozenset(schema.names())  # x_t, x0_pred, eps_cond as options of a picker: trace names, not icons


def looks_like_an_icon(name: str) -> bool:
    """An accessible name that is an icon's name, not words: a ligature name, a one-word Material name, or no letter at all (emoji)."""
    name = name.strip()
    if not name or name in WORDS_OF_THE_TRACE:
        return False
    return bool(ICON_LIGATURE.match(name)) or name.removesuffix(" icon") in MATERIAL_WORDS or not any(c.isalnum() for c in name)


def control_names(page) -> list[tuple[str, str]]:  # noqa: ANN001 - Playwright's Page
    """(role, accessible name) of every control Chromium exposes on the page, its frames' (the player's) included:
    the accessibility tree a screen reader reads, from the DevTools protocol."""
    cdp = page.context.new_cdp_session(page)
    try:
        frames, tree = [], [cdp.send("Page.getFrameTree")["frameTree"]]
        while tree:
            node = tree.pop()
            frames.append(node["frame"]["id"])
            tree.extend(node.get("childFrames", []))
        out = []
        for frame in frames:
            for node in cdp.send("Accessibility.getFullAXTree", {"frameId": frame})["nodes"]:
                role = str(node.get("role", {}).get("value", "")).lower()
                if not node.get("ignored") and role in CONTROL_ROLES:
                    out.append((role, str(node.get("name", {}).get("value", ""))))
        return out
    finally:
        cdp.detach()


def settled_control_names(page, timeout_ms: int = 30_000) -> list[tuple[str, str]]:  # noqa: ANN001 - Playwright's Page
    """``control_names`` once the page has stopped changing (the same twice, a second apart: plots, toolbars and a rerun done)."""
    previous = control_names(page)
    for _ in range(timeout_ms // 1000):
        page.wait_for_timeout(1000)
        names = control_names(page)
        if names == previous and len(names) >= 5:
            return names
        previous = names
    return previous


def test_every_control_on_every_page_is_named_in_words_not_by_an_icon(server: str, traces: Traces) -> None:
    """Buttons, links, tabs and fields on the playback pages (the player's and the server-side scrubber's), an error,
    Compare, Training and Schedule: no accessible name is an icon's ligature name ("first_page icon") or an emoji alone."""
    pages = [  # (query, text that shows the page has been drawn)
        (f"view=playback&trace={quote(traces.name(traces.images_guided))}", "Step 1 of 10"),  # the browser player
        (f"view=playback&trace={quote(traces.name(traces.points_ddim))}", "Step 1 of 10"),  # the server's scrubber
        (f"view=playback&trace={quote(traces.name(traces.corrupt))}", "corrupt"),  # an error, with its icon
        (f"view=compare&compare={quote(traces.name(traces.images_ddpm))},{quote(traces.name(traces.images_ddim))}", "at the same noise level"),
        (f"view=training&trace={quote(traces.name(traces.training))}", "Forward process explorer"),
        (f"view=schedule&trace={quote(traces.name(traces.images_ddim))}", "distinct timesteps"),
    ]
    with chromium_page() as page:
        from playwright.sync_api import expect

        for query, drawn in pages:
            page.goto(f"{server}/?{query}", timeout=60_000)
            expect(page.get_by_text(drawn).first).to_be_visible(timeout=60_000)
            if "images_guided" in query:
                player_frame(page)  # its controls drawn too
            names = settled_control_names(page)
            assert len(names) >= 5, (query, names)  # the sidebar's controls at least: the tree was read
            icons = [(role, name) for role, name in names if looks_like_an_icon(name)]
            assert not icons, (query, icons)


def test_what_counts_as_an_icon_name() -> None:
    for icon in ("keyboard_double_arrow_left", "first_page icon", "arrow_drop_down", "error", "🔬", "⏮"):
        assert looks_like_an_icon(icon), icon
    for words in ("First", "Collapse sidebar", "Remove x_t", "x_t", "x0_pred", "eps", "#3", "3 · class 1", "images_ddim.h5", "Next"):
        assert not looks_like_an_icon(words), words
