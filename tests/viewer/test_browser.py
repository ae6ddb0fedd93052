"""The real thing: `noisescope view` served on a free localhost port, driven by headless Chromium through Playwright.

Needs Debian's chromium at /usr/bin/chromium (``make browser`` or ``.ci/run`` installs it);
without it the test is skipped, unless NOISESCOPE_REQUIRE_BROWSER=1 (CI), where it fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.viewer.conftest import Traces

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


@pytest.fixture
def server(traces: Traces, tmp_path: Path) -> Iterator[str]:
    """`noisescope view ROOT --port P` (the console script of this venv); stopped in every case."""
    script = Path(sys.executable).with_name("noisescope")
    assert script.exists(), f"{script} is missing: install the package (pip install -e .)"
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(script), "view", str(traces.root), "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
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


def test_stepping_forward_in_chromium_changes_the_step_and_renders_the_equations(server: str, traces: Traces, tmp_path: Path) -> None:
    need(CHROMIUM.exists(), f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        need(False, "playwright (python) is not installed")
    name = traces.name(traces.images_ddim)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{server}/?view=playback&trace={name}", timeout=60_000)
            label = page.locator(".st-key-step-label")
            expect(label).to_contain_text("Step 1 of 10", timeout=60_000)
            before = label.inner_text()
            page.get_by_role("button", name="Next").click()
            expect(label).to_contain_text("Step 2 of 10", timeout=30_000)
            assert label.inner_text() != before
            page.wait_for_url("**step=1**", timeout=10_000)  # the URL follows the step
            equations = page.locator("[class*='st-key-eq-'] .katex")
            expect(equations.first).to_be_visible(timeout=30_000)
            assert equations.count() >= 2  # each equation, symbolic and with this step's values
            page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "viewer.png").stat().st_size > 10_000
