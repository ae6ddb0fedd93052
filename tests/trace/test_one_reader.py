"""One reader, one way to read: no product module opens a trace's HDF5 objects but the reader (and the writer).

Once, check and the viewer opened second handles to datasets the reader held and refreshed them,
and every row of a live trace then read as row 0.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWNERS = {ROOT / "tracer" / "trace" / "reader.py", ROOT / "tracer" / "trace" / "writer.py"}


def product_modules() -> list[Path]:
    return sorted(p for folder in ("tracer", "viewer") for p in (ROOT / folder).rglob("*.py"))  # benchmarks time plain h5py on purpose


def test_only_the_reader_and_the_writer_import_h5py() -> None:
    offenders = []
    for path in product_modules():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "h5py" for name in names) and path not in OWNERS:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], offenders
    assert len(product_modules()) > 40  # the scan saw the tree


def test_no_module_reaches_into_a_trace_file() -> None:
    """``Trace.file`` (the raw h5py file) is for tests of the layout only."""
    offenders = []
    for path in product_modules():
        if path in OWNERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "file" and isinstance(node.value, (ast.Name, ast.Attribute)):
                owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
                if "trace" in owner.lower():
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], offenders
