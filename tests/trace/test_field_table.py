"""The field table (tracer/trace/schema.py, FIELDS): the docs' tables of datasets agree with it, and what derives from it does."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tracer.samplers.records import StepRecord
from tracer.trace import schema

DOCS = Path(__file__).resolve().parents[2] / "docs" / "trace-format.md"
PRESENCE = {"**required**": "required", "always": "always", "optional": "optional"}
BATCH_LETTERS = {"B", "N"}  # the batch of a sampling trace, the snapshot batch of a training trace
VECTOR_LETTERS = {"K"}  # loss buckets


@dataclasses.dataclass(frozen=True)
class DocRow:
    path: str
    core: bool
    dims: tuple[str, ...]
    dtype: str
    presence: str


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def doc_rows(text: str) -> list[DocRow]:
    """Every row of every markdown table with a "shape, dtype" column, but the live state (status, progress/*)."""
    rows: list[DocRow] = []
    lines = text.splitlines()
    for k, line in enumerate(lines):
        if not line.startswith("| name |") or "shape, dtype" not in _cells(line):
            continue
        header = _cells(line)
        for row in lines[k + 2 :]:
            if not row.startswith("|"):
                break
            cells = dict(zip(header, _cells(row), strict=True))
            found = re.fullmatch(r"`([^`]+)`( \*\*core\*\*)?", cells["name"])
            assert found, f"cannot read the name cell {cells['name']!r} in: {row}"
            path = found.group(1)
            if path == schema.STATUS or path.startswith(f"{schema.PROGRESS}/"):
                continue
            assert "present" in cells, f"the table of {path} has no present column"
            shape = re.fullmatch(r"`\[([^\]]*)\]`(?: (int64|float64))?", cells["shape, dtype"])
            assert shape, f"cannot read the shape cell {cells['shape, dtype']!r} of {path}"
            assert cells["present"] in PRESENCE, f"{path}: present is {cells['present']!r}, not one of {sorted(PRESENCE)}"
            rows.append(DocRow(path, found.group(2) is not None, tuple(d.strip() for d in shape.group(1).split(",")),
                               shape.group(2) or schema.TENSOR, PRESENCE[cells["present"]]))
    return rows


def shape_kind(row: DocRow) -> str:
    """The schema's shape kind of a documented shape: a series' first axis is its rows, a root dataset has none."""
    dims = row.dims[1:] if "/" in row.path else row.dims
    match dims:
        case ():
            return "scalar"
        case ("*D",):
            return "sample"
        case (letter,) if letter in VECTOR_LETTERS:
            return "vector"
        case (letter,) if letter in BATCH_LETTERS:
            return "batch"
        case (letter, "*D") if letter in BATCH_LETTERS:
            return "samples"
    raise AssertionError(f"{row.path}: no shape kind for [{','.join(row.dims)}]")


@pytest.fixture(scope="module")
def documented() -> list[DocRow]:
    return doc_rows(DOCS.read_text(encoding="utf-8"))


def test_the_docs_name_every_field_and_nothing_else(documented: list[DocRow]) -> None:
    in_docs = [row.path for row in documented]
    in_schema = [f.path for f in schema.FIELDS]
    assert len(set(in_docs)) == len(in_docs), "the docs list a name twice"
    assert not set(in_schema) - set(in_docs), f"in the schema but not in docs/trace-format.md: {sorted(set(in_schema) - set(in_docs))}"
    assert not set(in_docs) - set(in_schema), f"in docs/trace-format.md but not in the schema: {sorted(set(in_docs) - set(in_schema))}"
    assert in_docs == in_schema, "the docs list the fields in another order than FIELDS"


def test_the_docs_give_each_field_its_dtype_shape_core_mark_and_presence(documented: list[DocRow]) -> None:
    for row in documented:
        series, _, name = row.path.rpartition("/")
        f = schema.field(series, name)
        assert (row.dtype, shape_kind(row), row.core, row.presence) == (f.dtype, f.shape, f.core, f.presence), row.path


def test_the_parser_sees_a_disagreement() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert "| `steps/eta` | `[S]` float64 | optional |" in text
    rows = doc_rows(text.replace("| `steps/eta` | `[S]` float64 | optional |", "| `steps/eta` | `[S]` int64 | always |"))
    eta = next(row for row in rows if row.path == "steps/eta")
    assert (eta.dtype, eta.presence) == ("int64", "always")
    assert "steps/x_t" not in [row.path for row in doc_rows(text.replace("| `steps/x_t` **core** |", "| `steps/x_T` **core** |"))]


def test_the_step_constants_follow_from_the_table() -> None:
    steps = schema.fields_of(schema.STEPS)
    own = [f for f in steps if not f.integration and not f.skips]  # what a sampler yields (steps/index: the writer's, --every K)
    assert schema.STEP_SCALARS == {f.name: f.dtype for f in own if f.shape == "scalar" and not f.optional}
    assert schema.OPTIONAL_STEP_SCALARS == {f.name: f.dtype for f in own if f.shape == "scalar" and f.optional}
    assert schema.STEP_TENSORS == tuple(f.name for f in own if f.shape == "samples" and not f.optional)
    assert schema.OPTIONAL_STEP_TENSORS == tuple(f.name for f in own if f.shape == "samples" and f.optional)
    assert schema.REQUIRED_STEP_FIELDS == tuple(f.name for f in steps if f.required)
    assert set(schema.ALL_STEP_TENSORS) == {*schema.STEP_TENSORS, *schema.OPTIONAL_STEP_TENSORS, schema.X_PREV}
    assert schema.SCHEDULE_FIELDS == ("beta", "alpha", "alpha_bar")
    assert schema.ROOT_DATASETS == (schema.SAMPLES, schema.LABELS, schema.SNAPSHOT_X_T, schema.SNAPSHOT_LABELS)
    assert {schema.X_PREV, schema.ETA} == {f.name for f in steps if f.integration}
    assert {schema.STEP_INDEX} == {f.name for f in steps if f.skips}
    # The values the rest of the code was written against.
    assert schema.STEP_TENSORS == ("x_t", "eps", "x0_pred", "noise")
    assert schema.OPTIONAL_STEP_TENSORS == ("eps_cond", "eps_uncond", "x0_pred_raw", "model_output", "model_output_cond",
                                            "model_output_uncond", "model_output_cfg", "x_hat", "x_euler", "eps_2", "x0_pred_2",
                                            "x0_pred_prev")
    assert list(schema.OPTIONAL_STEP_SCALARS) == ["sigma_t", "sigma_next", "t_model", "sigma_hat", "sigma_up", "sigma_down", "h", "r",
                                                  "t_flow", "t_flow_next"]
    assert schema.REQUIRED_STEP_FIELDS == ("t", "t_prev", "alpha_bar_t", "alpha_bar_prev", "x_t")
    assert list(schema.STEP_SCALARS) == ["t", "t_prev", "alpha_bar_t", "alpha_bar_prev", "alpha_t", "beta_t", "sigma"]


def test_a_step_record_carries_every_field_of_noisescopes_samplers() -> None:
    record = {f.name for f in dataclasses.fields(StepRecord)} - {"index", "x_prev"}  # x_prev: the next row's x_t
    assert record == {*schema.STEP_SCALARS, *schema.OPTIONAL_STEP_SCALARS, *schema.SAMPLER_STEP_TENSORS}


def test_every_field_has_a_symbol_and_one_of_three_display_classes() -> None:
    for f in schema.FIELDS:
        assert f.display in ("image", "noise", "scalar"), f.path
        assert f.latex and f.html and f.meaning, f.path
        assert (f.display == "scalar") == (f.dtype != schema.TENSOR), f.path
        assert schema.symbol(f.name, f.series) == f.latex
    for name in schema.names():
        shared = {f.display for f in schema.FIELDS if f.name == name}
        assert shared == {schema.display_class(name)}, f"{name} is drawn two ways: {shared}"
        assert schema.symbol(name) == schema.named(name).latex  # type: ignore[union-attr]
    assert schema.display_class("eps") == "noise" and schema.display_class("x0_pred") == "image" and schema.display_class("t") == "scalar"
    assert schema.display_class("log_snr") is None
    assert schema.symbol("eps", schema.EXAMPLES) == r"\epsilon"  # the noise drawn, not the model's prediction


def test_lookups_refuse_what_the_schema_lacks() -> None:
    assert schema.field(schema.ROOT, "samples").path == "samples"
    assert schema.field(schema.STEPS, "x_t").path == "steps/x_t"
    assert schema.known(schema.TRAIN, "loss", "lr") == ("loss", "lr")
    with pytest.raises(KeyError, match="steps/x_T"):
        schema.field(schema.STEPS, "x_T")
    with pytest.raises(KeyError):
        schema.known(schema.STEPS, "x_t", "eps_pred")
    with pytest.raises(KeyError):
        schema.symbol("log_snr")


def test_a_row_is_checked_when_the_table_is_built() -> None:
    ok = schema.field(schema.STEPS, "x_t")
    with pytest.raises(ValueError):
        dataclasses.replace(ok, dtype="float64")  # a sample-shaped field is a tensor
    with pytest.raises(ValueError):
        dataclasses.replace(ok, display="colour")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        dataclasses.replace(ok, optional=True)  # required and optional
    with pytest.raises(ValueError):
        dataclasses.replace(schema.field(schema.STEPS, "eps"), integration=True)  # only integrations record it, yet always there


def test_series_specs_give_the_writer_the_table_in_order() -> None:
    specs = schema.series_specs(schema.EXAMPLES, sample=(3, 8, 8))
    assert list(specs) == ["x0", "label", "t", "eps", "x_t", "eps_pred", "loss"]
    assert specs["x0"] == ((3, 8, 8), schema.TENSOR) and specs["label"] == ((), "int64") and specs["loss"] == ((), "float64")
    assert schema.series_specs(schema.TRAIN, vector=5)["loss_by_bucket"] == ((5,), "float64")
    assert schema.series_specs(schema.SNAPSHOTS, sample=(2,), batch=4)["samples"] == ((4, 2), schema.TENSOR)


def test_the_viewer_takes_labels_and_colour_classes_from_the_table() -> None:
    from viewer import symbols
    from viewer.figures.images import DIVERGING, GREY, NOISE_LIKE, colours_for
    from viewer.playback_view import IMAGE_TENSORS, Display

    for name in schema.names():
        assert symbols.LATEX[name] == schema.symbol(name)
        assert symbols.HTML[name] == schema.named(name).html  # type: ignore[union-attr]
        assert colours_for(name) is (DIVERGING if schema.display_class(name) == "noise" else GREY)
    assert not set(symbols.VIEWER_LATEX) & set(schema.names())  # the viewer's own names are not trace fields
    noise_derived = {name for name, d in symbols.DERIVED.items() if d.noise_like}
    assert NOISE_LIKE == {name for name in schema.names() if schema.display_class(name) == "noise"} | noise_derived | {"difference"}
    assert not set(symbols.DERIVED) & set(schema.names())  # derived names are the viewer's, not trace fields
    assert all(set(d.terms) <= set(schema.names_of(schema.STEPS)) for d in symbols.DERIVED.values())  # made of step tensors
    assert all(schema.field(schema.STEPS, s).shape == "scalar" for d in symbols.DERIVED.values() for s in d.scalars)  # and step scalars
    assert IMAGE_TENSORS == ("x_t", "eps", "eps_cond", "eps_uncond", "x0_pred", "x0_pred_raw", "noise", "model_output",
                             "model_output_cond", "model_output_uncond", "model_output_cfg", "x_hat", "x_euler", "eps_2", "x0_pred_2",
                             "x0_pred_prev")
    assert Display().tensors == schema.STEP_TENSORS


def test_the_diffusers_adapter_writes_the_schemas_step_scalars() -> None:
    from tracer.integrations.diffusers import StepScalars

    assert list(StepScalars(10, 5, 0.5, 0.6, 0.1).row()) == list(schema.STEP_SCALARS)
