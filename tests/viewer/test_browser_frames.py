"""The player in Chromium keeps a track's compressed frames within a byte budget (issue 15, point 4): a long trace's
frames do not pile up in the browser; a chunk let go is fetched again when the position comes back to it.

The budget (KEPT_BYTES in viewer/player_frontend/player.js, 128 MB a track) is set to one byte here through the
player's test handle, so that every chunk but the one of the step shown is let go at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.viewer.conftest import Traces
from tests.viewer.test_browser import chromium_page, player_frame, viewer_server

pytestmark = pytest.mark.browser

DRAWN = "(step) => { const s = window.__noisescopePlayer; return s.shown.length > 0 && s.shown[s.shown.length - 1][0] === step; }"


@pytest.fixture
def server(traces: Traces, tmp_path: Path) -> Iterator[str]:
    with viewer_server(traces.root, tmp_path) as base:
        yield base


def test_frames_over_the_budget_are_let_go_and_fetched_again_when_shown(server: str, traces: Traces) -> None:
    name = traces.name(traces.images_ddpm)  # 50 steps: chunks of steps 0-24 and 25-49, and the final samples
    with chromium_page() as page:
        page.goto(f"{server}/?view=playback&trace={name}", timeout=60_000)
        player = player_frame(page)
        player.wait_for_function("() => window.__noisescopePlayer.prefetched", timeout=60_000)
        stats = "window.__noisescopePlayer"
        assert player.evaluate(f"() => [{stats}.chunksLoaded, {stats}.chunksTotal, {stats}.evicted]") == [3, 3, 0]  # all kept
        player.evaluate(f"() => {stats}.control.setKeptBytes(1)")
        assert player.evaluate(f"() => {stats}.evicted") == 2  # every chunk but step 0's
        kept = player.evaluate(f"() => {stats}.control.kept()[0]")
        # chunk 1 and the final samples were let go before they were ever drawn: fetched again to be drawn, each letting
        # the chunk before go; steps 3 and 27 are drawn from chunks decoded already
        for step in (40, 3, 50, 27):
            player.evaluate(f"(i) => {stats}.control.go(i, false)", step)
            player.wait_for_function(DRAWN, arg=step, timeout=30_000)
            held = player.evaluate(f"() => {stats}.control.kept()[0]")
            assert 0 < held <= 2 * kept  # one chunk's bytes (the one shown), give or take the size of another
        assert player.evaluate(f"() => {stats}.evicted") == 4  # + chunk 0 for chunk 1, + chunk 1 for the final samples
