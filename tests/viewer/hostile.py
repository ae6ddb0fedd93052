"""Hostile traces: their names, configs and attributes hold markdown images, links, raw HTML, math and badges.

Every URL in them points at 127.0.0.1 on port 9 (discard: nothing listens there), so a
viewer that rendered any of it as markup would make the browser ask for one of them.
Written by noisescope's own writer, then their attributes rewritten by hand, as anyone could.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from tests.trace.synthetic import records
from tests.viewer.conftest import training_trace
from tracer.schedules import make_schedule
from tracer.trace import schema
from tracer.trace.sampling import record_sampling

URL = "http://127.0.0.1:9"  # where every hostile link and image points
RECOVERED_FROM = f"![x]({URL}/steal)"
IMAGE = f"<img src={URL}/img.png>"
LINK = f"[link]({URL}/click)"
MATH = f"$\\href{{{URL}/math}}{{m}}$ $$x$$"
BADGE = ":red-badge[forged] :material/warning:"
# File names cannot hold '/', so their links and images are relative: they name 'hostile-*' files.
FILE_NAME = "![f](hostile-file.png) <img src=hostile-img.png> [l](hostile-link) $m$ _u_ `c`.h5"
CORRUPT_NAME = "zz_![c](hostile-corrupt.png) <img src=hostile-corrupt.png>.h5"
MARKERS = (URL, "127.0.0.1:9", "hostile-")  # what no request, src or href may contain

SAMPLER_CONFIG: dict[str, Any] = {
    "sampler": {
        "sampler": "ddim",
        "steps": f"![s]({URL}/steps)",
        "eta": IMAGE,
        "guidance": LINK,
        "preset": f"{MATH} <a href={URL}/a>a</a> {BADGE}",
    },
    "seed": f"{BADGE} ![seed]({URL}/seed)",
}
HAND_CONFIG: dict[str, Any] = {  # someone else's loop: no noisescope sampler settings, an integration
    "sampler": f"![hand]({URL}/hand)",
    "integration": {"library": IMAGE},
    "data": {"dataset": f"<b>bold</b> {LINK}"},
    "model": {"name": MATH},
}
TRAINING_CONFIG: dict[str, Any] = {
    "data": {"dataset": f"![d]({URL}/dataset)"},
    "model": {"name": IMAGE},
    "train": {"steps": 300},
    "total_steps": 300,
}


@dataclass(frozen=True)
class Hostile:
    root: Path
    sampling: Path  # noisescope's layout and sampler settings, every string hostile; a 'recovered' copy
    hand_made: Path  # a sampling trace from someone else's loop
    training: Path
    corrupt: Path

    def name(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def rewrite_attrs(path: Path, config: dict[str, Any], **attrs: str) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs[schema.ATTR_CONFIG] = json.dumps(config)
        for key, value in attrs.items():
            f.attrs[key] = value


def sampling_trace(path: Path, config: dict[str, Any], seed: int) -> Path:
    schedule = make_schedule("linear", 1000)
    record_sampling(records(schedule, 8, batch=3, shape=(1, 4, 4), seed=seed), path, schedule=schedule, config={"sampler": {}}, planned=8, labels=None)
    rewrite_attrs(path, config)
    return path


def make_hostile(root: Path) -> Hostile:
    root.mkdir(parents=True, exist_ok=True)
    made = Hostile(
        root=root,
        sampling=sampling_trace(root / FILE_NAME, SAMPLER_CONFIG, seed=0),
        hand_made=sampling_trace(root / "hand_made.h5", HAND_CONFIG, seed=1),
        training=training_trace(root / "train.h5"),
        corrupt=root / CORRUPT_NAME,
    )
    rewrite_attrs(made.sampling, SAMPLER_CONFIG, **{schema.ATTR_RECOVERED_FROM: RECOVERED_FROM})
    rewrite_attrs(made.training, TRAINING_CONFIG, **{schema.ATTR_RECOVERED_FROM: RECOVERED_FROM})
    made.corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    return made
