"""noisescope: record and replay what a diffusion model does at every step.

``from tracer import record`` is the recording API for a sampling loop of your own
(tracer/recorder.py, docs/recording.md). It loads on first use: importing ``tracer`` alone
imports neither torch nor h5py (the viewer and the command line start fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracer.recorder import RecordError, Recorder, RecordTypeError, record

_LAZY = {"record": "tracer.recorder", "Recorder": "tracer.recorder", "RecordError": "tracer.recorder",
         "RecordTypeError": "tracer.recorder"}

__all__ = ["RecordError", "RecordTypeError", "Recorder", "record"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tracer' has no attribute {name!r}")
