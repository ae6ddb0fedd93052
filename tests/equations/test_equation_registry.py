"""The registry's API as the viewer uses it: equations, their source read without importing, values, applicability."""

from __future__ import annotations

import ast
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.equations.traces import record
from tracer.samplers.config import SamplerConfig
from tracer.equations import EQUATIONS, Equation, equations_for, implementation_source, source_of, tolerance_for
from tracer.equations.equation import num
from tracer.trace.reader import open_trace

ROOT = Path(__file__).resolve().parents[2]

# Issue 5, point 1: at least these equations.
REQUIRED = {
    "schedule.alpha", "schedule.alpha_bar", "forward.q_sample", "loss.eps", "x0_from_eps", "ddpm.posterior_mean",
    "ddpm.posterior_variance", "ddpm.step", "ddim.sigma", "ddim.step", "guidance.combine",
}


def by_id(eq_id: str) -> Equation:
    return next(eq for eq in EQUATIONS if eq.id == eq_id)


def test_every_required_equation_is_registered_once_with_its_fields() -> None:
    ids = [eq.id for eq in EQUATIONS]
    assert len(ids) == len(set(ids))
    assert REQUIRED <= set(ids)
    for eq in EQUATIONS:
        assert eq.title and eq.latex and eq.names
        assert re.search(r"(Eq|Alg|Sec)\. \d", eq.reference), eq.reference  # paper + equation/algorithm number
        assert eq.implementation.startswith("tracer.")
        assert isinstance(eq.names, tuple) and all(isinstance(n, str) for n in eq.names)


@pytest.mark.parametrize("eq", EQUATIONS, ids=lambda eq: eq.id)
def test_implementation_source_is_the_real_function_with_its_computing_lines(eq: Equation) -> None:
    view = implementation_source(eq)
    path = Path(view.path)
    assert path.is_file() and ROOT / "tracer" in path.parents
    file_lines = path.read_text().splitlines()
    # The lines are the file's, from first_line (1-based) on: the source shown cannot drift from the code.
    assert view.lines == file_lines[view.first_line - 1 : view.first_line - 1 + len(view.lines)]
    name = eq.implementation.rsplit(".", 1)[1]
    assert view.lines[0].lstrip().startswith(f"def {name}(")
    function = ast.parse(textwrap.dedent("\n".join(view.lines))).body[0]
    assert isinstance(function, ast.FunctionDef) and function.name == name  # the whole function, nothing more
    assert view.highlight and all(0 <= k < len(view.lines) for k in view.highlight)
    assert any(view.lines[k].lstrip().startswith("return") for k in view.highlight)
    docstring = ast.get_docstring(function) or ""
    assert not any(docstring and docstring.splitlines()[0] in view.lines[k] for k in view.highlight)  # not the docstring


def test_source_of_finds_methods_and_refuses_what_is_not_a_function() -> None:
    view = source_of("tracer.training.Trainer.loss_per_sample")
    assert view.lines[0].strip().startswith("def loss_per_sample(")
    for bad in ("tracer.samplers.ddim.no_such_function", "tracer.no_such_module.f", "numpy.sqrt", "tracer.samplers.ddim"):
        with pytest.raises(ValueError):
            source_of(bad)


def test_the_registry_and_its_sources_load_without_torch_or_the_sampling_loop() -> None:
    # The sampler modules (their equations) load with the registry; the loop, guidance and torch never do.
    code = (
        "import sys\n"
        "from tracer.equations import EQUATIONS, implementation_source\n"
        "for eq in EQUATIONS: implementation_source(eq)\n"
        "import tracer.check\n"
        "bad = [m for m in ('torch', 'tracer.samplers.loop', 'tracer.samplers.guidance', 'tracer.training') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert 'tracer.samplers.ddim' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_values_latex_substitutes_the_steps_scalars() -> None:
    x0 = by_id("x0_from_eps").values_latex({"t": 7, "alpha_bar_t": 0.36})
    assert "x_{7}" in x0 and "0.8" in x0 and "0.6" in x0  # sqrt(1 - 0.36) = 0.8, sqrt(0.36) = 0.6
    step = by_id("ddim.step").values_latex({"t": 9, "t_prev": 4, "alpha_bar_prev": 0.64, "sigma": 0.36})
    # sqrt(0.64) = 0.8, sqrt(1 - 0.64 - 0.36^2) = 0.48
    assert "x_{4}" in step and "0.8\\," in step and "0.48" in step and "0.36" in step
    sigma = by_id("ddim.sigma").values_latex({"t": 3, "alpha_bar_t": 0.5, "alpha_bar_prev": 0.8, "sigma": 0.25})
    assert num_in(sigma, math.sqrt(0.2 / 0.5) * math.sqrt(1 - 0.5 / 0.8))
    tiny = by_id("schedule.alpha_bar").values_latex({"t": 299, "alpha_bar_t": 1.5e-7})
    assert r"1.5\times 10^{-7}" in tiny


def num_in(text: str, value: float) -> bool:
    return f"{value:.4g}" in text


@pytest.mark.parametrize("eq", EQUATIONS, ids=lambda eq: eq.id)
def test_values_latex_falls_back_to_symbols_without_scalars(eq: Equation) -> None:
    assert eq.values_latex({})  # no KeyError: symbols where a number is missing


def test_equations_for_follow_sampler_guidance_clipping(tmp_path: Path) -> None:
    ddpm = record(tmp_path / "ddpm.h5", SamplerConfig(sampler="ddpm", guidance=3.0))
    ddim = record(tmp_path / "ddim.h5", SamplerConfig(sampler="ddim", steps=8))
    ddim_clip = record(tmp_path / "ddim_clip.h5", SamplerConfig(sampler="ddim", steps=8, clip=True, eta=0.5))
    with open_trace(ddpm) as trace:
        assert [eq.id for eq in equations_for(trace)] == [
            "schedule.alpha", "schedule.alpha_bar", "guidance.combine", "x0_from_eps", "x0.clip",
            "ddpm.posterior_mean", "ddpm.posterior_variance", "ddpm.step",
        ]
    with open_trace(ddim) as trace:
        assert [eq.id for eq in equations_for(trace)] == ["schedule.alpha", "schedule.alpha_bar", "x0_from_eps", "ddim.sigma", "ddim.step"]
    with open_trace(ddim_clip) as trace:
        assert "x0.clip" in [eq.id for eq in equations_for(trace)]


def test_tolerance_follows_the_tensor_dtype(tmp_path: Path) -> None:
    with open_trace(record(tmp_path / "a.h5", SamplerConfig(steps=5))) as f32, open_trace(record(tmp_path / "b.h5", SamplerConfig(steps=5), dtype="float16")) as f16:
        assert tolerance_for(f32) == 1e-5 and tolerance_for(f16) == 1e-2
        # float16 rounds at 2^-11 of a value, float32 at 2^-24: each tolerance sits above its rounding
        assert tolerance_for(f16) > 2.0**-11 and tolerance_for(f32) > 2.0**-24 * 8


def test_residual_is_none_where_the_equation_does_not_apply(tmp_path: Path) -> None:
    with open_trace(record(tmp_path / "ddim.h5", SamplerConfig(steps=5))) as trace:
        assert by_id("ddpm.step").residual(trace, 0) is None
        assert by_id("ddim.step").residual(trace, 99) is None
        residual = by_id("ddim.step").residual(trace, 2)
        assert residual is not None and 0 <= residual < tolerance_for(trace)


def test_docs_list_every_equation_with_its_latex_reference_and_code() -> None:
    text = (ROOT / "docs" / "equations.md").read_text()
    for eq in EQUATIONS:
        assert f"`{eq.id}`" in text and eq.latex in text and eq.reference in text and f"`{eq.implementation}`" in text
    from tracer.equations import STRUCTURAL_CHECKS

    assert all(f"`{check.id}`" in text for check in STRUCTURAL_CHECKS)


@pytest.mark.parametrize(("value", "text"), [
    (0.99997, "0.99997"), (1.0, "1"), (0.36, "0.36"), (0.12345, "0.1235"), (-0.99996, "-0.99996"),
    (0.5000301, "0.50003"), (12345.6, r"1.235\times 10^{4}"), (1.00001e-7, r"1.00001\times 10^{-7}"),
    (float(np.float32(0.1)), "0.1"),  # float32 noise below 1e-7 relative is not shown
])
def test_num_keeps_the_digits_that_tell_a_value_from_its_rounding(value: float, text: str) -> None:
    assert num(value) == text


def test_num_of_a_value_that_rounds_to_1_at_4_digits_shows_that_it_is_not_1() -> None:
    for value in (0.99995, 0.999991, 1.00004, 0.9999999):
        assert num(value) != "1" and abs(float(num(value)) - value) < abs(1.0 - value)


def test_values_latex_of_a_last_step_reads_x_0_and_explains_t_prev_minus_1_once() -> None:
    for eq_id, scalars in (("ddim.step", {"t": 0, "t_prev": -1, "alpha_bar_prev": 1.0, "sigma": 0.0}),
                           ("ddpm.step", {"t": 0, "t_prev": -1, "sigma": 0.0})):
        text = by_id(eq_id).values_latex(scalars)
        assert text.startswith("x_0 = ") and "x_{-1}" not in text
        assert text.count("-1") == 1 and "clean sample" in text
    middle = by_id("ddim.step").values_latex({"t": 9, "t_prev": 4, "alpha_bar_prev": 0.64, "sigma": 0.36})
    assert middle.startswith("x_{4} = ") and "clean" not in middle


def test_every_equation_has_a_title_in_symbols() -> None:
    for eq in EQUATIONS:
        assert eq.title_latex and "=" not in eq.title_latex
