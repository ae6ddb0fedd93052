"""Every read of a trace's step tensors, for the tests that say how much of a trace a command holds at once.

``recorded_reads(monkeypatch)`` wraps h5py's ``Dataset.__getitem__`` (the one call through which
the reader, tracer/trace/reader.py, reads values) and lists, for every read of a dataset of the
``steps`` series with rows of their own ([S, B, *D]: the tensors), the dataset's name, the row index
asked for (None when the selection was anything but one row) and how many rows' bytes came back.
Only reads made on the thread that opened the recording count: a frames thread an earlier test
left running in the same process reads other files.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import pytest


@dataclass(frozen=True)
class Read:
    name: str  # the tensor's field name (x_t, eps, ...)
    row: int | None  # the row index asked for, None for any other selection
    rows: float  # bytes returned / bytes of one row


@dataclass
class Reads:
    tensors: list[Read] = field(default_factory=list)

    @property
    def most_rows(self) -> float:
        """The largest read, in rows (0 when nothing was read)."""
        return max((r.rows for r in self.tensors), default=0.0)

    def per_row(self) -> Counter[tuple[str, int | None]]:
        """How often each (tensor, row) was read."""
        return Counter((r.name, r.row) for r in self.tensors)

    def clear(self) -> None:
        self.tensors.clear()


@contextmanager
def recorded_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    reads = Reads()
    original = h5py.Dataset.__getitem__
    this_test = threading.get_ident()

    def getitem(self: h5py.Dataset, args: Any, new_dtype: Any = None) -> Any:
        out = original(self, args, new_dtype)
        name = str(self.name or "")
        if name.startswith("/steps/") and self.ndim >= 3 and threading.get_ident() == this_test:
            row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
            row = int(args) if isinstance(args, (int, np.integer)) and not isinstance(args, bool) else None
            reads.tensors.append(Read(name.rsplit("/", 1)[1], row, np.asarray(out).nbytes / row_bytes))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", getitem)
    yield reads
