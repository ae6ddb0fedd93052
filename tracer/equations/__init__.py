"""The equation registry: the equations the engine implements, their code, and their checks.

- ``equation``: ``Equation``, one entry: what the viewer shows and how check verifies it.
- ``registry``: ``EQUATIONS``, the shared ones and every sampler's (LaTeX, paper reference, implementing function,
  trace names), ``equations_for(trace)``, ``tolerance_for(trace)``.
- ``source``: ``implementation_source(eq)``, the implementing function's real source, read with ast.
- ``checks``: independent float64 NumPy checks of each equation over recorded tensors.
- ``structure``: structural checks (the steps chain up and use the schedule's values).
- ``evaluate``: every check at every step; ``failing_steps(trace)``; ``unchecked_for(trace)``.
- ``identify``: the update a trace that names no sampler follows, and what the checks leave unverified.
- ``findings``: ``trace_findings(trace)``, diagnoses of a sampling trace (noise left, terminal SNR, ...) as sentences.

Importing this package imports neither torch nor the samplers (the viewer relies on it).
docs/equations.md lists every equation.
"""

from tracer.equations.context import SCALAR_TOLERANCE, TENSOR_TOLERANCES, Residual, TraceFacts, TraceView
from tracer.equations.evaluate import ALL_CHECKS, CHECK_IDS, Evaluation, checks_for, evaluate, failing_steps, unchecked_for
from tracer.equations.equation import Equation
from tracer.equations.findings import KINDS as FINDING_KINDS, Finding, trace_findings
from tracer.equations.registry import EQUATION_IDS, EQUATIONS, equations_for, tolerance_for
from tracer.equations.source import SourceView, implementation_source, source_of
from tracer.equations.structure import STRUCTURAL_CHECKS, StructuralCheck

__all__ = [
    "ALL_CHECKS",
    "CHECK_IDS",
    "EQUATIONS",
    "EQUATION_IDS",
    "SCALAR_TOLERANCE",
    "STRUCTURAL_CHECKS",
    "TENSOR_TOLERANCES",
    "Equation",
    "Evaluation",
    "FINDING_KINDS",
    "Finding",
    "Residual",
    "SourceView",
    "StructuralCheck",
    "TraceFacts",
    "TraceView",
    "checks_for",
    "equations_for",
    "evaluate",
    "failing_steps",
    "implementation_source",
    "source_of",
    "tolerance_for",
    "trace_findings",
    "unchecked_for",
]
