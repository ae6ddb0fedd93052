"""The trace file layout: the one place its names, shapes and dtypes are spelled.

A trace is one HDF5 file. docs/trace-format.md documents every name here; the
stable core (docs/trace-format.md) is a public contract: add names freely, never rename.

Layout, for a sampling trace with S steps, batch B and sample shape D:

    /                       attrs: format, schema_version, kind, config, created, versions, ...
    /status                 scalar S16 dataset: running | complete | failed (live under SWMR)
    /progress/<series>      scalar int64 dataset: rows of <series> committed so far
    /progress/final         scalar int64 dataset: 1 once samples and labels are written
    /schedule/{beta,alpha,alpha_bar}            [T] float64
    /steps/<scalar>         [S]        (STEP_SCALARS)
    /steps/<tensor>         [S, B, *D] (STEP_TENSORS, OPTIONAL_STEP_TENSORS), chunked one step a chunk
    /samples                [B, *D]    the final output
    /labels                 [B] int64  class labels, -1 for unconditional

A training trace has the series train, snapshots and examples instead of steps,
and the root datasets snapshot_x_T and snapshot_labels (see below).

Attributes cannot change while a file is in SWMR mode, so the live state
(status, committed rows) lives in small datasets that the writer overwrites.
"""

from __future__ import annotations

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

STATUS: Final = "status"
PROGRESS: Final = "progress"
FINAL: Final = "final"  # progress/final: 1 once the root datasets (samples, labels) are written

SCHEDULE: Final = "schedule"
SCHEDULE_FIELDS: Final = ("beta", "alpha", "alpha_bar")

# Sampling: one row of the series "steps" per reverse step.
STEPS: Final = "steps"
STEP_SCALARS: Final[dict[str, str]] = {
    "t": "int64",  # model timestep (0-based schedule index)
    "t_prev": "int64",  # timestep the step moves to, -1 for the clean end
    "alpha_bar_t": "float64",
    "alpha_bar_prev": "float64",
    "alpha_t": "float64",  # alpha_bar_t / alpha_bar_prev: the step's effective alpha
    "beta_t": "float64",  # 1 - alpha_t
    "sigma": "float64",  # std of the noise the step adds
}
STEP_TENSORS: Final = ("x_t", "eps", "x0_pred", "noise")
OPTIONAL_STEP_TENSORS: Final = ("eps_cond", "eps_uncond", "x0_pred_raw")
# Recorded by integrations with other libraries (tracer/integrations), whose steps cannot be replayed:
X_PREV: Final = "x_prev"  # [S, B, *D] the step's output (x_t of the next step)
MODEL_OUTPUT: Final = "model_output"  # [S, B, *D] the raw model output when it is not eps (v or x0 prediction)
ETA: Final = "eta"  # [S] float64, DDIM's eta of each call (diffusers takes it per step() call)
# Without these a sampling trace cannot be read as one (the reader refuses it); the rest may be missing,
# and `noisescope check` then says which equations it could not verify.
REQUIRED_STEP_FIELDS: Final = ("t", "t_prev", "alpha_bar_t", "alpha_bar_prev", "x_t")
SAMPLES: Final = "samples"
LABELS: Final = "labels"
NO_LABEL: Final = -1

# Training: series "train" (one row per logged step), "snapshots" (samples from a
# fixed x_T every k steps) and "examples" (worked examples of the loss, written once).
TRAIN: Final = "train"
SNAPSHOTS: Final = "snapshots"
EXAMPLES: Final = "examples"
SNAPSHOT_X_T: Final = "snapshot_x_T"  # [N, *D] root dataset: the fixed x_T every snapshot starts from
SNAPSHOT_LABELS: Final = "snapshot_labels"  # [N] int64 root dataset: their labels (-1: unconditional)
ATTR_LOSS_BUCKET_EDGES: Final = "loss_bucket_edges"  # [K+1] int64: timestep bucket bounds of train/loss_by_bucket
ATTR_RESUMED_AT: Final = "resumed_at"  # training step this trace's run resumed from, -1 for a fresh run

TENSOR: Final = "tensor"  # field dtype placeholder: float32 or float16 per the trace's tensor_dtype
TENSOR_DTYPES: Final = ("float32", "float16")


def progress_path(series: str) -> str:
    return f"{PROGRESS}/{series}"


def field_path(series: str, field: str) -> str:
    return f"{series}/{field}"
