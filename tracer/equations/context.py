"""What a check reads from a trace: the facts of the run, and float64 views of its steps.

Every check (tracer/equations/checks.py, structure.py) reads the trace through a
``TraceView``, never through torch: tensors come back as float64 NumPy arrays (float32
and float16 storage convert exactly), the schedule as the float64 arrays stored in the
file (``schedule/alpha_bar`` as written, not recomputed from beta).

A check returns a ``Residual``: the largest absolute residual max |lhs - rhs| and the
scale of the values it came from (max over elements of the sum of |term| of both sides),
because rounding errors are proportional to that scale. It passes when

    residual <= tol * max(floor, scale)

with floor 1 for tensors and most scalars (diffusion tensors are of order one), and
floor 0 for relative scalar checks (alpha_bar, whose tail is tiny) and exact ones (t).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tracer.trace import schema

# Relative tolerance of tensor checks, by the dtype the trace stores tensors in: float32 rounds
# at 6e-8 of a value, float16 at 4.9e-4; an equation sums a few rounded terms, so these leave a
# margin of about 100x (float32) and 5x (float16) over rounding, and a real bug is far above.
TENSOR_TOLERANCES: dict[str, float] = {"float32": 1e-5, "float16": 1e-2}
# Scalars are float64 in every trace, but other libraries compute them in float32 (diffusers'
# alphas_cumprod, sigma): 1e-6 relative is float32 rounding with a margin of about 10x.
SCALAR_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Residual:
    """max |lhs - rhs| of one check at one step, with the scale of the values it compares."""

    value: float
    scale: float = 1.0
    floor: float = 1.0  # 1: relative to max(1, scale); 0: purely relative (or exact when scale is 0)
    detail: str = ""  # the numbers behind a structural check, for people ("t_prev 899, next t 888")

    def threshold(self, tol: float) -> float:
        return tol * max(self.floor, self.scale)

    def passes(self, tol: float) -> bool:
        return math.isfinite(self.value) and self.value <= self.threshold(tol)


def judge_row(check: Any, view: Any, i: int) -> Residual | None:
    """``check(view, i)``, with arithmetic that is undefined at this row (a zero denominator, the root of a
    negative number, an overflow: degenerate or damaged values) as a failing Residual that says so."""
    try:
        return check(view, i)  # type: ignore[no-any-return]
    except (ZeroDivisionError, ValueError, OverflowError) as error:
        return Residual(float("inf"), 0.0, 1.0, f"the equation is undefined at this step ({error})")


def _sampler_config(config: dict[str, Any]) -> dict[str, Any]:
    sampler = config.get("sampler")
    return sampler if isinstance(sampler, dict) else {}


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _hashable(value: Any) -> Any:
    """A config value as facts keep it: lists as tuples (facts are frozen and hashable)."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((str(k), _hashable(v)) for k, v in value.items())
    return value


# diffusers' names of the prediction types, and noisescope's
_PREDICTIONS = {"eps": "eps", "epsilon": "eps", "x0": "x0", "sample": "x0", "v": "v", "v_prediction": "v"}


def _prediction(config: dict[str, Any]) -> str:
    """What the network predicts, as the config says (the sampler's ``prediction``, diffusers' ``prediction_type``, or
    a training trace's model config); a name none of them uses is kept as it is, and no prediction equation applies."""
    sampler = _sampler_config(config)
    model: dict[str, Any] = config["model"] if isinstance(config.get("model"), dict) else {}
    name = sampler.get("prediction", sampler.get("prediction_type", model.get("prediction", "eps")))
    return _PREDICTIONS.get(name, str(name)) if isinstance(name, str) else "unknown"


@dataclass(frozen=True)
class TraceFacts:
    """How a trace was made, as far as the checks need it (from its config, attributes and fields)."""

    kind: str  # sampling | training
    sampler: str | None  # ddpm, ddim, or another library's scheduler family (euler, ...)
    tensor_dtype: str
    step_names: frozenset[str]
    example_names: frozenset[str]
    guidance: float | None  # the scale s of classifier-free guidance, None when off
    eta: float | None  # DDIM's eta from the config (a trace may also record it per step)
    variance: str  # DDPM: beta_tilde | beta (other values: not checked)
    clip: bool  # x0_pred clipped to [-clip_range, clip_range]
    clip_range: float
    thresholding: bool  # dynamic thresholding of x0_pred (another library's option: x0 not checked)
    final_alpha_bar: str  # one | alpha_bar_0: what the last step moves to (t_prev -1 or 0)
    integration: str | None  # None for noisescope's own samplers, else the recorder (diffusers, ...)
    prediction: str = "eps"  # what the network predicts: eps, x0 or v (tracer/samplers/prediction.py)
    guidance_rescale: float = 0.0  # phi of guidance rescale (Lin et al. 2023, Sec. 3.4), 0 when off
    schedule_name: str | None = None  # the schedule the config names (linear, cosine, seed-report), None if it names none
    zero_terminal_snr: bool = False  # the config says the schedule was rescaled to zero terminal SNR (Lin et al. 2023, Alg. 1)
    # Where ``sampler`` comes from: declared by the trace, identified from its rows (tracer/equations/identify.py),
    # or unknown (a sampling trace that names none and fits no registered update); "" for training traces.
    sampler_source: str = "declared"
    identification: str = ""  # what identify() found and inferred, for people
    identification_failure: str = ""  # why no update was identified
    # The variable the sampler steps: vp (x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps) or sigma (x = x0 + sigma eps,
    # Karras et al. 2022: the trace records sigma_t; tracer/samplers/karras.py).
    space: str = "vp"
    # or flow (x_t = (1 - t) x0 + t eps of a flow-matching network: the trace records t_flow; tracer/samplers/flow.py).
    final_sigma: float | None = None  # a sigma-space run: the noise level its last step lands on (0: the clean sample)
    objective: str = "diffusion"  # what the network was trained on: diffusion or flow (config model.objective)
    options: tuple[tuple[str, Any], ...] = ()  # the config's sampler entry as (name, value) pairs, for the option a check reads
    # What the run chose not to record (tracer/trace/choice.py; noisescope sample --record, --every): the step tensors its
    # sampler yielded that the trace leaves out, the K of --every K, and whether its rows skip steps (steps/index has gaps).
    left_out: frozenset[str] = frozenset()
    every: int = 1
    gaps: bool = False

    def option(self, name: str, default: Any = None) -> Any:
        """The sampler option ``name`` as the trace's config records it (``default`` where it records none)."""
        return dict(self.options).get(name, default)

    @classmethod
    def of(cls, trace: Any) -> TraceFacts:
        """The facts of ``trace``: declared ones, and for a sampling trace that names no sampler, identified ones."""
        declared = cls.declared(trace)
        if declared.kind != "sampling" or declared.sampler is not None:
            return declared
        rows = int(trace.rows(schema.STEPS))
        try:
            memo = _IDENTIFIED.get(trace)
        except TypeError:  # an object that cannot be weakly referenced: no memo
            memo = None
        if memo is not None and memo[0] == rows:
            return memo[1]
        from tracer.equations.identify import identify  # identify reads through TraceView, defined below

        found = identify(trace, replace(declared, sampler_source="unknown"))
        facts = found.facts if found.facts.sampler is not None else replace(found.facts, identification_failure=found.failed)
        try:
            _IDENTIFIED[trace] = (rows, facts)
        except TypeError:
            pass
        return facts

    @classmethod
    def declared(cls, trace: Any) -> TraceFacts:
        """The facts as the trace's config and attributes state them (no identification)."""
        config = trace.config if isinstance(trace.config, dict) else {}
        sampler = _sampler_config(config)
        name = sampler.get("sampler") or trace.attr("sampler")
        preset = sampler.get("preset")
        step_names = frozenset(trace.field_names(schema.STEPS))
        clip_config = sampler.get("clip")
        clip = (
            "x0_pred_raw" in step_names
            or clip_config is True
            or preset == "seed-report"
            or (clip_config is None and name == "ddpm" and not config.get("integration"))
        )
        eta = 0.0 if preset == "seed-report" else _float_or_none(sampler.get("eta"))
        # Only DDIM ends at alpha_bar_0 (the option, and the seed-report preset); DDPM always ends at the clean end.
        ends_at_0 = preset == "seed-report" or sampler.get("final_alpha_bar") == "alpha_bar_0"
        final = "alpha_bar_0" if ends_at_0 and name == "ddim" else "one"
        integration = config.get("integration")
        schedule: dict[str, Any] = config["schedule"] if isinstance(config.get("schedule"), dict) else {}
        sigmas = sampler.get("sigmas")
        model: dict[str, Any] = config["model"] if isinstance(config.get("model"), dict) else {}
        final_sigma = _float_or_none(sigmas[-1]) if isinstance(sigmas, list) and sigmas else None
        return cls(
            kind=str(trace.kind),
            sampler=None if name is None else str(name),
            tensor_dtype=str(trace.tensor_dtype),
            step_names=step_names,
            example_names=frozenset(trace.field_names(schema.EXAMPLES)),
            guidance=_float_or_none(sampler.get("guidance")),
            eta=eta,
            variance=str(sampler.get("variance") or "beta_tilde"),
            clip=bool(clip),
            clip_range=_float_or_none(sampler.get("clip_range")) or 1.0,
            thresholding=bool(sampler.get("thresholding", False)),
            final_alpha_bar=final,
            integration=str(integration["library"]) if isinstance(integration, dict) and "library" in integration else None,
            prediction=_prediction(config),
            guidance_rescale=_float_or_none(sampler.get("guidance_rescale")) or 0.0,
            schedule_name=str(schedule["name"]) if isinstance(schedule.get("name"), str) else None,
            zero_terminal_snr=schedule.get("zero_terminal_snr") is True,
            sampler_source="declared" if name is not None else ("" if trace.kind == "training" else "unknown"),
            space="sigma" if "sigma_t" in step_names else "flow" if "t_flow" in step_names else "vp",
            objective=str(model.get("objective") or "diffusion"),
            final_sigma=final_sigma,
            options=tuple((str(k), _hashable(v)) for k, v in sampler.items()),
            **_recorded(trace, step_names),
        )

    def has(self, *names: str) -> bool:
        return all(name in self.step_names for name in names)


def _recorded(trace: Any, step_names: frozenset[str]) -> dict[str, Any]:
    """left_out, every and gaps of TraceFacts: what a run chose not to record (its ``record`` attribute, steps/index)."""
    recorded = getattr(trace, "recorded", None)
    facts: dict[str, Any] = {}
    if recorded is not None:
        facts.update(left_out=frozenset(recorded.left_out), every=int(recorded.choice.every))
    if schema.STEP_INDEX in step_names:
        index = np.asarray(trace.column(schema.STEP_INDEX), dtype=np.int64)
        facts["gaps"] = bool(index.size and (np.any(np.diff(index) != 1) or index[0] != 0))
    return facts


CACHE_ROWS = 2  # TraceView keeps the rows within this many of the row read last

# Identification reads rows: once per trace object and committed row count.
_IDENTIFIED: weakref.WeakKeyDictionary[Any, tuple[int, TraceFacts]] = weakref.WeakKeyDictionary()


class TraceView:
    """Cached float64 access to one series of a trace (``steps``, or ``examples`` of a training trace).

    Only the rows within ``CACHE_ROWS`` of the row read last are kept, whatever the order of the
    reads (a pass over the steps, or the viewer's scrubs back and forth): at most
    2 * CACHE_ROWS + 1 rows of each tensor, so memory does not grow with the trace's length or
    with the steps visited. A pass over every step reads each row once: the checks at row i read
    rows i - 1 (x0_pred_prev), i and i + 1 (step i's output is step i + 1's x_t), all kept.
    """

    def __init__(self, trace: Any, series: str = schema.STEPS, facts: TraceFacts | None = None) -> None:
        self.trace = trace
        self.series = series
        self.facts = facts if facts is not None else TraceFacts.of(trace)
        self.rows = int(trace.rows(series))
        self.names = frozenset(trace.field_names(series))
        self.scalars: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in trace.scalars(series).items()}
        self._tensors: dict[tuple[str, int], np.ndarray] = {}
        self._schedule: dict[str, np.ndarray] | None = None
        self._samples: np.ndarray | None = None
        self._samples_read = False
        self._index_ok: np.ndarray | None = None
        self._read: set[tuple[str, int]] = set()  # (tensor, row) read so far

    # -- schedule, as stored ------------------------------------------------------------------------
    @property
    def schedule(self) -> dict[str, np.ndarray]:
        """beta, alpha, alpha_bar as stored in the file ({} when the trace has no schedule)."""
        if self._schedule is None:
            self._schedule = dict(self.trace.schedule_arrays())
        return self._schedule

    def indices_ok(self, i: int) -> bool:
        """Row i's t lies in the schedule (0..T-1) and its t_prev too, or is -1 (the clean end).

        Equations are not evaluated at a row whose timesteps are outside the schedule; the
        structural checks schedule.alpha_bar_t / alpha_bar_prev fail there instead.
        """
        if self._index_ok is None:
            length = len(self.schedule.get("alpha_bar", self.schedule.get("beta", ())))
            ok = np.ones(self.rows, dtype=bool)
            for name, low in (("t", 0), ("t_prev", -1)):
                values = self.scalars.get(name)
                if values is not None:
                    ok &= (values[: self.rows] >= low) & (values[: self.rows] < length)
            self._index_ok = ok
        return bool(0 <= i < self.rows and self._index_ok[i])

    def alpha_bar_at(self, t: int) -> float:
        """The schedule's alpha_bar at index t; t = -1 is the clean end, where alpha_bar = 1."""
        return 1.0 if t < 0 else float(self.schedule["alpha_bar"][t])

    # -- one row ------------------------------------------------------------------------------------
    def has(self, *names: str) -> bool:
        return all(name in self.names for name in names)

    def scalar(self, name: str, i: int) -> float:
        return float(self.scalars[name][i])

    def t(self, i: int) -> int | None:
        values = self.scalars.get("t")
        return None if values is None or i >= len(values) else int(values[i])

    def tensor(self, name: str, i: int) -> np.ndarray:
        key = (name, i)
        cached = self._tensors.get(key)
        if cached is None:
            if not 0 <= i < self.rows:
                raise IndexError(f"row {i} of {self.series} is out of range: {self.rows} rows committed")
            self._tensors = {k: v for k, v in self._tensors.items() if abs(k[1] - i) <= CACHE_ROWS}
            cached = self.trace.tensor(name, i, self.series, dtype=np.float64)  # float32/16 convert exactly
            self._tensors[key] = cached
            self._read.add(key)
        return cached

    def read_the_rest(self) -> None:
        """Read every committed row of every tensor that no check has read (a verdict covers the whole trace:
        a row that cannot be read raises TraceError instead of passing unseen)."""
        for name in self.trace.tensor_names(self.series):
            for i in range(self.rows):
                if (name, i) not in self._read:
                    self.trace.tensor(name, i, self.series)
        self.samples()

    def samples(self) -> np.ndarray | None:
        """The final samples, None until the writer has written them."""
        if not self._samples_read:
            value = self.trace.final(schema.SAMPLES)
            self._samples = None if value is None else np.asarray(value, dtype=np.float64)
            self._samples_read = True
        return self._samples

    def complete(self) -> bool:
        """True when the run finished: its last row is the last step (a failed run's last row is not judged)."""
        return bool(self.trace.status == "complete" or self.trace.has_final())

    def output(self, i: int) -> np.ndarray | None:
        """What step i produced: x_prev[i] when recorded, else x_t[i + 1] where row i + 1 is the next step (see
        ``follows``), or samples after the last step; None where it is not known."""
        if self.has(schema.X_PREV):
            return self.tensor(schema.X_PREV, i)
        if i + 1 < self.rows:
            return self.tensor("x_t", i + 1) if self.follows(i) else None
        if i == self.rows - 1:
            return self.samples()
        return None

    # -- rows and steps: a trace that keeps every K-th step (tracer/trace/choice.py) ------------------------------
    def step_index(self, i: int) -> int:
        """The run's loop index of row i: ``steps/index`` where the trace skips steps, else i."""
        index = self.scalars.get(schema.STEP_INDEX) if self.series == schema.STEPS else None
        return i if index is None or i >= len(index) else int(index[i])

    def follows(self, i: int) -> bool:
        """Whether row i + 1 is the step right after row i's (always, unless the trace skips steps)."""
        return i + 1 < self.rows and self.step_index(i + 1) == self.step_index(i) + 1

    def after_previous(self, i: int) -> bool:
        """Whether row i - 1 is the step right before row i's."""
        return i > 0 and self.step_index(i - 1) == self.step_index(i) - 1
