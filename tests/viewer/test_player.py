"""The browser player's Python side: colour ranges, the 8-bit encoding, the PNG, the chunking, the value it sends back,
and the chunk files written for a real trace (read back and decoded)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.viewer.conftest import Traces
from tracer.trace.reader import open_trace
from viewer import player


def unpng(data: bytes) -> np.ndarray:
    """Decode the grey-scale PNGs png_grey writes (filter 0 rows)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            w, h = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            assert body[8:10] == b"\x08\x00"  # 8-bit grey
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, w + 1)
    assert not raw[:, 0].any()
    return raw[:, 1:]


def test_image_like_tensors_share_the_data_range_and_noise_like_ones_get_their_own_symmetric_one() -> None:
    fixed = {"eps": (-2.5, 2.5), "x_t": (-3.0, 3.0), "noise": (-0.0, 0.0)}
    assert player.panel_range("x_t", fixed) == (-1.0, 1.0)  # not the trace's own range: one scale for x_t, x0_pred, samples
    assert player.panel_range("x0_pred", fixed) == (-1.0, 1.0)
    assert player.panel_range("samples", fixed) == (-1.0, 1.0)
    assert player.panel_range("eps", fixed) == (-2.5, 2.5)
    assert player.panel_range("noise", fixed) == (-1.0, 1.0)  # all zeros (sigma = 0): a usable range


def test_encoding_saturates_beyond_the_range_and_keeps_gaps_apart() -> None:
    values = np.array([-5.0, -1.0, 0.0, 1.0, 7.0, np.nan])
    codes = player.encode(values, -1.0, 1.0)
    assert codes.tolist() == [0, 0, 127, 254, 254, player.GAP]
    assert np.allclose(player.decode(codes[1:4], -1.0, 1.0), [-1.0, 0.0 - 1 / 254, 1.0], atol=1 / 254)
    assert player.saturated_share(values, -1.0, 1.0) == pytest.approx(2 / 5)  # NaN not counted


def test_png_round_trips_and_chunks_cover_every_step() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (13, 7), dtype=np.uint8)
    assert (unpng(player.png_grey(pixels)) == pixels).all()
    assert player.chunks(0) == []
    assert player.chunks(60, 25) == [(0, 25), (25, 50), (50, 60)]
    assert sum(b - a for a, b in player.chunks(1000)) == 1000


def test_the_lookup_tables_run_from_end_to_end_with_white_gaps() -> None:
    grey, div = player.colour_lut("grey"), player.colour_lut("diverging")
    assert len(grey) == len(div) == 256
    assert grey[0] == [0, 0, 0] and grey[254] == [255, 255, 255] and grey[255] == [255, 255, 255]
    assert div[0][2] > div[0][0] and div[254][0] > div[254][2]  # blue below, red above
    assert abs(div[127][0] - div[127][2]) < 20  # near white in the middle


def test_the_value_sent_back_is_read_once_per_send() -> None:
    assert player.step_from_value(None, None) is None
    assert player.step_from_value({"step": 4, "seq": 1}, None) == (4, 1)
    assert player.step_from_value({"step": 4, "seq": 1}, 1) is None  # already seen
    assert player.step_from_value({"step": 5, "seq": 2}, 1) == (5, 2)
    assert player.step_from_value({"step": -1, "seq": 3}, 1) is None
    assert player.step_from_value({"step": True, "seq": 3}, 1) is None
    assert player.step_from_value({"step": "4", "seq": 3}, 1) is None


def test_a_frame_row_tiles_each_panel_on_its_range() -> None:
    layout = player.tile_layout(5, 2, 3)
    assert (layout["columns"], layout["rows"], layout["height"], layout["width"]) == (3, 2, 5, 11)
    panels = player.panels_for(["x_t", "eps"], {}, {"eps": (-2.0, 2.0)}, layout["width"])
    assert [p.x for p in panels] == [0, 12] and panels[1].scale == "diverging" and (panels[1].low, panels[1].high) == (-2.0, 2.0)
    x_t = np.full((5, 2, 3), 2.0, dtype=np.float32)  # beyond [-1, 1]: saturated
    row, shares = player.frame_row({"x_t": x_t, "eps": np.zeros((5, 2, 3), np.float32)}, panels, layout)
    assert row.shape == (5, 23) and shares == [1.0, 0.0]
    assert (row[:2, :3] == 254).all() and row[2, 0] == player.GAP  # the gap row between tile rows
    assert (row[:, 11] == player.GAP).all()  # between panels
    assert row[0, 12] == 127  # eps = 0 in the middle of its symmetric range
    assert (row[3:, 8:11] == player.GAP).all()  # the sixth tile of a 3x2 mosaic of 5 is empty
    final_row, _ = player.frame_row({"x_t": x_t}, panels, layout)  # the final frame: no eps
    assert (final_row[:, 12:] == player.GAP).all()


def test_write_frames_writes_every_chunk_and_the_final_one(tmp_path: Path) -> None:
    layout = player.tile_layout(2, 2, 2)
    panels = player.panels_for(["x_t"], {}, {}, layout["width"])

    def read_chunk(a: int, b: int) -> list[tuple[np.ndarray, list[float]]]:
        return [player.frame_row({"x_t": np.full((2, 2, 2), i / 100, np.float32)}, panels, layout) for i in range(a, b)]

    final = lambda: player.frame_row({"x_t": np.ones((2, 2, 2), np.float32)}, panels, layout)  # noqa: E731
    folder = player.write_frames("k", 60, read_chunk, final, root=tmp_path, background=False)
    assert (folder / "done").exists()
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["chunk_0.json", "chunk_0.png", "chunk_1.json", "chunk_1.png", "chunk_2.json", "chunk_2.png", "done",
                     "final.json", "final.png"]
    sheet = unpng((folder / "chunk_2.png").read_bytes())
    assert sheet.shape == (10 * layout["height"], layout["width"])  # steps 50..59 stacked
    assert sheet[0, 0] == player.encode(np.array(0.5), -1, 1)
    assert json.loads((folder / "chunk_2.json").read_text())["steps"] == 10
    assert player.write_frames("k", 60, read_chunk, final, root=tmp_path, background=False) == folder  # reused


def test_player_args_for_a_real_trace_write_frames_the_browser_can_decode(traces: Traces, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from viewer import loaders
    from viewer.panels.player import player_args

    monkeypatch.setattr(player, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(player.write_frames, "__defaults__", (tmp_path, True))
    handle = loaders.open_handle(traces.images_ddim)
    info = loaders.info(handle)
    args = player_args(handle, info, ["x_t", "eps"], [0, 3, 5], None, 2, background=False)
    assert args["rows"] == info.rows == 10 and args["step"] == 2 and args["final"] is True
    assert args["samples"] == [0, 3, 5] and args["labels"] == [-1, -1, -1]
    assert [p["name"] for p in args["panels"]] == ["x_t", "eps"] and args["panels"][0]["low"] == -1.0
    folder = tmp_path / args["frames"].rstrip("/").split("/")[-1]
    sheet = unpng((folder / "chunk_0.png").read_bytes())
    layout = args["layout"]
    with open_trace(traces.images_ddim) as trace:
        x_t = trace.tensor("x_t", 4)[[0, 3, 5]]
        samples = trace.final("samples")[[0, 3, 5]]
    tile = sheet[4 * layout["height"] : 4 * layout["height"] + 8, :8]  # step 4, sample 0, x_t
    assert (tile == player.encode(x_t[0, 0], -1.0, 1.0)).all()
    final = unpng((folder / "final.png").read_bytes())
    assert (final[:8, :8] == player.encode(samples[0, 0], -1.0, 1.0)).all()
    assert (final[:, args["panels"][1]["x"] :] == player.GAP).all()  # no eps after the last step
