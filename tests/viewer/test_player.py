"""The browser player's Python side: colour ranges, the 8-bit encoding, the PNG (grey and RGB), 2-D points on 16 bits,
the chunking, the timeline that lines traces up by noise level, the value it sends back, and the chunk files written for
real traces (read back and decoded)."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.viewer.conftest import Traces
from tracer.trace.reader import open_trace
from viewer import player


def unpng(data: bytes) -> np.ndarray:
    """Decode the PNGs png_grey writes (8-bit grey or RGB, filter 0 rows): [H, W] or [H, W, 3]."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h, channels = 8, b"", 0, 0, 1
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            w, h = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            assert body[8] == 8 and body[9] in (0, 2)  # 8-bit grey or RGB
            channels = 1 if body[9] == 0 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, w * channels + 1)
    assert not raw[:, 0].any()
    return raw[:, 1:].reshape(h, w) if channels == 1 else raw[:, 1:].reshape(h, w, 3)


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
    rgb = np.random.default_rng(1).integers(0, 256, (5, 9, 3), dtype=np.uint8)
    assert (unpng(player.png_grey(rgb)) == rgb).all()
    with pytest.raises(ValueError, match="uint8"):
        player.png_grey(np.zeros((4, 4, 2), dtype=np.uint8))
    assert player.chunks(0) == []
    assert player.chunks(60, 25) == [(0, 25), (25, 50), (50, 60)]
    assert sum(b - a for a, b in player.chunks(1000)) == 1000


def test_a_sheet_compressed_block_by_block_is_the_png_of_the_whole_sheet() -> None:
    rng = np.random.default_rng(2)
    for shape, splits in (((60, 11), 7), ((40, 6, 3), 5)):
        sheet = rng.integers(0, 256, shape, dtype=np.uint8)
        sheet[: shape[0] // 2] //= 9  # some of it compressible
        blocks = np.array_split(sheet, splits)
        assert player.png_sheet(iter(blocks)) == player.png_grey(sheet)  # the same bytes: one deflate stream either way
        rows = [(block, [0.25 * k]) for k, block in enumerate(blocks)]
        png, document = player.chunk_document(iter(rows))
        assert (unpng(png) == sheet).all() and document == {"steps": splits, "saturated": [[0.25 * k] for k in range(splits)]}
    with pytest.raises(ValueError, match="wide"):
        player.png_sheet([np.zeros((2, 4), np.uint8), np.zeros((2, 5), np.uint8)])
    with pytest.raises(ValueError, match="at least one"):
        player.png_sheet([])


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


def test_a_three_channel_frame_row_encodes_each_channel_on_the_panel_range() -> None:
    layout = player.tile_layout(2, 2, 2)  # two 2x2 tiles side by side: width 5
    panels = player.panels_for(["x_t"], {}, {}, layout["width"])
    images = np.zeros((2, 3, 2, 2), np.float32)
    images[:, 0], images[:, 1], images[:, 2] = -1.0, 0.0, 3.0  # red at the bottom, green in the middle, blue saturated
    row, shares = player.frame_row({"x_t": images}, panels, layout, channels=3)
    assert row.shape == (2, 5, 3)
    assert row[0, 0].tolist() == [0, 127, 254] and row[1, 4].tolist() == [0, 127, 254]
    assert row[0, 2].tolist() == [player.GAP] * 3  # the gap column between the two tiles
    assert shares == [pytest.approx(1 / 3)]


def test_points_survive_16_bits_on_their_extent_and_missing_ones_stay_missing() -> None:
    bounds = (-2.0, 3.0, -1.0, 1.0)
    points = np.array([[[-2.0, -1.0], [3.0, 1.0], [0.123456, 0.5], [9.0, -9.0], [np.nan, np.nan]]])
    q = player.quantize_points(points, bounds)
    assert q.dtype == np.dtype("<u2") and q[0, 0].tolist() == [0, 0] and q[0, 1].tolist() == [player.POINT_LEVELS] * 2
    back = player.dequantize_points(q, bounds)
    assert np.allclose(back[0, :3], points[0, :3], atol=5.0 / player.POINT_LEVELS)  # one step of the 16-bit grid
    assert back[0, 3].tolist() == [3.0, -1.0]  # beyond the extent: saturated at its edge
    assert np.isnan(back[0, 4]).all()
    payload, ext, document = player.points_chunk([points, points], bounds)
    assert ext == ".bin" and document == {"steps": 2, "shape": [2, 1, 5, 2]} and len(payload) == 2 * 5 * 2 * 2


def test_the_timeline_visits_every_noise_level_once_and_each_trace_its_nearest_step() -> None:
    fine = np.linspace(-4.0, 4.0, 9)  # 9 log-SNR levels, noisiest first
    coarse = fine[::4]  # levels 0, 4, 8: a subset (DDIM's t among DDPM's)
    steps, level = player.timeline([fine, coarse])
    assert np.array_equal(level, fine)  # the union, each level once, noisiest first
    assert steps[:, 0].tolist() == list(range(9))  # the fine trace: every step in turn
    assert steps[:, 1].tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]  # the coarse one: its nearest (ties to the earlier step)
    assert player.log_snr(np.array([0.0, 1.0])).tolist() == [-np.inf, np.inf]
    steps, level = player.timeline([player.log_snr(np.array([0.0, 0.5])), player.log_snr(np.array([0.0, 0.4, 0.9])), np.zeros(0)])
    assert level[0] == -np.inf and steps[0].tolist() == [0, 0, -1]  # zero terminal SNR on both: one level, and no steps: -1


def test_write_frames_writes_every_chunk_and_the_final_one(tmp_path: Path) -> None:
    layout = player.tile_layout(2, 2, 2)
    panels = player.panels_for(["x_t"], {}, {}, layout["width"])

    def read_chunk(a: int, b: int) -> player.Chunk:
        return player.image_chunk([player.frame_row({"x_t": np.full((2, 2, 2), i / 100, np.float32)}, panels, layout) for i in range(a, b)])

    final = lambda: player.image_chunk([player.frame_row({"x_t": np.ones((2, 2, 2), np.float32)}, panels, layout)])  # noqa: E731
    folder = player.write_frames("k", 60, read_chunk, final, root=tmp_path, background=False)
    assert (folder / "done").exists()
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["chunk_0.json", "chunk_0.png", "chunk_1.json", "chunk_1.png", "chunk_2.json", "chunk_2.png", "done",
                     "final.json", "final.png"]
    sheet = unpng((folder / "chunk_2.png").read_bytes())
    assert sheet.shape == (10 * layout["height"], layout["width"])  # steps 50..59 stacked
    assert sheet[0, 0] == player.encode(np.array(0.5), -1, 1)
    assert json.loads((folder / "chunk_2.json").read_text())["steps"] == 10
    os.utime(folder, (1, 1))  # as if written long ago
    assert player.write_frames("k", 60, read_chunk, final, root=tmp_path, background=False) == folder  # reused
    assert folder.stat().st_mtime > 1  # and marked as in use: pruning, oldest first, keeps it


def _tiny_chunks() -> tuple[Any, Any]:
    layout = player.tile_layout(1, 2, 2)
    panels = player.panels_for(["x_t"], {}, {}, layout["width"])
    row = lambda: player.frame_row({"x_t": np.zeros((1, 2, 2), np.float32)}, panels, layout)  # noqa: E731
    return (lambda a, b: player.image_chunk([row() for _ in range(a, b)])), (lambda: player.image_chunk([row()]))


def test_the_background_writer_waits_while_a_script_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_chunk, final = _tiny_chunks()
    monkeypatch.setattr(player, "YIELD_S", 60.0)
    monkeypatch.setattr(player, "FIRST_PAINT_WAIT_S", 0.0)
    with player.script_running():
        folder = player.write_frames("held", 60, read_chunk, final, root=tmp_path)
        thread = player._RUNNING["held"]
        thread.join(0.3)
        assert (folder / "chunk_0.json").exists()  # the first chunk is written before the page is drawn
        assert thread.is_alive() and not (folder / "chunk_1.json").exists()  # the rest waits for the run to end
    thread.join(30)
    assert not thread.is_alive() and (folder / "done").exists() and (folder / "final.json").exists()


def test_the_background_writer_starts_once_the_page_has_shown_its_first_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_chunk, final = _tiny_chunks()
    monkeypatch.setattr(player, "FIRST_PAINT_WAIT_S", 60.0)
    folder = player.write_frames("shown", 60, read_chunk, final, root=tmp_path)
    thread = player._RUNNING["shown"]
    thread.join(0.3)
    assert (folder / "chunk_0.json").exists() and not (folder / "chunk_1.json").exists()
    player.frames_shown("other")  # another page's frames: still waiting
    thread.join(0.1)
    assert thread.is_alive()
    player.frames_shown("shown")
    thread.join(30)
    assert not thread.is_alive() and (folder / "done").exists()
    player.frames_shown("shown")  # once done: nothing to start


def test_the_chunks_of_the_step_shown_first_are_written_before_the_page_is_drawn(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert player.chunks_needed(0, 60) == [0] and player.chunks_needed(30, 60) == [1] and player.chunks_needed(59, 60) == [2]
    assert player.chunks_needed(60, 60) == [3]  # the final samples: the chunk after the last
    assert player.chunks_needed(30, 60, trails=True) == [0, 1] and player.chunks_needed(60, 60, trails=True) == [0, 1, 2, 3]
    read_chunk, final = _tiny_chunks()
    monkeypatch.setattr(player, "FIRST_PAINT_WAIT_S", 60.0)  # the background writer waits for the page
    deep = player.write_frames("deep", 60, read_chunk, final, root=tmp_path, first=player.chunks_needed(55, 60))
    end = player.write_frames("end", 60, read_chunk, final, root=tmp_path, first=player.chunks_needed(60, 60))
    assert sorted(p.name for p in deep.iterdir()) == ["chunk_2.json", "chunk_2.png"]
    assert sorted(p.name for p in end.iterdir()) == ["final.json", "final.png"]
    for key in ("deep", "end"):
        thread = player._RUNNING[key]
        player.frames_shown(key)
        thread.join(30)
    assert len(list(deep.iterdir())) == len(list(end.iterdir())) == 9  # 3 chunks and the final one, 2 files each, and done


def test_the_background_writer_waits_for_a_script_at_most_yield_s_a_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_chunk, final = _tiny_chunks()
    monkeypatch.setattr(player, "YIELD_S", 0.01)
    monkeypatch.setattr(player, "FIRST_PAINT_WAIT_S", 0.01)
    with player.script_running():  # neither a script that never ends nor a page that never paints stops the frames
        folder = player.write_frames("capped", 60, read_chunk, final, root=tmp_path)
        thread = player._RUNNING.get("capped")  # None: already done
        if thread is not None:
            thread.join(30)
        assert (folder / "done").exists()


def test_an_image_track_of_a_real_trace_writes_frames_the_browser_can_decode(traces: Traces, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from viewer import loaders
    from viewer.panels.player import image_track, single_spec

    monkeypatch.setattr(player.write_frames, "__defaults__", (tmp_path, True, (0,)))
    handle = loaders.open_handle(traces.images_ddim)
    info = loaders.info(handle)
    track = image_track(handle, info, ["x_t", "eps", "noise"], [0, 3, 5], None, background=False)
    spec = single_spec(track, info, 2)
    assert track["rows"] == info.rows == 10 and track["final"] is True and spec["step"] == 2
    assert spec["positions"] == 11 and spec["labels"][-1] == "Final sample (after step 10 of 10)"
    assert spec["labels"][0].startswith("Step 1 of 10 · t = ") and "the clean end x₀ (t_prev = −1)" in spec["labels"][9]
    assert len(spec["cursor"]["x"]) == 11 and spec["cursor"]["x"][-1] == spec["cursor"]["x"][-2]
    assert track["samples"] == [0, 3, 5] and track["labels"] == [-1, -1, -1]
    assert [p["name"] for p in track["panels"]] == ["x_t", "eps", "noise"] and track["panels"][0]["low"] == -1.0
    with open_trace(traces.images_ddim) as trace:
        sigma = np.asarray(trace.scalars()["sigma"])
        x_t = trace.tensor("x_t", 4)[[0, 3, 5]]
        samples = trace.final("samples")[[0, 3, 5]]
    assert track["muted"] == {"noise": np.flatnonzero(sigma == 0).tolist()}  # z unused where sigma = 0
    folder = tmp_path / track["frames"].rstrip("/").split("/")[-1]
    sheet = unpng((folder / "chunk_0.png").read_bytes())
    layout = track["layout"]
    tile = sheet[4 * layout["height"] : 4 * layout["height"] + 8, :8]  # step 4, sample 0, x_t
    assert (tile == player.encode(x_t[0, 0], -1.0, 1.0)).all()
    final = unpng((folder / "final.png").read_bytes())
    assert (final[:8, :8] == player.encode(samples[0, 0], -1.0, 1.0)).all()
    assert (final[:, track["panels"][1]["x"] :] == player.GAP).all()  # no eps after the last step


def test_a_points_track_writes_each_step_and_the_final_samples(traces: Traces, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from viewer import loaders
    from viewer.panels.player import points_track

    monkeypatch.setattr(player.write_frames, "__defaults__", (tmp_path, True, (0,)))
    handle = loaders.open_handle(traces.points_ddpm)
    info = loaders.info(handle)
    track = points_track(handle, info, ["x_t", "x0_pred"], None, background=False)
    assert track["kind"] == "points" and track["series"] == ["x_t", "x0_pred"] and track["n"] == info.batch
    folder = tmp_path / track["frames"].rstrip("/").split("/")[-1]
    bounds = tuple(track["bounds"])
    with open_trace(traces.points_ddpm) as trace:
        x_t, x0 = trace.tensor("x_t", 3), trace.tensor("x0_pred", 3)
        samples = trace.final("samples")
    raw = np.frombuffer((folder / "chunk_0.bin").read_bytes(), dtype="<u2").reshape(-1, 2, info.batch, 2)
    span = max(bounds[1] - bounds[0], bounds[3] - bounds[2])
    assert np.allclose(player.dequantize_points(raw[3, 0], bounds), x_t, atol=span / player.POINT_LEVELS)
    assert np.allclose(player.dequantize_points(raw[3, 1], bounds), x0, atol=span / player.POINT_LEVELS)
    final = np.frombuffer((folder / "final.bin").read_bytes(), dtype="<u2").reshape(2, info.batch, 2)
    assert np.allclose(player.dequantize_points(final[0], bounds), np.clip(samples, bounds[::2], bounds[1::2]), atol=span / player.POINT_LEVELS)
    assert np.isnan(player.dequantize_points(final[1], bounds)).all()  # no x0_pred after the last step


def test_compare_lines_traces_up_by_noise_level_and_ends_on_their_final_samples() -> None:
    from viewer.panels.player import compare_spec, compare_steps

    fine, coarse = np.array([-4.0, -1.0, -0.5, 1.0, 4.0]), np.array([-4.0, 4.0])
    steps, level = compare_steps([fine, coarse], [True, False])
    assert steps[-1].tolist() == [5, 1]  # the first trace's final samples (step = rows), the second's last step
    assert steps[:-1, 1].tolist() == [0, 0, 0, 1, 1] and level[-1] == np.inf
    track = {"kind": "images", "panels": [{}], "final": True}
    spec = compare_spec([track, dict(track, final=False)], ["A", "B"], [np.arange(50, 0, -10), np.array([50, 10])], steps, level, 2, "box")
    assert spec["positions"] == 6 and spec["step"] == 2 and spec["tracks"][1]["steps"] == steps[:, 1].tolist()
    assert spec["labels"][1].endswith("A step 2 (t = 40) · B step 1 (t = 50)")
    assert spec["labels"][-1] == "Final samples · A final sample · B step 2 (t = 10)"
    assert spec["cursor"] == {"container": "box", "x": [50.0, 40.0, 30.0, 20.0, 10.0, 10.0]}
