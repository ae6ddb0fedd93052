"""The viewer starts fast without torch: importing and running the app in bare mode never imports it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.viewer.conftest import Traces
from viewer.paths import ROOTS_ENV

ROOT = Path(__file__).resolve().parents[2]


def test_the_app_runs_a_whole_page_without_importing_torch(traces: Traces) -> None:
    env = {**os.environ, ROOTS_ENV: str(traces.root), "PYTHONPATH": str(ROOT)}
    # Bare mode runs app.py top to bottom: listing, the registry, a playback page with its figures and equations.
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import viewer.app"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "viewer.loaders" in imported and "viewer.equations_panel" in imported and "plotly.graph_objects" in imported
    assert "tracer.equations.registry" in imported  # the registry is imported too, and it does not pull torch in
    assert not [name for name in imported if name == "torch" or name.startswith("torch.")]


def test_the_cli_view_module_imports_neither_torch_nor_streamlit() -> None:
    code = "import sys, tracer.cli.view; print(any(m == 'torch' or m == 'streamlit' for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr[-2000:]
