"""What a sampling trace records: which step tensors, which steps, and which samples of the batch.

A trace of S steps, batch B and sample shape D holds S x B x prod(D) values per step tensor
(docs/scaling.md gives the whole size). ``noisescope sample --record x_t,x0_pred --every 10
--samples 0:16`` (the ``choice`` argument of ``record_run``, tracer/recording.py, and of
``record_sampling``, tracer/trace/sampling.py) records less; each option cuts one factor:

- ``tensors`` (``--record``): the step tensors kept, by their names in the schema's field table
  (tracer/trace/schema.py). ``x_t`` is always kept (a sampling trace is read by it), and so are
  every step scalar, ``samples`` and ``labels``. None: every tensor the sampler yields.
- ``every`` (``--every K``): rows for the steps whose loop index i is a multiple of K, and for the
  last step (so always the first and the last). A kept step's output is then no longer the next
  row's x_t: such a trace also records each kept step's output ``x_prev`` and its loop index
  ``steps/index``, so that each kept step's update is checked on its own.
- ``samples`` (``--samples START:STOP[:STEP]`` or ``--samples I``): the rows of the batch kept,
  Python's slice syntax over the batch; a bound outside the batch, an empty range or a step
  below 1 is refused (nothing is clipped silently).

The choice is applied in one place, the write side (tracer/trace/sampling.py), to full-batch
StepRecords whoever made them. A trace that records less says so in the root attribute
``record`` (``schema.ATTR_RECORD``, docs/trace-format.md) and in its config; the reader parses it
with ``from_json`` and ``noisescope check`` lists what the tensors and steps left out leave
unverified. Bad input raises ConfigError with one line, before anything is written. Torch-free:
the reader and the viewer import it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from tracer.config import ConfigError
from tracer.trace import schema

ALWAYS_KEPT: Final = schema.known(schema.STEPS, "x_t")  # a sampling trace is read by it (batch, sample shape)
# What --record may name: every step tensor a sampler yields, and x_prev (each step's output).
RECORDABLE: Final = (*schema.SAMPLER_STEP_TENSORS, schema.X_PREV)
_SLICE: Final = re.compile(r"\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?")
_INDEX: Final = re.compile(r"\s*(-?\d+)\s*")
MAX_EVERY: Final = 10**9

Slice = tuple[int | None, int | None, int | None]  # (start, stop, step) as typed: Python's slice, None where left out


@dataclass(frozen=True)
class RecordChoice:
    """What to record of a sampling run: see the module docstring. The default records everything, as before."""

    tensors: tuple[str, ...] | None = None  # the step tensors kept (x_t always); None: all the sampler yields
    every: int = 1  # keep the steps whose loop index is a multiple of this, and the last
    samples: Slice | None = None  # the batch rows kept, as a slice over the batch; None: the whole batch
    single: bool = False  # samples was one index (--samples I): shown as I, not I:I+1

    def __post_init__(self) -> None:
        if self.tensors is not None:
            if not self.tensors:
                raise ConfigError("--record is empty; name the step tensors to keep, e.g. --record x_t,x0_pred "
                                  f"(choose from {', '.join(RECORDABLE)})")
            unknown = [name for name in self.tensors if name not in RECORDABLE]
            if unknown:
                raise ConfigError(f"unknown tensor {unknown[0]!r} in --record; choose from {', '.join(RECORDABLE)}")
            if len(set(self.tensors)) != len(self.tensors):
                raise ConfigError(f"--record names {next(n for n in self.tensors if self.tensors.count(n) > 1)!r} twice")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or not 1 <= self.every <= MAX_EVERY:
            raise ConfigError(f"--every must be an integer from 1 to {MAX_EVERY:,} (1: every step), got {self.every!r}")
        if self.samples is not None:
            start, stop, step = self.samples
            if step is not None and step < 1:
                raise ConfigError(f"--samples {_slice_text(self.samples)} has step {step}; the step must be at least 1")

    # -- parsing the command line ------------------------------------------------------------------------
    @classmethod
    def from_cli(cls, record: str | None = None, every: str | int | None = None, samples: str | None = None) -> RecordChoice:
        """The choice from the text of --record, --every and --samples (None: the default); ConfigError for bad input.
        The sample range is checked against the batch by ``check_batch`` once the batch is known."""
        tensors = None if record is None else tuple(part.strip() for part in record.split(",") if part.strip())
        k = 1 if every is None else _every(every)
        rows, single = (None, False) if samples is None else parse_samples(samples)
        return cls(tensors=tensors, every=k, samples=rows, single=single)

    # -- what is kept ----------------------------------------------------------------------------------
    @property
    def everything(self) -> bool:
        """Whether this records everything (the default): the trace is then written exactly as without a choice."""
        return self.tensors is None and self.every == 1 and self.samples is None

    @property
    def skips(self) -> bool:
        """Whether steps are left out (--every K, K > 1): rows then carry x_prev and steps/index."""
        return self.every > 1

    def keeps_tensor(self, name: str) -> bool:
        """Whether the step tensor ``name`` is written (when the sampler yields it)."""
        if name in ALWAYS_KEPT or (name == schema.X_PREV and self.skips):
            return True
        if self.tensors is None:
            return name != schema.X_PREV
        return name in self.tensors

    def keeps_step(self, index: int, planned: int) -> bool:
        """Whether the step at loop index ``index`` of ``planned`` is kept: a multiple of ``every``, or the last planned."""
        return index % self.every == 0 or index == planned - 1

    def kept_steps(self, planned: int) -> int:
        """How many of ``planned`` steps are kept: ceil(planned / every), and the last where it is no multiple of every."""
        if planned <= 0:
            return 0
        return -(-planned // self.every) + (1 if (planned - 1) % self.every else 0)

    def rows(self, batch: int) -> range:
        """The batch rows kept, for a run of ``batch`` samples; ConfigError where the range leaves the batch or is empty."""
        if self.samples is None:
            return range(batch)
        start, stop, step = self.samples
        text = _slice_text(self.samples, self.single)
        if self.single and start is not None and not -batch <= start < batch:
            raise ConfigError(f"--samples {text} is outside the batch of {batch} (rows 0 to {batch - 1})")
        for verb, bound in (("starts", start), ("stops", stop)):
            if bound is not None and not -batch <= bound <= batch:
                raise ConfigError(f"--samples {text} {verb} outside the batch of {batch} (rows 0 to {batch - 1})")
        rows = range(batch)[slice(start, stop, step)]
        if not rows:
            raise ConfigError(f"--samples {text} keeps no sample of the batch of {batch}")
        return rows

    def check_batch(self, batch: int) -> None:
        """ConfigError (one line) unless the sample range fits a batch of ``batch``: for the CLI, before any work."""
        self.rows(batch)

    # -- in the trace ----------------------------------------------------------------------------------
    def to_json(self, batch: int, left_out: tuple[str, ...] = (), steps: int = 0) -> dict[str, Any]:
        """The root attribute ``record`` (and config entry) of a trace of a run of ``batch`` samples and ``steps`` planned
        steps (0: not known); ``left_out``: the step tensors the sampler yielded that the choice did not keep (what
        ``check`` then cannot verify)."""
        rows = self.rows(batch)
        return {
            "tensors": None if self.tensors is None else list(self.tensors),
            "every": self.every,
            "samples": None if self.samples is None else [rows.start, rows.stop, rows.step],
            "batch": batch,
            "steps": steps,
            "left_out": list(left_out),
        }

    @classmethod
    def from_json(cls, data: Any) -> Recorded:
        """What a trace's ``record`` attribute says; ValueError if it is not one ``to_json`` writes."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        tensors, every, samples, batch = data.get("tensors"), data.get("every", 1), data.get("samples"), data.get("batch")
        left_out, steps = data.get("left_out", []), data.get("steps", 0)
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"steps {steps!r} is not a step count")
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise ValueError(f"batch {batch!r} is not a positive integer")
        for name, names in (("tensors", tensors), ("left_out", left_out)):
            if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                raise ValueError(f"{name} is not a list of names")
        if samples is not None and not (isinstance(samples, list) and len(samples) == 3 and all(_int(v) for v in samples)):
            raise ValueError("samples is not [start, stop, step]")
        if not _int(every):
            raise ValueError(f"every {every!r} is not an integer")
        if tensors is not None:  # names a newer noisescope may record are ignored, as a reader ignores unknown datasets
            tensors = [name for name in tensors if name in RECORDABLE] or list(ALWAYS_KEPT)
        try:
            choice = cls(tensors=None if tensors is None else tuple(tensors), every=every,
                         samples=None if samples is None else (samples[0], samples[1], samples[2]))
            choice.rows(batch)
        except ConfigError as error:
            raise ValueError(str(error)) from None
        return Recorded(choice, batch, tuple(name for name in left_out or () if name in RECORDABLE), steps)

    def describe(self, batch: int | None = None) -> str:
        """The choice for people, one line: e.g. 'tensors x_t, x0_pred; every 10th step and the last; samples 0:16 of 64'."""
        parts = ["every tensor" if self.tensors is None else "tensors " + ", ".join(dict.fromkeys((*ALWAYS_KEPT, *self.tensors)))]
        if self.skips:
            parts.append(f"every {ordinal(self.every)} step and the last (with x_prev and steps/index)")
        else:
            parts.append("every step")
        if self.samples is None:
            parts.append("the whole batch" + ("" if batch is None else f" of {batch}"))
        else:
            parts.append(f"samples {_slice_text(self.samples, self.single)}" + ("" if batch is None else f" of a batch of {batch}"))
        return "; ".join(parts)


EVERYTHING: Final = RecordChoice()


@dataclass(frozen=True)
class Recorded:
    """What a trace that records less than everything says of it (its root attribute ``record``)."""

    choice: RecordChoice
    batch: int  # the run's batch; the trace keeps ``rows`` of it
    left_out: tuple[str, ...] = ()  # step tensors the sampler yielded that were not kept
    steps: int = 0  # the run's planned steps (the trace plans ``choice.kept_steps(steps)`` rows); 0: not known

    @property
    def rows(self) -> range:
        """The run's batch index of each sample the trace keeps."""
        return self.choice.rows(self.batch)

    def to_json(self) -> dict[str, Any]:
        """The attribute again, as ``RecordChoice.to_json`` writes it."""
        return self.choice.to_json(self.batch, self.left_out, self.steps)


def shared_samples(*kept: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """The run's sample indices every trace keeps (each trace's ``Trace.sample_indices()``), in increasing order, and
    for each trace the row holding each of them: two traces are compared sample by sample only where the rows are
    the same sample of the run (``--samples 0:4`` against ``--samples 2:6`` shares samples 2 and 3, in rows 2, 3 of
    the first and 0, 1 of the second). Empty where no sample is kept by all of them."""
    common = sorted(set.intersection(*(set(indices) for indices in kept))) if kept else []
    positions = [{index: row for row, index in enumerate(indices)} for indices in kept]
    return common, [[where[index] for index in common] for where in positions]


def samples_text(indices: Sequence[int]) -> str:
    """Sample indices for people: '0:16' for a run of consecutive ones, '0:16:2' for an even stride, else '2, 5, 9'."""
    values = list(indices)
    if len(values) > 2:
        stride = values[1] - values[0]
        if stride > 0 and all(b - a == stride for a, b in zip(values, values[1:], strict=False)):
            return _slice_text((values[0], values[-1] + stride, stride))
    return ", ".join(map(str, values))


def parse_samples(text: str) -> tuple[Slice, bool]:
    """--samples: 'START:STOP[:STEP]' (Python's slice syntax, each part optional) or one index 'I'; (slice, single)."""
    single = _INDEX.fullmatch(text)
    if single:
        index = int(single.group(1))
        return (index, None if index == -1 else index + 1, None), True
    found = _SLICE.fullmatch(text)
    if not found:
        raise ConfigError(f"--samples {text!r} is not a slice of the batch; give START:STOP (e.g. 0:16), START:STOP:STEP or one index")
    start, stop, step = (None if part is None else int(part) for part in found.groups())
    if step is not None and step < 1:
        raise ConfigError(f"--samples {text.strip()} has step {step}; the step must be at least 1")
    return (start, stop, step), False


def _every(value: str | int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        k = value
    else:
        try:
            k = int(str(value).strip())
        except ValueError:
            raise ConfigError(f"--every must be a whole number of steps, got {value!r}") from None
    if not 1 <= k <= MAX_EVERY:
        raise ConfigError(f"--every must be at least 1 (1: every step), got {k}")
    return k


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _slice_text(samples: Slice, single: bool = False) -> str:
    start, stop, step = samples
    if single:
        return str(start)
    text = f"{'' if start is None else start}:{'' if stop is None else stop}"
    return text if step is None or step == 1 else f"{text}:{step}"


def ordinal(k: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 21st: for 'every 10th step'."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"
