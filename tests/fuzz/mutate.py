"""Mutants: damaged copies of the base traces, each named by (seed, index) and made the same way every run.

``plan(seed, index, bases)`` picks a mutation kind, a base and the mutation's parameters from a
random generator seeded with (seed, index) and returns a ``Mutant``; ``make(mutant, bases, out)``
writes the damaged file. The first ``len(BASE_NAMES)`` indices are controls: unmodified copies of
each base, held to a stricter oracle (tests/fuzz/oracle.py).

Kinds (KINDS, with their weights):

- ``bitflip``: 1-16 random bits flipped anywhere in the file;
- ``bitflip_meta``: the same, aimed at the superblock and root header (first 2 KiB) or at bytes
  outside every dataset's data (object headers, B-trees, heaps);
- ``truncate``: the file cut at a random length, often tiny (0, 8, 46, 48, 96 bytes: the
  superblock alone) or just short of the end;
- ``zero_page``: one to three 4 KiB-aligned pages zeroed;
- ``move_block``: a block of 16 B - 4 KiB copied over another offset;
- ``progress_bytes``: progress/<series> or status overwritten in place (-1, past the end, 2**62,
  garbage), which works on killed and live bases too (their SWMR flag keeps h5py from opening
  them for writing);
- ``data_value``: one committed value that an equation or a structural check covers (x_t, eps,
  x0_pred, x0_pred_raw, eps_cond, model_output and its branches, noise where sigma is not 0 (but the last step's), samples, the worked examples' x_t and
  eps, t, t_prev, alpha_bar_t, alpha_bar_prev)
  made wrong in place: its top exponent bit flipped, or NaN, or inf. ``check`` must not pass it
  (tests/fuzz/runner.py, the "verdict" rule);
- ``struct_delete``, ``struct_resize``, ``struct_retype``: through h5py, a dataset or group deleted,
  a series resized (shorter, longer, empty), a dataset replaced by one of another type or rank
  (steps/t as float, x_t of rank 2, status as an int, progress/steps = -1 or past the length, a
  tensor declared 4 TiB a row, the same values gzip-compressed, ...);
- ``bad_attr``: root attributes set to what no writer writes (schema_version inf, nan, -1, 2**70, a
  string; format wrong; kind unknown; config not JSON, a JSON list, 100 000 levels of nesting;
  planned not JSON; non-UTF-8 bytes);
- ``external``: external links, soft links (dangling, cyclic) and datasets with external storage
  pointing outside the file (/etc/passwd, /dev/zero, a missing file, another trace);
- ``virtual``: a dataset replaced by a virtual dataset mapping another file, a missing file or itself;
- ``not_trace``: files that are not traces (empty, random bytes, an HDF5 signature and garbage,
  plain HDF5 files with random groups, the format attribute and nothing else, a trace behind a
  512-byte user block or after junk, gzip of a trace).

Structural kinds need a closed base; a killed or live base is swapped for a closed one.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tests.fuzz.bases import BASE_NAMES, Base

KINDS: dict[str, int] = {
    "bitflip": 14,
    "bitflip_meta": 14,
    "truncate": 10,
    "zero_page": 8,
    "move_block": 8,
    "progress_bytes": 6,
    "data_value": 10,
    "struct_delete": 7,
    "struct_resize": 6,
    "struct_retype": 10,
    "bad_attr": 12,
    "external": 6,
    "virtual": 4,
    "not_trace": 5,
}
STRUCTURAL = ("struct_delete", "struct_resize", "struct_retype", "bad_attr", "external", "virtual")
OPEN_BASES = ("killed", "live")  # written by a writer that never closed them: SWMR-flagged


@dataclass(frozen=True)
class Mutant:
    """One damaged file: what was done (``kind``, ``detail``) to which base, and how to make it again."""

    seed: int
    index: int
    kind: str
    base: str
    detail: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"#{self.index} {self.kind} on {self.base}: {self.detail}"


def _rng(seed: int, index: int) -> random.Random:
    return random.Random(f"noisescope-fuzz:{seed}:{index}")


def plan(seed: int, index: int, bases: dict[str, Base]) -> Mutant:
    """The mutant ``index`` of run ``seed``: a pure function of both (and of the bases' sizes)."""
    if index < len(BASE_NAMES):
        name = BASE_NAMES[index]
        return Mutant(seed, index, "none", name, "unmodified copy (control)")
    rng = _rng(seed, index)
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    base_name = rng.choice(BASE_NAMES)
    if kind in STRUCTURAL and base_name in OPEN_BASES:
        base_name = rng.choice([b for b in BASE_NAMES if b not in OPEN_BASES])
    base = bases[base_name]
    planner = _PLANNERS[kind]
    detail, params = planner(rng, base, bases)
    return Mutant(seed, index, kind, base_name, detail, params)


# -- planning: pick parameters (pure, from rng and the base's description) ------------------------------


def _plan_bitflip(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    n = rng.choice([1, 1, 2, 4, 8, 16])
    flips = [(rng.randrange(base.size), rng.randrange(8)) for _ in range(n)]
    return f"{n} bit(s) flipped at {_offsets(flips)}", {"flips": flips}


def _outside_data(base: Base) -> list[tuple[int, int]]:
    """[start, end) intervals of the file that hold no dataset's data: metadata."""
    gaps, pos = [], 0
    for offset, length in base.data_ranges:
        if offset > pos:
            gaps.append((pos, offset))
        pos = max(pos, offset + length)
    if pos < base.size:
        gaps.append((pos, base.size))
    return gaps


def _plan_bitflip_meta(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    n = rng.choice([1, 1, 2, 3, 8])
    if rng.random() < 0.4:
        where, flips = "in the first 2 KiB", [(rng.randrange(min(2048, base.size)), rng.randrange(8)) for _ in range(n)]
    else:
        gaps = _outside_data(base)
        weights = [end - start for start, end in gaps]
        flips = []
        for _flip in range(n):
            start, end = rng.choices(gaps, weights=weights)[0]
            flips.append((rng.randrange(start, end), rng.randrange(8)))
        where = "outside dataset data"
    return f"{n} bit(s) flipped {where} at {_offsets(flips)}", {"flips": flips}


def _offsets(flips: list[tuple[int, int]]) -> str:
    shown = ", ".join(f"{o}.{b}" for o, b in flips[:4])
    return shown + (", ..." if len(flips) > 4 else "")


def _plan_truncate(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    r = rng.random()
    if r < 0.3:
        length = rng.choice([0, 1, 8, 46, 48, 96, 512, 2048])
    elif r < 0.5:
        length = base.size - rng.randint(1, 64)
    else:
        length = rng.randrange(base.size)
    return f"truncated to {length} of {base.size} bytes", {"length": length}


def _plan_zero_page(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    pages = max(1, -(-base.size // 4096))
    chosen = sorted(rng.sample(range(pages), min(pages, rng.choice([1, 1, 2, 3]))))
    return f"4 KiB page(s) {chosen} zeroed", {"pages": chosen}


def _plan_move_block(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    length = min(base.size // 2, rng.choice([16, 64, 256, 512, 1024, 4096]))
    src, dst = rng.randrange(base.size - length), rng.randrange(base.size - length)
    return f"{length} bytes from {src} copied over {dst}", {"src": src, "dst": dst, "length": length}


PROGRESS_VALUES = (-1, -(2**63), 2**62, 11, 1000, 0, 3)


def _plan_progress_bytes(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    targets = [name for name in base.offsets if name.startswith("progress/") or name == "status"]
    target = rng.choice(targets)
    if target == "status":
        value = rng.choice([b"complete", b"failed", b"\xff\xfe garbage", b"", b"running\x00junk", b"COMPLETE"])
        return f"status bytes set to {value!r}", {"target": target, "bytes": list(value.ljust(16, b"\x00")[:16])}
    number = rng.choice(PROGRESS_VALUES)
    return f"{target} set to {number} in place", {"target": target, "bytes": list(struct.pack("<q", number))}


# Values every check run covers, per base kind: changing one must make check fail (or refuse).
CHECKED_FIELDS = ("steps/x_t", "steps/eps", "steps/x0_pred", "steps/eps_cond", "steps/t", "steps/t_prev",
                  "steps/alpha_bar_t", "steps/alpha_bar_prev", "steps/noise", "steps/x0_pred_raw", "samples",
                  "steps/model_output", "steps/model_output_cond", "steps/model_output_uncond", "steps/model_output_cfg",
                  "examples/x_t", "examples/eps")
_SCALARS = ("steps/t", "steps/t_prev", "steps/alpha_bar_t", "steps/alpha_bar_prev")


def _checked_rows(base: Base, name: str) -> int:
    """How many rows of ``name`` hold values a check covers: the committed ones; for the noise, the steps
    whose sigma is not 0 but the last (an equation reads only sigma z, and a killed trace lacks the next
    x_t to check the last step by)."""
    if "/" not in name:  # a final dataset (samples): one block, checked once written
        return 1 if base.committed.get("final") else 0
    if name.endswith("/noise"):
        return len(base.noise_rows)
    return base.committed.get(name.split("/")[0], 0)


def checked_fields(base: Base) -> list[str]:
    return [name for name in CHECKED_FIELDS if name in base.chunks and _checked_rows(base, name) > 0]


def _plan_data_value(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    name = rng.choice(checked_fields(base))
    rows, size = _checked_rows(base, name), base.itemsizes[name]
    if name in _SCALARS:  # one chunk holds every row, a value a row
        offset = base.chunks[name][0][1]
        row, element = rng.randrange(rows), 0
        byte = offset + row * size
    else:  # a chunk a row (the final datasets: one chunk)
        allowed = base.noise_rows if name.endswith("/noise") else range(rows)
        row, offset, length = rng.choice([c for c in base.chunks[name] if c[0] in allowed])
        element = rng.randrange(length // size)
        byte = offset + element * size
    how = rng.choice(["exponent", "exponent", "nan", "inf"]) if name not in ("steps/t", "steps/t_prev") else "int"
    return f"{name} row {row} element {element}: {how}", {"offset": byte, "size": size, "how": how, "field": name, "row": row}


_NAN = {2: b"\x00\x7e", 4: b"\x00\x00\xc0\x7f", 8: b"\x00\x00\x00\x00\x00\x00\xf8\x7f"}
_INF = {2: b"\x00\x7c", 4: b"\x00\x00\x80\x7f", 8: b"\x00\x00\x00\x00\x00\x00\xf0\x7f"}


def _data_value(data: bytearray, p: dict[str, Any]) -> None:
    offset, size, how = p["offset"], p["size"], p["how"]
    if how == "exponent":
        data[offset + size - 1] ^= 0x40  # the top exponent bit (little-endian): x2^128 or so, or tiny
    elif how == "nan":
        data[offset:offset + size] = _NAN[size]
    elif how == "inf":
        data[offset:offset + size] = _INF[size]
    else:  # an int64 timestep moved by 3
        value = int.from_bytes(data[offset:offset + size], "little", signed=True)
        data[offset:offset + size] = (value + 3).to_bytes(size, "little", signed=True)


_DELETABLE = ("status", "progress", "progress/steps", "progress/final", "progress/train", "schedule", "schedule/beta",
              "steps", "steps/x_t", "steps/t", "steps/t_prev", "steps/eps", "steps/alpha_bar_t", "samples", "labels",
              "train", "train/loss", "train/step", "snapshots", "examples", "snapshot_x_T", "snapshot_labels")


def _plan_struct_delete(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    present = [p for p in _DELETABLE if p in base.datasets or p in base.groups]
    target = rng.choice(present) if rng.random() < 0.7 else rng.choice(base.datasets)
    return f"{target} deleted", {"target": target}


def _series_datasets(base: Base) -> list[str]:
    return [d for d in base.datasets if d.split("/")[0] in ("steps", "train", "snapshots", "examples")]


def _plan_struct_resize(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    target = rng.choice(_series_datasets(base))
    how = rng.choice(["empty", "one", "minus_one", "plus_five", "double", "all_series_short"])
    return f"{target} resized ({how})", {"target": target, "how": how}


# (target, replacement name): each replacement is one function in _RETYPES below.
_RETYPE_CHOICES: tuple[tuple[str, str], ...] = (
    ("steps/t", "as_float"), ("steps/t", "as_string"), ("steps/t", "scalar"), ("steps/t_prev", "as_float"),
    ("steps/x_t", "rank_minus"), ("steps/x_t", "rank_plus"), ("steps/x_t", "other_batch"), ("steps/x_t", "as_int"),
    ("steps/eps", "rank_minus"), ("steps/eps", "nan"), ("steps/x_t", "inf"), ("steps/x_t", "compound"),
    ("steps/alpha_bar_t", "as_string"), ("steps/sigma", "rank_plus"), ("steps/x_t", "group"), ("steps", "dataset"),
    ("status", "as_int"), ("status", "as_float"), ("status", "array"), ("status", "vlen"), ("status", "unknown"),
    ("status", "group"), ("progress/steps", "minus_one"), ("progress/steps", "past_end"), ("progress/steps", "huge"),
    ("progress/steps", "as_float"), ("progress/steps", "as_string"), ("progress/steps", "array"), ("progress/steps", "nan"),
    ("progress/final", "minus_one"), ("progress/final", "as_string"), ("progress/final", "array"),
    ("progress/train", "past_end"), ("progress/train", "minus_one"), ("progress/examples", "huge"),
    ("samples", "rank_plus"), ("samples", "other_batch"), ("labels", "as_float"), ("labels", "as_string"),
    ("schedule/beta", "short"), ("schedule/beta", "nan"), ("schedule/beta", "negative"), ("schedule/beta", "rank_plus"),
    ("schedule/beta", "as_string"), ("schedule/alpha_bar", "short"), ("schedule", "dataset"),
    ("train/loss", "rank_plus"), ("train/step", "as_float"), ("train/loss_by_bucket", "rank_minus"),
    ("snapshots/samples", "rank_minus"), ("snapshot_x_T", "rank_plus"), ("snapshot_labels", "as_string"),
    ("examples/t", "huge_values"), ("steps/t", "huge_values"), ("steps/t", "negative"),
    ("steps/x_t", "absurd_shape"), ("steps/eps", "absurd_shape"), ("samples", "absurd_shape"), ("train/loss", "absurd_shape"),
    ("steps/x_t", "compressed"), ("steps/t", "compressed"), ("examples/x_t", "absurd_shape"),
)


def _plan_struct_retype(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    choices = [(t, how) for t, how in _RETYPE_CHOICES if t in base.datasets or t in base.groups]
    target, how = rng.choice(choices)
    return f"{target} replaced ({how})", {"target": target, "how": how}


_ATTR_VALUES: dict[str, tuple[Any, ...]] = {
    "schema_version": ("inf", "nan", -1, 0, 2, "2**70", "uint64max", "'1'", "'one'", "[1, 2]", "nonutf8", "delete", "1.5"),
    "format": ("'other'", 42, "delete", "nonutf8", "'noisescope-trace '", "[1, 2]"),
    "kind": ("'unknown'", "''", 7, "delete", "'swap'", "nonutf8"),
    "config": ("'not json'", "'[1, 2]'", "'null'", "'\"text\"'", "deep_list", "deep_dict", "huge", 5, "delete",
               "nonutf8", "'{\"sampler\": 5}'", "'{\"sampler\": {\"sampler\": [1]}}'", "'NaN'"),
    "planned": ("'not json'", "'[1, 2]'", "'{\"steps\": \"x\"}'", "'{\"steps\": -5}'", "'{\"steps\": 1e308}'",
                "'{\"steps\": null}'", "'{\"train\": [1]}'", "deep_list", 5, "nonutf8"),
    "tensor_dtype": ("'complex128'", 5, "nonutf8"),
    "created": (5, "nonutf8", "[1, 2]"),
    "versions": ("'not json'", 5),
    "recovered_from": (5, "[1, 2]", "nonutf8"),
    "sampler": ("'euler'", 5),
    "loss_bucket_edges": ("'x'", "[5, 1]", "delete"),
    "resumed_at": ("'x'", "nan"),
    "schedule.name": (5, "nonutf8", "''"),
}


def _plan_bad_attr(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    names = [n for n in _ATTR_VALUES if n not in ("loss_bucket_edges", "resumed_at") or "train/loss" in base.datasets]
    weights = [6 if n in ("schema_version", "format", "kind", "config", "planned") else 1 for n in names]
    name = rng.choices(names, weights=weights)[0]
    value = rng.choice(_ATTR_VALUES[name])
    return f"attribute {name} = {value}", {"name": name, "value": value}


_EXTERNAL_HOW = ("extlink_passwd", "extlink_missing", "extlink_other_trace", "softlink_dangling", "softlink_cycle",
                 "softlink_other", "storage_passwd", "storage_zero", "storage_missing", "storage_relative", "hardlink_swap")


def _plan_external(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    how = rng.choice(_EXTERNAL_HOW)
    if how.startswith("storage"):
        candidates = [d for d in base.datasets if d.split("/")[0] in ("steps", "train", "schedule", "examples")]
    else:
        candidates = list(base.datasets) + [g for g in base.groups if g != "progress"]
    target = rng.choice(candidates)
    return f"{target} -> {how}", {"target": target, "how": how}


def _plan_virtual(rng: random.Random, base: Base, bases: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    target = rng.choice(_series_datasets(base))
    how = rng.choice(["other_base", "missing_file", "self", "self_other", "shorter"])
    return f"{target} -> virtual ({how})", {"target": target, "how": how}


_NOT_TRACE = ("empty", "random_bytes", "signature_garbage", "plain_h5", "format_only", "format_schema_kind",
              "userblock", "junk_prefix", "gzip", "text", "h5_nested_groups")


def _plan_not_trace(rng: random.Random, base: Base, _: dict[str, Base]) -> tuple[str, dict[str, Any]]:
    how = rng.choice(_NOT_TRACE)
    return f"not a trace: {how}", {"how": how, "salt": rng.randrange(2**31)}


_PLANNERS = {
    "bitflip": _plan_bitflip,
    "bitflip_meta": _plan_bitflip_meta,
    "truncate": _plan_truncate,
    "zero_page": _plan_zero_page,
    "move_block": _plan_move_block,
    "progress_bytes": _plan_progress_bytes,
    "data_value": _plan_data_value,
    "struct_delete": _plan_struct_delete,
    "struct_resize": _plan_struct_resize,
    "struct_retype": _plan_struct_retype,
    "bad_attr": _plan_bad_attr,
    "external": _plan_external,
    "virtual": _plan_virtual,
    "not_trace": _plan_not_trace,
}


# -- making: write the mutant file ---------------------------------------------------------------------


def make(mutant: Mutant, bases: dict[str, Base], out: Path) -> None:
    """Write ``mutant`` to ``out`` (run it in a child process: h5py may crash on the files it makes)."""
    base = bases[mutant.base]
    p = mutant.params
    kind = mutant.kind
    if kind == "not_trace":
        _make_not_trace(p["how"], random.Random(p["salt"]), base, out)
        return
    if kind in ("none", *STRUCTURAL):
        shutil.copyfile(base.path, out)
        if kind != "none":
            with h5py.File(out, "r+") as f:
                _STRUCT_MAKERS[kind](f, p, bases, out)
        return
    data = bytearray(base.path.read_bytes())
    if kind in ("bitflip", "bitflip_meta"):
        for offset, bit in p["flips"]:
            data[offset] ^= 1 << bit
    elif kind == "truncate":
        del data[p["length"]:]
    elif kind == "zero_page":
        for page in p["pages"]:
            start = page * 4096
            data[start:start + 4096] = bytes(len(data[start:start + 4096]))
    elif kind == "move_block":
        block = data[p["src"]:p["src"] + p["length"]]
        data[p["dst"]:p["dst"] + p["length"]] = block
    elif kind == "data_value":
        _data_value(data, p)
    elif kind == "progress_bytes":
        offset = base.offsets[p["target"]]
        patch = bytes(p["bytes"])
        data[offset:offset + len(patch)] = patch
    else:
        raise ValueError(f"unknown mutation kind {kind}")
    out.write_bytes(bytes(data))


def _replace(f: h5py.File, path: str, **kwargs: Any) -> None:
    del f[path]
    f.create_dataset(path, **kwargs)


def _struct_delete(f: h5py.File, p: dict[str, Any], bases: dict[str, Base], out: Path) -> None:
    del f[p["target"]]


def _struct_resize(f: h5py.File, p: dict[str, Any], bases: dict[str, Base], out: Path) -> None:
    target, how = p["target"], p["how"]
    group = target.split("/")[0]
    names = [f"{group}/{n}" for n in f[group]] if how == "all_series_short" else [target]
    for name in names:
        ds = f[name]
        n = ds.shape[0]
        new = {"empty": 0, "one": 1, "minus_one": max(n - 1, 0), "plus_five": n + 5, "double": 2 * n,
               "all_series_short": max(n // 2, 0)}[how]
        if ds.maxshape[0] is None:
            ds.resize(new, axis=0)
        else:
            data = ds[()]
            grown = np.zeros((new, *data.shape[1:]), dtype=data.dtype)
            grown[: min(n, new)] = data[: min(n, new)]
            _replace(f, name, data=grown)


def _struct_retype(f: h5py.File, p: dict[str, Any], bases: dict[str, Base], out: Path) -> None:
    target, how = p["target"], p["how"]
    item = f[target]
    if how == "group":
        del f[target]
        f.create_group(target).attrs["x"] = 1
        return
    if how == "dataset":
        del f[target]
        f[target] = np.arange(3)
        return
    if how == "absurd_shape":  # declared, never written: one row would take 4 TiB
        rows = item.shape[0] if item.ndim else 1
        del f[target]
        f.create_dataset(target, shape=(rows, 2**40), dtype="float32", chunks=(1, 2**18))
        return
    if how == "compressed":  # the same values, gzip and checksummed: still a valid trace
        data = item[()]
        del f[target]
        f.create_dataset(target, data=data, compression="gzip", fletcher32=True, chunks=True, maxshape=(None, *data.shape[1:]))
        return
    data = item[()]
    arr = np.asarray(data)
    new: Any
    if how == "as_float":
        new = arr.astype(np.float64) + 0.5
    elif how == "as_string":
        new = np.array([str(v).encode() for v in arr.ravel()] or [b"x"], dtype="S8") if arr.ndim else np.bytes_(b"seven")
    elif how == "as_int":
        new = np.arange(max(arr.size, 1), dtype=np.int64).reshape(arr.shape) if arr.dtype.kind == "f" else np.int64(2)
    elif how == "scalar":
        new = np.int64(3)
    elif how == "rank_minus":
        new = arr.reshape(arr.shape[0], -1)[:, 0] if arr.ndim >= 2 else np.int64(0)
    elif how == "rank_plus":
        new = arr[..., None] if arr.ndim else arr.reshape(1, 1)
    elif how == "other_batch":
        new = np.concatenate([arr, arr[:, :1]], axis=1) if arr.ndim >= 3 else np.concatenate([arr, arr[:1]], axis=0)
    elif how == "nan":
        new = np.full_like(arr, np.nan, dtype=np.float64 if arr.dtype.kind != "f" else arr.dtype)
    elif how == "inf":
        new = np.full_like(arr, np.inf)
    elif how == "negative":
        new = -np.abs(arr) - 1
    elif how == "huge_values":
        new = np.full_like(arr, 2**62)
    elif how == "short":
        new = arr[: max(len(arr) // 2, 1)]
    elif how == "compound":
        new = np.zeros(arr.shape[0], dtype=[("a", "f4"), ("b", "i8")])
    elif how == "minus_one":
        new = np.int64(-1)
    elif how == "past_end":
        new = np.int64(int(arr) + 7)
    elif how == "huge":
        new = np.int64(2**62)
    elif how == "array":
        new = np.array([arr, arr]) if arr.dtype.kind != "S" else np.array([b"complete", b"failed"])
    elif how == "vlen":
        del f[target]
        f.create_dataset(target, data="complete", dtype=h5py.string_dtype())
        return
    elif how == "unknown":
        new = np.array(b"exploded", dtype="S16")
    else:
        raise ValueError(f"unknown retype {how}")
    if target == "status" and how == "as_float":
        new = np.float64(1.5)
    if target == "status" and how == "as_int":
        new = np.int64(1)
    _replace(f, target, data=new)


def _attr_value(value: Any) -> Any:
    if isinstance(value, int):
        return value
    special: dict[str, Any] = {
        "inf": np.float64("inf"), "nan": np.float64("nan"), "2**70": np.float64(2.0**70), "uint64max": np.uint64(2**64 - 1),
        "nonutf8": np.bytes_(b"\xff\xfe\xfa"), "[1, 2]": np.array([1, 2]), "[5, 1]": np.array([5, 1]), "1.5": np.float64(1.5),
        "deep_list": "[" * 100_000 + "]" * 100_000, "deep_dict": '{"a":' * 50_000 + "1" + "}" * 50_000,
        "huge": json.dumps({"x": "y" * 2_000_000}),
    }
    if value in special:
        return special[value]
    if value.startswith("'"):
        return value[1:-1]
    raise ValueError(f"unknown attribute value {value!r}")


def _bad_attr(f: h5py.File, p: dict[str, Any], bases: dict[str, Base], out: Path) -> None:
    name, value = p["name"], p["value"]
    attrs = f.attrs
    if name == "schedule.name":
        attrs, name = f["schedule"].attrs, "name"
    if value == "delete":
        if name in attrs:
            del attrs[name]
        return
    if value == "'swap'":
        attrs[name] = "training" if f.attrs.get("kind") == "sampling" else "sampling"
        return
    if name == "config" and value == "huge":
        # Past the 64 KiB an object header holds: stored as a dense attribute.
        attrs.create(name, data=_attr_value(value))
        return
    attrs[name] = _attr_value(value)


def _struct_external(f: h5py.File, p: dict[str, Any], bases: dict[str, Base], out: Path) -> None:
    target, how = p["target"], p["how"]
    other = bases["synthetic"].path  # another trace, outside the mutant (for the synthetic base: its clean original)
    if how.startswith("storage"):
        ds = f[target]
        shape, dtype = ds.shape, ds.dtype
        size = int(np.prod(shape)) * dtype.itemsize
        file = {"storage_passwd": "/etc/passwd", "storage_zero": "/dev/zero", "storage_missing": "/nonexistent/data.bin",
                "storage_relative": "../../../../etc/hostname"}[how]
        del f[target]
        f.create_dataset(target, shape=shape, dtype=dtype, external=[(file, 0, max(size, 1))])
        return
    if how == "hardlink_swap":
        other_name = "status" if target != "status" else "progress/final"
        item = f[other_name]
        del f[target]
        f[target] = item
        return
    del f[target]
    link: Any = {
        "extlink_passwd": h5py.ExternalLink("/etc/passwd", "/x"),
        "extlink_missing": h5py.ExternalLink("/nonexistent/trace.h5", f"/{target}"),
        "extlink_other_trace": h5py.ExternalLink(str(other), f"/{target}"),
        "softlink_dangling": h5py.SoftLink("/nothing/here"),
        "softlink_cycle": h5py.SoftLink(f"/{target}"),
        "softlink_other": h5py.SoftLink("/status" if target != "status" else "/schedule"),
    }[how]
    f[target] = link


def _struct_virtual(f: h5py.File, p: dict[str, Any], bases: dict[str, Base], out: Path) -> None:
    target, how = p["target"], p["how"]
    ds = f[target]
    shape, dtype = ds.shape, ds.dtype
    if how == "other_base":
        source_file, source_name = str(bases["synthetic"].path), "steps/x_t"
    elif how == "missing_file":
        source_file, source_name = "/nonexistent/source.h5", target
    elif how == "self":
        source_file, source_name = ".", target  # "." is the file itself: the dataset maps onto itself
    else:
        source_file, source_name = ".", "status" if how == "self_other" else target
    rows = shape[0] if how != "shorter" else max(shape[0] // 2, 1)
    layout = h5py.VirtualLayout(shape=shape, dtype=dtype, maxshape=(None, *shape[1:]) if how == "shorter" else None)
    source = h5py.VirtualSource(source_file, source_name, shape=(rows, *shape[1:]), dtype=dtype)
    layout[:rows] = source
    del f[target]
    f.create_virtual_dataset(target, layout, fillvalue=0)


_STRUCT_MAKERS = {
    "struct_delete": _struct_delete,
    "struct_resize": _struct_resize,
    "struct_retype": _struct_retype,
    "bad_attr": _bad_attr,
    "external": _struct_external,
    "virtual": _struct_virtual,
}


def _make_not_trace(how: str, rng: random.Random, base: Base, out: Path) -> None:
    if how == "empty":
        out.write_bytes(b"")
    elif how == "random_bytes":
        out.write_bytes(rng.randbytes(rng.choice([1, 7, 100, 4096, 65_536])))
    elif how == "signature_garbage":
        out.write_bytes(b"\x89HDF\r\n\x1a\n" + rng.randbytes(rng.choice([0, 4, 40, 2000])))
    elif how == "text":
        out.write_text("step,t,x\n0,999,0.1\n")
    elif how == "gzip":
        out.write_bytes(gzip.compress(base.path.read_bytes(), mtime=0))
    elif how in ("userblock", "junk_prefix"):
        # A user block is legal HDF5 (the superblock is searched at 0, 512, 1024, ...): the trace may open.
        prefix = bytes(512) if how == "userblock" else rng.randbytes(rng.choice([3, 512, 1000]))
        out.write_bytes(prefix + base.path.read_bytes())
    else:
        with h5py.File(out, "w") as f:
            if how == "format_only":
                f.attrs["format"] = "noisescope-trace"
            elif how == "format_schema_kind":
                f.attrs.update({"format": "noisescope-trace", "schema_version": 1, "kind": rng.choice(["sampling", "training"])})
                if rng.random() < 0.5:
                    f["status"] = np.array(b"complete", dtype="S16")
            elif how == "h5_nested_groups":
                group: h5py.Group = f
                for depth in range(rng.randint(1, 40)):
                    group = group.create_group(f"g{depth}")
                group["data"] = np.arange(5)
            else:
                for i in range(rng.randint(0, 6)):
                    name = rng.choice(["steps", "train", "status", "progress", "data", "schedule", f"g{i}"])
                    if name in f:
                        continue
                    if rng.random() < 0.5:
                        f.create_group(name).create_dataset("x", data=np.arange(rng.randint(0, 5)))
                    else:
                        f[name] = np.arange(rng.randint(0, 5))
