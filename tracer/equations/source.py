"""The source of the function that implements an equation, read from its file, never imported.

``implementation_source(eq)`` finds ``eq.implementation`` (a dotted path such as
``tracer.samplers.ddim.ddim_step`` or ``tracer.training.Trainer.loss_per_sample``) under the
directory of the ``tracer`` package, parses the file with ``ast`` and returns the function's
lines as they are in the file, with the lines that compute (assignments and returns) marked.
Nothing is executed, so the viewer shows real source without importing torch, and the
source shown cannot drift from the code that runs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the tracer package
PACKAGE = PACKAGE_DIR.name

COMPUTING = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return)


@dataclass(frozen=True)
class SourceView:
    """A function's source: its file, the 1-based line it starts on, its lines, and the computing lines."""

    path: str
    first_line: int
    lines: list[str]
    highlight: set[int] = field(default_factory=set)  # 0-based indexes into lines


def _module_file(parts: list[str]) -> tuple[Path, list[str]]:
    """The longest prefix of ``parts`` that names a module file under the package, and the rest (the qualname)."""
    if not parts or parts[0] != PACKAGE:
        raise ValueError(f"{'.'.join(parts)!r} is not inside the {PACKAGE} package")
    for k in range(len(parts), 0, -1):
        base = PACKAGE_DIR.joinpath(*parts[1:k])
        for candidate in (base.with_suffix(".py") if k > 1 else None, base / "__init__.py"):
            if candidate is not None and candidate.is_file():
                return candidate, parts[k:]
    raise ValueError(f"no module file for {'.'.join(parts)!r}")


def _find(tree: ast.Module, qualname: list[str]) -> ast.FunctionDef | ast.AsyncFunctionDef:
    body: list[ast.stmt] = tree.body
    node: Any = None
    for name in qualname:
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name), None)
        if node is None:
            raise ValueError(f"{'.'.join(qualname)!r}: no {name!r} in the file")
        body = node.body
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise ValueError(f"{'.'.join(qualname)!r} is not a function")
    return node


def _computing_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[int]:
    """1-based file lines of the assignments and returns in the function's body (nested functions excluded)."""
    lines: set[int] = set()
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, COMPUTING) and (not isinstance(node, ast.Return) or node.value is not None):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        stack.extend(ast.iter_child_nodes(node))
    return lines


@lru_cache(maxsize=64)
def _source(path: Path, mtime_ns: int, qualname: tuple[str, ...]) -> SourceView:
    text = path.read_text(encoding="utf-8")
    function = _find(ast.parse(text, filename=str(path)), list(qualname))
    start = min([function.lineno, *(d.lineno for d in function.decorator_list)])
    end = function.end_lineno or function.lineno
    lines = text.splitlines()[start - 1 : end]
    highlight = {line - start for line in _computing_lines(function)}
    return SourceView(path=str(path), first_line=start, lines=lines, highlight=highlight)


def source_of(dotted: str) -> SourceView:
    """The source of the function at ``dotted`` (``tracer.module.function`` or ``tracer.module.Class.method``)."""
    path, qualname = _module_file(dotted.split("."))
    if not qualname:
        raise ValueError(f"{dotted!r} names a module, not a function")
    view = _source(path, path.stat().st_mtime_ns, tuple(qualname))
    # A copy: callers may not alter the cached view.
    return SourceView(view.path, view.first_line, list(view.lines), set(view.highlight))


def implementation_source(eq: Any) -> SourceView:
    """The source of the function that implements ``eq`` (an Equation: its ``implementation`` dotted path)."""
    return source_of(str(eq.implementation))
