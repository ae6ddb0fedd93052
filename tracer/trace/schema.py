"""The trace file layout: the one place its names, shapes and dtypes are spelled.

A trace is one HDF5 file. ``FIELDS`` holds every recorded name (step scalars and
tensors, the schedule arrays, the root datasets, the training series) with its dtype,
row shape, whether it is core, required or optional, its symbol and display class and
its meaning; the constants below it (STEP_SCALARS, STEP_TENSORS, ...) follow from it,
and so do the viewer's labels and colour classes. docs/trace-format.md documents every
name here (tests/trace/test_field_table.py compares its tables with FIELDS); the stable
core is a public contract: add names freely, never rename.

Layout, for a sampling trace with S steps, batch B and sample shape D:

    /                       attrs: format, schema_version, kind, config, created, versions, ...
    /status                 scalar S16 dataset: running | complete | failed (live under SWMR)
    /progress/<series>      scalar int64 dataset: rows of <series> committed so far
    /progress/final         scalar int64 dataset: 1 once samples and labels are written
    /schedule/{beta,alpha,alpha_bar}            [T] float64
    /steps/<scalar>         [S]        (STEP_SCALARS, OPTIONAL_STEP_SCALARS, ETA, STEP_INDEX)
    /steps/<tensor>         [S, B, *D] (STEP_TENSORS, OPTIONAL_STEP_TENSORS, X_PREV, MODEL_OUTPUT), chunked one step a chunk
    /samples                [B, *D]    the final output
    /labels                 [B] int64  class labels, -1 for unconditional

A training trace has the series train, snapshots and examples instead of steps,
and the root datasets snapshot_x_T and snapshot_labels (see below).

Attributes cannot change while a file is in SWMR mode, so the live state
(status, committed rows) lives in small datasets that the writer overwrites.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

FORMAT: Final = "noisescope-trace"
SCHEMA_VERSION: Final = 1

Kind = Literal["sampling", "training"]
Status = Literal["running", "complete", "failed"]
STATUSES: Final = ("running", "complete", "failed")
STATUS_DTYPE: Final = np.dtype("S16")

# Root attributes.
ATTR_FORMAT: Final = "format"
ATTR_SCHEMA_VERSION: Final = "schema_version"
ATTR_KIND: Final = "kind"
ATTR_CONFIG: Final = "config"  # JSON of the full configuration
ATTR_CREATED: Final = "created"  # ISO 8601, UTC
ATTR_VERSIONS: Final = "versions"  # JSON: library versions of the writer
ATTR_TENSOR_DTYPE: Final = "tensor_dtype"  # float32 | float16
ATTR_PLANNED: Final = "planned"  # JSON: {series: planned rows}
ATTR_RECOVERED_FROM: Final = "recovered_from"  # set by `noisescope recover` on the copy
# JSON: the process that writes the trace, {"host", "boot_id", "pid_ns", "pid", "started"} (tracer/trace/liveness.py),
# so that a reader on the same machine tells a run still being written from one killed before it closed its trace.
ATTR_WRITER: Final = "writer"
# JSON, only where a sampling run recorded less than everything (tracer/trace/choice.py, noisescope sample --record,
# --every, --samples): {"tensors": [names] or null, "every": K, "samples": [start, stop, step] or null, "batch": B}.
ATTR_RECORD: Final = "record"

STATUS: Final = "status"
PROGRESS: Final = "progress"
FINAL: Final = "final"  # progress/final: 1 once the root datasets (samples, labels) are written

SCHEDULE: Final = "schedule"
STEPS: Final = "steps"  # sampling: one row per reverse step
# Training: "train" (one row per logged step), "snapshots" (samples from a fixed x_T every k steps)
# and "examples" (worked examples of the loss, written once).
TRAIN: Final = "train"
SNAPSHOTS: Final = "snapshots"
EXAMPLES: Final = "examples"
ROOT: Final = ""  # the "series" of the root datasets (samples, labels, snapshot_x_T, snapshot_labels): no rows
SERIES: Final = (STEPS, TRAIN, SNAPSHOTS, EXAMPLES)  # the series a trace may have, each with its progress counter

TENSOR: Final = "tensor"  # field dtype placeholder: float32 or float16 per the trace's tensor_dtype
TENSOR_DTYPES: Final = ("float32", "float16")
FIELD_DTYPES: Final = ("int64", "float64", TENSOR)

# The shape of one row of a series (of the whole dataset for a root dataset); D is the sample shape.
ShapeKind = Literal["scalar", "vector", "batch", "sample", "samples"]
SHAPE_KINDS: Final[dict[str, str]] = {
    "scalar": "()",  # one number
    "vector": "[K]",  # K numbers (train/loss_by_bucket: one per timestep bucket)
    "batch": "[B]",  # one number per sample of a batch (labels)
    "sample": "[*D]",  # one sample (examples/x0)
    "samples": "[B, *D]",  # a batch of samples (steps/x_t, samples)
}
# How the viewer draws a name: image-like (grey, data range), noise-like (diverging, symmetric) or a number.
Display = Literal["image", "noise", "scalar"]
DISPLAYS: Final = ("image", "noise", "scalar")


@dataclass(frozen=True)
class Field:
    """One recorded name: where it lives, its dtype and row shape, how it is shown, and what it means.

    ``core``: part of the stable public contract (docs/trace-format.md), never renamed or removed.
    ``required``: a reader refuses a sampling trace without it.
    ``optional``: recorded only under a condition (guidance, clipping, another library's scheduler);
    the rest is in every trace noisescope's own samplers (or trainer) write.
    ``integration``: recorded only by integrations with other libraries (tracer/integrations),
    whose steps cannot be replayed; noisescope's samplers do not yield it (x_prev: its own traces
    that skip steps record it too, tracer/trace/choice.py).
    ``skips``: recorded only in a trace that keeps every K-th step (``noisescope sample --every K``,
    K > 1; tracer/trace/choice.py), by the writer, not by a sampler.
    """

    series: str  # STEPS, TRAIN, SNAPSHOTS, EXAMPLES, SCHEDULE, or ROOT for a root dataset
    name: str
    dtype: str  # int64 | float64 | TENSOR
    shape: ShapeKind
    latex: str  # the symbol, for st.latex and markdown
    html: str  # the symbol as plotly-safe HTML
    display: Display
    meaning: str
    core: bool = False
    required: bool = False
    optional: bool = False
    integration: bool = False
    skips: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in FIELD_DTYPES or self.shape not in SHAPE_KINDS or self.display not in DISPLAYS:
            raise ValueError(f"field {self.path}: unknown dtype, shape kind or display class")
        if (self.dtype == TENSOR) != (self.shape in ("sample", "samples")):
            raise ValueError(f"field {self.path}: tensors, and only tensors, are sample-shaped")
        if self.required and self.optional:
            raise ValueError(f"field {self.path} cannot be both required and optional")
        if self.integration and not self.optional:
            raise ValueError(f"field {self.path}: what only integrations record is optional")
        if self.skips and not self.optional:
            raise ValueError(f"field {self.path}: what only a trace that skips steps records is optional")

    @property
    def path(self) -> str:
        """Its HDF5 path: ``series/name``, or ``name`` for a root dataset."""
        return field_path(self.series, self.name)

    @property
    def presence(self) -> str:
        """required, optional or always (the docs' column)."""
        return "required" if self.required else "optional" if self.optional else "always"


I64, F64 = "int64", "float64"
# Every recorded name, in the order of docs/trace-format.md (tests/trace/test_field_table.py compares them).
# A new name is one more row; the constants below follow from the table.
FIELDS: Final[tuple[Field, ...]] = (
    Field(SCHEDULE, "beta", F64, "scalar", r"\beta_t", "β<sub>t</sub>", "scalar", "beta_t", core=True, required=True),
    Field(SCHEDULE, "alpha", F64, "scalar", r"\alpha_t", "α<sub>t</sub>", "scalar", "1 - beta_t", core=True, required=True),
    Field(SCHEDULE, "alpha_bar", F64, "scalar", r"\bar\alpha_t", "ᾱ<sub>t</sub>", "scalar", "prod_{s<=t} alpha_s", core=True, required=True),
    # Sampling: steps, one row per reverse step, and the root datasets.
    Field(STEPS, "t", I64, "scalar", r"t", "t", "scalar", "model timestep of step i (0-based schedule index)", core=True, required=True),
    Field(STEPS, "t_prev", I64, "scalar", r"t_{\mathrm{prev}}", "t<sub>prev</sub>", "scalar",
       "timestep the step moves to, -1 for the clean end", core=True, required=True),
    Field(STEPS, "alpha_bar_t", F64, "scalar", r"\bar\alpha_t", "ᾱ<sub>t</sub>", "scalar", "alpha_bar the update used for x_t",
       core=True, required=True),
    Field(STEPS, "alpha_bar_prev", F64, "scalar", r"\bar\alpha_{t_{\mathrm{prev}}}", "ᾱ<sub>prev</sub>", "scalar",
       "alpha_bar the update used for the output", core=True, required=True),
    Field(STEPS, "alpha_t", F64, "scalar", r"\alpha_t", "α<sub>t</sub>", "scalar", "alpha_bar_t / alpha_bar_prev: the step's effective alpha"),
    Field(STEPS, "beta_t", F64, "scalar", r"\beta_t", "β<sub>t</sub>", "scalar", "1 - alpha_t"),
    Field(STEPS, "sigma", F64, "scalar", r"\sigma_t", "σ<sub>t</sub>", "scalar", "std of the noise the step adds", core=True),
    Field(STEPS, "x_t", TENSOR, "samples", r"x_t", "x<sub>t</sub>", "image", "input of step i", core=True, required=True),
    Field(STEPS, "eps", TENSOR, "samples", r"\epsilon_\theta", "ε<sub>θ</sub>", "noise", "noise prediction the update used (after guidance)",
       core=True),
    Field(STEPS, "eps_cond", TENSOR, "samples", r"\epsilon_\theta(x_t, c)", "ε<sub>θ</sub>(x<sub>t</sub>, c)", "noise",
       "conditional prediction, only when guidance is on", core=True, optional=True),
    Field(STEPS, "eps_uncond", TENSOR, "samples", r"\epsilon_\theta(x_t, \varnothing)", "ε<sub>θ</sub>(x<sub>t</sub>, ∅)", "noise",
       "unconditional (null-label) prediction, only when guidance is on", core=True, optional=True),
    Field(STEPS, "x0_pred", TENSOR, "samples", r"\hat x_0", "x̂<sub>0</sub>", "image", "predicted clean sample the update used", core=True),
    Field(STEPS, "x0_pred_raw", TENSOR, "samples", r"\hat x_0^{\mathrm{raw}}", "x̂<sub>0</sub> raw", "image",
       "x0_pred before clipping, only when clipping is on", core=True, optional=True),
    Field(STEPS, "noise", TENSOR, "samples", r"z", "z", "noise", "the z drawn at step i (zeros where sigma = 0)", core=True),
    # The network's raw output in its own prediction space (x0 or v; tracer/samplers/prediction.py), when it is not eps.
    Field(STEPS, "model_output", TENSOR, "samples", r"f_\theta(x_t, t)", "f<sub>θ</sub>(x<sub>t</sub>, t)", "noise",
       "the network output the update used (after guidance and its rescale) when it predicts x0 or v", optional=True),
    Field(STEPS, "model_output_cond", TENSOR, "samples", r"f_\theta(x_t, c)", "f<sub>θ</sub>(x<sub>t</sub>, c)", "noise",
       "the conditional output, when guidance is on and the network predicts x0 or v", optional=True),
    Field(STEPS, "model_output_uncond", TENSOR, "samples", r"f_\theta(x_t, \varnothing)", "f<sub>θ</sub>(x<sub>t</sub>, ∅)", "noise",
       "the unconditional output, when guidance is on and the network predicts x0 or v", optional=True),
    Field(STEPS, "model_output_cfg", TENSOR, "samples", r"f_{\mathrm{cfg}}", "f<sub>cfg</sub>", "noise",
       "the guided output before guidance rescale, when the rescale is on (in the network's prediction space)", optional=True),
    # Samplers in sigma space (Karras et al. 2022; tracer/samplers/karras.py): x = x0 + sigma eps, the network on x / sqrt(1 + sigma^2).
    Field(STEPS, "sigma_t", F64, "scalar", r"\sigma_i", "σ<sub>i</sub>", "scalar",
       "noise level of x_t in sigma space (x_t = x0 + sigma_t eps), sigma-space samplers only", optional=True),
    Field(STEPS, "sigma_next", F64, "scalar", r"\sigma_{i+1}", "σ<sub>i+1</sub>", "scalar",
       "noise level the step moves to (0: the clean end), sigma-space samplers only", optional=True),
    Field(STEPS, "t_model", F64, "scalar", r"t(\hat\sigma_i)", "t(σ̂<sub>i</sub>)", "scalar",
       "the timestep the network was called with: t of the noise level it was evaluated at, interpolated in log sigma "
       "over the schedule (fractional between indices; t is its nearest index), sigma-space samplers; a flow sampler's "
       "is t_flow T", optional=True),
    Field(STEPS, "sigma_hat", F64, "scalar", r"\hat\sigma_i", "σ̂<sub>i</sub>", "scalar",
       "the churned noise level sigma_t (1 + gamma) the network was evaluated at, only when churn is on", optional=True),
    Field(STEPS, "sigma_up", F64, "scalar", r"\sigma_{\uparrow}", "σ<sub>up</sub>", "scalar",
       "std of the fresh noise an ancestral step adds, before S_noise (Euler ancestral)", optional=True),
    Field(STEPS, "sigma_down", F64, "scalar", r"\sigma_{\downarrow}", "σ<sub>down</sub>", "scalar",
       "the noise level an ancestral step's Euler move goes down to (Euler ancestral)", optional=True),
    Field(STEPS, "h", F64, "scalar", r"h_i", "h<sub>i</sub>", "scalar",
       "log(sigma_t / sigma_next), the step in lambda = -log sigma (DPM-Solver++; inf at a last step to sigma 0)", optional=True),
    Field(STEPS, "r", F64, "scalar", r"r_i", "r<sub>i</sub>", "scalar",
       "h of the previous step / h: the ratio the second-order term uses (DPM-Solver++(2M); 0 where the step is first order)",
       optional=True),
    Field(STEPS, "x_hat", TENSOR, "samples", r"\hat x_i", "x̂<sub>i</sub>", "image",
       "x_t with churn noise added, where the network was evaluated (x_t + sqrt(sigma_hat^2 - sigma_t^2) S_noise z), only when churn is on",
       optional=True),
    Field(STEPS, "x_euler", TENSOR, "samples", r"x_{i+1}^{\mathrm{Euler}}", "x<sub>i+1</sub><sup>Euler</sup>", "image",
       "Heun: the Euler predictor's output, where the corrector evaluates the network (the output itself where sigma_next = 0; flow_heun corrects every step)",
       optional=True),
    Field(STEPS, "eps_2", TENSOR, "samples", r"\epsilon_\theta(x_{i+1}^{\mathrm{Euler}})", "ε<sub>θ</sub>(x<sub>i+1</sub><sup>Euler</sup>)",
       "noise", "Heun: the corrector's noise prediction at x_euler and sigma_next, or t_flow_next for flow_heun (zeros where the step is plain Euler)", optional=True),
    Field(STEPS, "x0_pred_2", TENSOR, "samples", r"\hat x_0^{(2)}", "x̂<sub>0</sub><sup>(2)</sup>", "image",
       "Heun: the corrector's predicted clean sample at x_euler and sigma_next, or t_flow_next for flow_heun (zeros where the step is plain Euler)", optional=True),
    Field(STEPS, "x0_pred_prev", TENSOR, "samples", r"\hat x_0^{(i-1)}", "x̂<sub>0</sub><sup>(i-1)</sup>", "image",
       "DPM-Solver++(2M): the previous step's x0_pred, which the update combines with this one's (zeros at the first step)",
       optional=True),
    # Flow samplers (tracer/samplers/flow.py): x_t = (1 - t) x0 + t eps of a flow-matching network; model_output is its velocity.
    Field(STEPS, "t_flow", F64, "scalar", r"t_i", "t<sub>i</sub>", "scalar",
       "flow time of x_t (x_t = (1 - t) x0 + t eps; 1: pure noise); alpha_bar_t is (1 - t)^2 / ((1 - t)^2 + t^2), the same SNR; "
       "flow samplers only", optional=True),
    Field(STEPS, "t_flow_next", F64, "scalar", r"t_{i+1}", "t<sub>i+1</sub>", "scalar",
       "the flow time the step moves to (0: the clean end), flow samplers only", optional=True),
    Field(ROOT, "samples", TENSOR, "samples", r"x_0", "x<sub>0</sub>", "image", "the final output: the output of the last step", core=True),
    Field(ROOT, "labels", I64, "batch", r"c", "c", "scalar", "class labels, -1 for unconditional", core=True),
    # Recorded only by integrations with other libraries, whose steps cannot be replayed.
    Field(STEPS, "x_prev", TENSOR, "samples", r"x_{t_{\mathrm{prev}}}", "x<sub>prev</sub>", "image",
       "the step's output (x_t of the next step); noisescope's samplers record it where the trace skips steps (--every K)",
       optional=True, integration=True),
    Field(STEPS, "eta", F64, "scalar", r"\eta", "η", "scalar", "DDIM's eta of each call (diffusers takes it per step() call)",
       optional=True, integration=True),
    # Written where a run keeps only every K-th step (noisescope sample --every K; tracer/trace/choice.py).
    Field(STEPS, "index", I64, "scalar", r"i", "i", "scalar",
       "the step's position in the sampling loop (0-based): row k of the trace is step index[k] of the run",
       optional=True, skips=True),
    # Training.
    Field(TRAIN, "step", I64, "scalar", r"\mathrm{step}", "step", "scalar", "optimizer steps done at this logged row"),
    Field(TRAIN, "epoch", I64, "scalar", r"\mathrm{epoch}", "epoch", "scalar", "epoch of that step"),
    Field(TRAIN, "loss", F64, "scalar", r"\mathcal{L}", "loss", "scalar", "mean epsilon MSE over the steps since the previous row"),
    Field(TRAIN, "lr", F64, "scalar", r"\mathrm{lr}", "lr", "scalar", "learning rate of the last step"),
    Field(TRAIN, "grad_norm", F64, "scalar", r"\lVert \nabla_\theta \mathcal{L} \rVert", "‖∇<sub>θ</sub>L‖", "scalar",
       "mean gradient norm before clipping over those steps"),
    Field(TRAIN, "loss_by_bucket", F64, "vector", r"\mathcal{L}_k", "loss<sub>k</sub>", "scalar",
       "mean loss per bucket of t; NaN where no t fell"),
    Field(SNAPSHOTS, "step", I64, "scalar", r"\mathrm{step}", "step", "scalar", "optimizer step of the snapshot"),
    Field(SNAPSHOTS, "samples", TENSOR, "samples", r"x_0", "x<sub>0</sub>", "image", "samples from the fixed x_T and labels, by the EMA model"),
    Field(EXAMPLES, "x0", TENSOR, "sample", r"x_0", "x<sub>0</sub>", "image", "a training image"),
    Field(EXAMPLES, "label", I64, "scalar", r"c", "c", "scalar", "its label (-1 when unconditional or dropped)"),
    Field(EXAMPLES, "t", I64, "scalar", r"t", "t", "scalar", "the timestep drawn"),
    Field(EXAMPLES, "eps", TENSOR, "sample", r"\epsilon", "ε", "noise", "the noise drawn"),
    Field(EXAMPLES, "x_t", TENSOR, "sample", r"x_t", "x<sub>t</sub>", "image", "sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps"),
    Field(EXAMPLES, "eps_pred", TENSOR, "sample", r"\epsilon_\theta", "ε<sub>θ</sub>", "noise",
       "the model's prediction (of an x0 or v network: the eps its output implies)"),
    Field(EXAMPLES, "loss", F64, "scalar", r"\mathcal{L}", "loss", "scalar",
       "mean (eps - eps_pred)^2 of that example (an x0 or v network: mean (model_output - target)^2)"),
    Field(EXAMPLES, "model_output", TENSOR, "sample", r"f_\theta", "f<sub>θ</sub>", "noise",
       "the network's output, when it predicts x0 or v (eps_pred then holds the eps it implies)", optional=True),
    Field(EXAMPLES, "target", TENSOR, "sample", r"y", "y", "noise",
       "what the network regresses on: x0, or v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0", optional=True),
    Field(ROOT, "snapshot_x_T", TENSOR, "samples", r"x_T", "x<sub>T</sub>", "image", "the fixed x_T every snapshot starts from"),
    Field(ROOT, "snapshot_labels", I64, "batch", r"c", "c", "scalar", "their labels (-1: unconditional)"),
)
_BY_PATH: Final[dict[tuple[str, str], Field]] = {(f.series, f.name): f for f in FIELDS}
_BY_NAME: Final[dict[str, Field]] = {f.name: f for f in reversed(FIELDS)}  # a name's first row
_NAMES: Final = tuple(dict.fromkeys(f.name for f in FIELDS))
if len(_BY_PATH) != len(FIELDS):
    raise ValueError("FIELDS names a field twice")


def field(series: str, name: str) -> Field:
    """The field ``series/name`` (series ROOT for a root dataset); KeyError if the schema has none."""
    try:
        return _BY_PATH[(series, name)]
    except KeyError:
        raise KeyError(f"the trace schema has no field {field_path(series, name)!r}") from None


def fields_of(series: str) -> tuple[Field, ...]:
    """The fields of one series (ROOT: the root datasets), in table order."""
    return tuple(f for f in FIELDS if f.series == series)


def names_of(series: str) -> tuple[str, ...]:
    """The names of one series' fields, in table order."""
    return tuple(f.name for f in fields_of(series))


def known(series: str, *names: str) -> tuple[str, ...]:
    """``names``, each checked to be a field of ``series`` (KeyError otherwise): for names a module lists by hand."""
    return tuple(field(series, name).name for name in names)


def named(name: str) -> Field | None:
    """The first field called ``name`` in table order (a name shared by series, as x_t, means one thing)."""
    return _BY_NAME.get(name)


def names() -> tuple[str, ...]:
    """Every field name, once, in table order."""
    return _NAMES


def symbol(name: str, series: str | None = None) -> str:
    """The LaTeX symbol of a name (of ``series/name`` when a series is given); KeyError for a name the schema lacks."""
    found = named(name) if series is None else field(series, name)
    if found is None:
        raise KeyError(f"the trace schema has no field {name!r}")
    return found.latex


def display_class(name: str) -> Display | None:
    """image, noise or scalar: how the viewer draws ``name``; None for a name that is not a field."""
    found = named(name)
    return None if found is None else found.display


def row_shape(f: Field, *, sample: tuple[int, ...] = (), batch: int = 0, vector: int = 0) -> tuple[int, ...]:
    """The shape of one row of ``f`` (its whole shape for a root dataset), given the run's sample shape and sizes."""
    return {"scalar": (), "vector": (vector,), "batch": (batch,), "sample": tuple(sample), "samples": (batch, *sample)}[f.shape]


def series_specs(series: str, *, sample: tuple[int, ...] = (), batch: int = 0, vector: int = 0,
                 optional: tuple[str, ...] = ()) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (row shape, dtype)}`` of every field of ``series`` but the optional ones not named in ``optional``,
    as a writer's Series takes them."""
    return {f.name: (row_shape(f, sample=sample, batch=batch, vector=vector), f.dtype) for f in fields_of(series)
            if not f.optional or f.name in optional}


_STEPS: Final = fields_of(STEPS)
# Scalars and tensors of noisescope's own samplers: a StepRecord has an attribute of each name.
STEP_SCALARS: Final[dict[str, str]] = {f.name: f.dtype for f in _STEPS if f.shape == "scalar" and not f.integration and not f.optional
                                        and not f.skips}
# Step scalars only some samplers record (the sigma-space ones'): a StepRecord holds None where its sampler does not.
OPTIONAL_STEP_SCALARS: Final[dict[str, str]] = {f.name: f.dtype for f in _STEPS if f.shape == "scalar" and not f.integration and f.optional
                                                 and not f.skips}
SAMPLER_STEP_TENSORS: Final = tuple(f.name for f in _STEPS if f.shape == "samples" and not f.integration)
STEP_TENSORS: Final = tuple(name for name in SAMPLER_STEP_TENSORS if not field(STEPS, name).optional)
OPTIONAL_STEP_TENSORS: Final = tuple(name for name in SAMPLER_STEP_TENSORS if field(STEPS, name).optional)
ALL_STEP_TENSORS: Final = tuple(f.name for f in _STEPS if f.shape == "samples")  # integrations' too
# Recorded by integrations with other libraries (tracer/integrations), whose steps cannot be replayed:
X_PREV: Final = field(STEPS, "x_prev").name  # [S, B, *D] the step's output (x_t of the next step)
MODEL_OUTPUT: Final = field(STEPS, "model_output").name  # [S, B, *D] the raw model output when it is not eps
ETA: Final = field(STEPS, "eta").name  # [S] float64, DDIM's eta of each call (diffusers takes it per step() call)
# Written where a run keeps every K-th step (tracer/trace/choice.py): [S] int64, the loop position of each row.
STEP_INDEX: Final = field(STEPS, "index").name
# Without these a sampling trace cannot be read as one (the reader refuses it); the rest may be missing,
# and `noisescope check` then says which equations it could not verify.
REQUIRED_STEP_FIELDS: Final = tuple(f.name for f in _STEPS if f.required)
SCHEDULE_FIELDS: Final = names_of(SCHEDULE)
ROOT_DATASETS: Final = names_of(ROOT)
SAMPLES: Final = field(ROOT, "samples").name
LABELS: Final = field(ROOT, "labels").name
NO_LABEL: Final = -1
SNAPSHOT_X_T: Final = field(ROOT, "snapshot_x_T").name  # [N, *D]: the fixed x_T every snapshot starts from
SNAPSHOT_LABELS: Final = field(ROOT, "snapshot_labels").name  # [N] int64: their labels (-1: unconditional)
ATTR_LOSS_BUCKET_EDGES: Final = "loss_bucket_edges"  # [K+1] int64: timestep bucket bounds of train/loss_by_bucket
ATTR_RESUMED_AT: Final = "resumed_at"  # training step this trace's run resumed from, -1 for a fresh run


def progress_path(series: str) -> str:
    return f"{PROGRESS}/{series}"


def field_path(series: str, name: str) -> str:
    """``series/name``; a root dataset (series ROOT) is just ``name``."""
    return f"{series}/{name}" if series else name
