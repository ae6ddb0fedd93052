"""The in-browser player's data: frames of sampling traces encoded once, in chunks of steps, and the timeline they share.

Pure builders (tested without Streamlit): colour ranges (image-like tensors on the data
range [-1, 1], saturating beyond it; noise-like ones on their own symmetric range), the
8-bit encoding (index 0..254 on the panel's range, 255 for the gaps of a mosaic), a
PNG writer (grey: one index a pixel, coloured in the page; RGB: each channel encoded
alike), 2-D point clouds as 16-bit coordinates on the trace's fixed extent, the
chunking of the steps, the share of saturated values, the timeline that lines traces
up by noise level in the measure the user picks (viewer/noise.py; Compare plays every trace at the same noise level), and how the
value the component sends back is read.

``write_frames`` writes two files per chunk (the payload, a PNG sheet or the points'
binary, then a JSON file: the steps' saturation shares) into a cache folder the browser
fetches from; the first chunk is written before the page is drawn, the others by a
background thread, so a long trace starts playing before every frame has arrived. That thread
stays out of the first frame's way: it starts once the page reports its first frame shown
(``frames_shown``, at most ``FIRST_PAINT_WAIT_S`` later), and yields to the app's script runs
(``script_running``): a chunk waits up to ``YIELD_S`` for every run to end. On 2 cores the
writer's CPU time (about 2 s for a 1,000-step trace) otherwise competes with the server's
script and the browser drawing the page.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from viewer.figures.images import DIVERGING, GREY, grid_columns, mosaic
from viewer.noise import nearest, noise_level
from viewer.symbols import is_noise_like

CHUNK_STEPS: Final = 25  # steps a chunk file holds
GAP: Final = 255  # the 8-bit index of a mosaic gap (drawn as the page background)
LEVELS: Final = 254  # value indices run 0..254
DATA_RANGE: Final = (-1.0, 1.0)
POINT_LEVELS: Final = 65534  # 16-bit point coordinates run 0..65534 over the extent; 65535 is a missing value
CACHE_ENTRIES: Final = 48  # frame sets kept on disk
FINAL: Final = "final"
YIELD_S: Final = 0.5  # the longest a background chunk waits for the app's script runs to end
FIRST_PAINT_WAIT_S: Final = 3.0  # the longest the background chunks wait for the page's first frame


@dataclass(frozen=True)
class PanelSpec:
    """One panel of the player: a tensor, its title, its colour range and scale, where it sits in a sheet row."""

    name: str
    title: str
    low: float
    high: float
    scale: str  # "grey" or "diverging"
    x: int  # left pixel of the panel in a sheet row

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "low": self.low, "high": self.high, "scale": self.scale, "x": self.x}


def is_noise(name: str) -> bool:
    """Drawn as noise (diverging, symmetric range): the schema's noise-like fields and the viewer's derived differences."""
    return is_noise_like(name)


def panel_range(name: str, fixed: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """[-1, 1] for image-like tensors (x_t, x0_pred, samples); the trace's fixed symmetric range for noise-like ones."""
    if is_noise(name):
        low, high = fixed.get(name, (-1.0, 1.0))
        q = max(abs(low), abs(high))
        q = q if math.isfinite(q) and q > 0 else 1.0
        return (-q, q)
    return DATA_RANGE


def encode(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Values onto 0..254 linearly over [low, high] (beyond it saturating), NaN (gaps) onto 255; uint8."""
    span = high - low if high > low else 1.0
    scaled = np.round(np.clip((np.asarray(values, dtype=np.float64) - low) / span, 0.0, 1.0) * LEVELS)
    return np.where(np.isnan(values), GAP, scaled).astype(np.uint8)


def decode(index: np.ndarray | int, low: float, high: float) -> np.ndarray:
    """The value at the centre of an index's bin (the browser's hover does the same)."""
    return low + np.asarray(index, dtype=np.float64) / LEVELS * (high - low)


def saturated_share(values: np.ndarray, low: float, high: float) -> float:
    """Share of finite values outside [low, high] (drawn at the end colours)."""
    finite = np.asarray(values)[np.isfinite(values)]
    return float(np.mean((finite < low) | (finite > high))) if finite.size else 0.0


def png_grey(pixels: np.ndarray) -> bytes:
    """An 8-bit PNG (no dependency beyond zlib) of a [H, W] uint8 array (grey) or a [H, W, 3] one (RGB)."""
    return png_sheet([pixels])


def png_sheet(blocks: Iterable[np.ndarray]) -> bytes:
    """``png_grey`` of blocks of rows stacked top to bottom ([H_k, W] or [H_k, W, 3] uint8, one width and kind), each
    compressed as it comes: the sheet is never held whole, only its compressed bytes."""
    compressor = zlib.compressobj(6)
    parts: list[bytes] = []
    height, width, colour_type = 0, -1, -1
    for pixels in blocks:
        if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
            raise ValueError(f"png_grey needs [H, W] or [H, W, 3] uint8, got {pixels.shape} {pixels.dtype}")
        kind = 0 if pixels.ndim == 2 else 2
        if width < 0:
            width, colour_type = pixels.shape[1], kind
        elif (pixels.shape[1], kind) != (width, colour_type):
            raise ValueError(f"png_sheet: a block of shape {pixels.shape} in a sheet {width} pixels wide of colour type {colour_type}")
        h = pixels.shape[0]
        rows = np.concatenate([np.zeros((h, 1), dtype=np.uint8), pixels.reshape(h, -1)], axis=1)  # filter 0 on every row
        parts.append(compressor.compress(rows.tobytes()))
        height += h
    if width < 0:
        raise ValueError("png_sheet needs at least one block of rows")
    parts.append(compressor.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def chunks(rows: int, size: int = CHUNK_STEPS) -> list[tuple[int, int]]:
    """[start, stop) of each chunk of ``rows`` steps."""
    return [(a, min(a + size, rows)) for a in range(0, max(rows, 0), size)]


def tile_layout(count: int, h: int, w: int) -> dict[str, int]:
    """The mosaic of ``count`` samples: columns, rows and its pixel size (1-pixel gaps)."""
    columns = max(1, min(grid_columns(count), count))
    rows = max(1, math.ceil(count / columns))
    return {"columns": columns, "rows": rows, "tile_h": h, "tile_w": w, "height": rows * h + rows - 1, "width": columns * w + columns - 1}


def panels_for(names: Sequence[str], titles: dict[str, str], fixed: dict[str, tuple[float, float]], width: int) -> list[PanelSpec]:
    """The panels side by side in a sheet row, each ``width`` pixels and a 1-pixel gap apart."""
    out = []
    for k, name in enumerate(names):
        low, high = panel_range(name, fixed)
        out.append(PanelSpec(name, titles.get(name, name), low, high, "diverging" if is_noise(name) else "grey", k * (width + 1)))
    return out


def frame_row(tensors: dict[str, np.ndarray], panels: Sequence[PanelSpec], layout: dict[str, int],
              channels: int = 1) -> tuple[np.ndarray, list[float]]:
    """One step as a sheet row: each panel's mosaic of [N, C, H, W] encoded on its range ([H, W] for one channel,
    [H, W, 3] for three, each channel alike); and each panel's saturated share.

    A panel missing from ``tensors`` (the final frame's noise panels) is all gap.
    """
    width = len(panels) * (layout["width"] + 1) - 1
    row = np.full((layout["height"], width) + ((3,) if channels == 3 else ()), GAP, dtype=np.uint8)
    shares = []
    for panel in panels:
        values = tensors.get(panel.name)
        if values is None:
            shares.append(0.0)
            continue
        images = values.reshape(values.shape[0], channels, layout["tile_h"], layout["tile_w"])
        tiles = mosaic(images, layout["columns"])
        row[:, panel.x : panel.x + layout["width"]] = encode(tiles[0] if channels == 1 else np.moveaxis(tiles, 0, -1), panel.low, panel.high)
        shares.append(saturated_share(values, panel.low, panel.high))
    return row, shares


Chunk = tuple[bytes, str, dict[str, Any]]  # a chunk file's payload, its extension, and its JSON document


def chunk_document(rows: Iterable[tuple[np.ndarray, list[float]]]) -> tuple[bytes, dict[str, Any]]:
    """A chunk: the steps' rows stacked into one PNG sheet, and its JSON (the steps' saturated shares).

    ``rows`` may be a generator: each step's row is compressed as it comes (``png_sheet``), so a chunk holds one step's
    row at a time, not the chunk's.
    """
    saturated: list[list[float]] = []

    def sheet_rows() -> Iterator[np.ndarray]:
        for row, shares in rows:
            saturated.append([round(s, 5) for s in shares])
            yield row

    png = png_sheet(sheet_rows())
    return png, {"steps": len(saturated), "saturated": saturated}


def image_chunk(rows: Iterable[tuple[np.ndarray, list[float]]]) -> Chunk:
    png, document = chunk_document(rows)
    return png, ".png", document


def quantize_points(points: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """[..., 2] coordinates onto 0..65534 over the extent (x0, x1, y0, y1), saturating beyond it; NaN onto 65535; uint16."""
    x0, x1, y0, y1 = bounds
    low, span = np.array([x0, y0]), np.array([max(x1 - x0, 1e-12), max(y1 - y0, 1e-12)])
    values = np.asarray(points, dtype=np.float64)
    scaled = np.round(np.clip((values - low) / span, 0.0, 1.0) * POINT_LEVELS)
    return np.where(np.isnan(values), POINT_LEVELS + 1, np.nan_to_num(scaled)).astype("<u2")


def dequantize_points(q: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """The inverse of ``quantize_points`` (the page does the same); 65535 back to NaN."""
    x0, x1, y0, y1 = bounds
    values = np.array([x0, y0]) + np.asarray(q, dtype=np.float64) / POINT_LEVELS * np.array([x1 - x0, y1 - y0])
    return np.where(q == POINT_LEVELS + 1, np.nan, values)


def points_chunk(steps: Sequence[np.ndarray], bounds: tuple[float, float, float, float]) -> Chunk:
    """A chunk of 2-D steps: each step's [S, N, 2] clouds (S series: x_t, then x0_pred if drawn) as little-endian uint16."""
    stacked = np.stack([np.asarray(s, dtype=np.float64) for s in steps]) if steps else np.zeros((0, 0, 0, 2))
    return quantize_points(stacked, bounds).tobytes(), ".bin", {"steps": len(steps), "shape": list(stacked.shape)}


def log_snr(alpha_bar: np.ndarray) -> np.ndarray:
    """log(alpha_bar / (1 - alpha_bar)): the default noise level lined up across traces (+inf where alpha_bar = 1, -inf where 0)."""
    return noise_level(alpha_bar, "log_snr")


def timeline(levels: Sequence[np.ndarray], noisy_high: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Line traces up by noise level: every distinct level any trace visits, noisiest first, and each trace's step nearest to it.

    ``levels[k]`` is trace k's noise level per step in one measure (viewer/noise.py): log SNR by default, where lower is
    noisier; ``noisy_high`` for a measure where higher is noisier (sigma, flow time). Returns (steps [P, K] int,
    level [P]): at position p trace k shows step ``steps[p, k]``. A trace with no steps maps to -1. Levels closer than
    1e-9 count as one.
    """
    sign = -1.0 if noisy_high else 1.0
    finite = [sign * np.asarray(v, dtype=np.float64) for v in levels]
    every = np.concatenate([v for v in finite if v.size]) if any(v.size for v in finite) else np.zeros(0)
    every = np.sort(every[~np.isnan(every)])
    if every.size:
        with np.errstate(invalid="ignore"):
            keep = np.concatenate([[True], np.diff(every) > 1e-9])  # inf - inf is NaN: a repeat
        every = every[keep]
    steps = np.full((every.size, len(finite)), -1, dtype=np.int64)
    for k, v in enumerate(finite):
        if v.size:
            steps[:, k] = nearest(every, v)
    return steps, sign * every


def frames_key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def colour_lut(scale: str) -> list[list[int]]:
    """256 RGB triples: index 0..254 along the panel's colour scale; 255 (gaps) is white."""
    stops = GREY if scale == "grey" else DIVERGING
    positions = [float(p) for p, _ in stops]
    rgb = [[int(float(v)) for v in c[c.index("(") + 1 : c.index(")")].split(",")] if c.startswith("rgb") else
           [int(c[i : i + 2], 16) for i in (1, 3, 5)] for _, c in stops]
    out = []
    for k in range(LEVELS + 1):
        f = k / LEVELS
        j = max(0, min(len(positions) - 2, int(np.searchsorted(positions, f, side="right")) - 1))
        a, b = positions[j], positions[j + 1]
        u = 0.0 if b <= a else min(max((f - a) / (b - a), 0.0), 1.0)
        out.append([round(rgb[j][m] + u * (rgb[j + 1][m] - rgb[j][m])) for m in range(3)])
    out.append([255, 255, 255])
    return out


def step_from_value(value: Any, last_seq: int | None) -> tuple[int, int] | None:
    """The step the player sent back, as (step, seq), if it is new (seq not seen yet) and well formed; else None."""
    if not isinstance(value, dict):
        return None
    step, seq = value.get("step"), value.get("seq")
    if not isinstance(step, int) or not isinstance(seq, int) or isinstance(step, bool) or step < 0:
        return None
    if last_seq is not None and seq == last_seq:
        return None
    return step, seq


# -- the cache folder the browser fetches chunk files from ------------------------------------------

CACHE_DIR: Final = Path(os.environ.get("NOISESCOPE_FRAMES_DIR") or Path(tempfile.gettempdir()) / f"noisescope-frames-{os.getuid()}")
_RUNNING: dict[str, threading.Thread] = {}
_LOCK = threading.RLock()
_SCRIPTS = [0]  # the app's script runs in progress
_IDLE = threading.Condition()
_SHOWN: dict[str, threading.Event] = {}  # set once a page has shown the first frame of the frames under a key


def frames_shown(key: str) -> None:
    """A page has shown its first frame from the frames under ``key``: the background writer may start."""
    with _LOCK:
        event = _SHOWN.get(key)
    if event is not None:
        event.set()


@contextlib.contextmanager
def script_running() -> Iterator[None]:
    """Held by the app around each script run: background chunk writers wait (``YIELD_S`` at most a chunk) while any runs."""
    with _IDLE:
        _SCRIPTS[0] += 1
    try:
        yield
    finally:
        with _IDLE:
            _SCRIPTS[0] -= 1
            _IDLE.notify_all()


def _yield_to_scripts() -> None:
    with _IDLE:
        _IDLE.wait_for(lambda: _SCRIPTS[0] == 0, timeout=YIELD_S)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(f".tmp{threading.get_ident()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # the browser never reads half a file


def _write_chunk(folder: Path, name: str, chunk: Chunk) -> None:
    """``name.png`` (or ``.bin``) then ``name.json``: a JSON file present means its payload is there too."""
    payload, ext, document = chunk
    _write(folder / f"{name}{ext}", payload)
    _write(folder / f"{name}.json", json.dumps(document, separators=(",", ":")).encode())


def _prune(root: Path, keep: str) -> None:
    entries = sorted((p for p in root.iterdir() if p.is_dir() and p.name != keep), key=lambda p: p.stat().st_mtime)
    for old in entries[: max(0, len(entries) - CACHE_ENTRIES + 1)]:
        shutil.rmtree(old, ignore_errors=True)


def chunks_needed(step: int, rows: int, trails: bool = False) -> list[int]:
    """The chunks the page needs to draw ``step`` (``rows``: the final samples, chunk number ``len(chunks(rows))``):
    the step's own, or with ``trails`` (a 2-D trajectory so far) every chunk up to it. The page's ``needed`` does the same."""
    count = len(chunks(rows))
    own = count if step >= rows else max(step, 0) // CHUNK_STEPS
    return list(range(own + 1)) if trails else [own]


def write_frames(key: str, rows: int, read_chunk: Callable[[int, int], Chunk],
                 final: Callable[[], Chunk] | None, root: Path = CACHE_DIR, background: bool = True,
                 first: Sequence[int] = (0,)) -> Path:
    """Write ``chunk_<k>.png`` (or ``.bin``) and ``.json`` for each chunk of ``rows`` steps (and ``final.*``) under ``root/key``;
    returns the folder. ``read_chunk(a, b)`` makes the chunk of steps [a, b).

    The chunks ``first`` (those of the step the page shows first, ``chunks_needed``; ``len(chunks(rows))`` is
    the final one) are written now; the rest by one background thread per key (``background`` False writes all
    now). A folder already complete (``done`` present) is reused.
    """
    folder = root / key
    if (folder / "done").exists():
        with contextlib.suppress(OSError):
            os.utime(folder)  # in use: the newest, so pruning (oldest first) keeps it while a page may fetch from it
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    bounds = chunks(rows)

    def name(k: int) -> str:  # chunk k; k = len(bounds): the final samples
        return FINAL if k == len(bounds) else f"chunk_{k}"

    def pending(k: int) -> bool:
        return (k < len(bounds) or final is not None) and not (folder / f"{name(k)}.json").exists()

    def write(k: int) -> None:
        if pending(k):
            _write_chunk(folder, name(k), final() if k == len(bounds) and final is not None else read_chunk(*bounds[k]))

    def rest() -> None:
        try:
            shown.wait(FIRST_PAINT_WAIT_S)
            for k in range(len(bounds) + 1):
                if pending(k):
                    _yield_to_scripts()
                    write(k)
            (folder / "done").write_text("")
        finally:
            with _LOCK:
                _RUNNING.pop(key, None)
                _SHOWN.pop(key, None)

    for k in first:
        if 0 <= k <= len(bounds):
            write(k)
    shown = threading.Event()
    with _LOCK:
        if key in _RUNNING:
            return folder
        if not background:
            shown.set()
            rest()
            return folder
        thread = threading.Thread(target=rest, name=f"noisescope-frames-{key}", daemon=True)
        _RUNNING[key] = thread
        _SHOWN[key] = shown
    try:
        _prune(root, key)
    except OSError:
        pass
    thread.start()
    return folder
