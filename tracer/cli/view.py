"""``noisescope view [PATH ...]``: start the Streamlit viewer on traces (files or folders of traces) and print its URL.

Only traces under the given paths can be opened (viewer/paths.py): they are passed
to the app after ``--`` and in $NOISESCOPE_VIEW_ROOTS. The server listens on
127.0.0.1:8501 unless ``--host``/``--port`` say otherwise. ``launch`` is also what
``noisescope demo`` calls.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parents[2] / "viewer" / "app.py"
ROOTS_ENV = "NOISESCOPE_VIEW_ROOTS"  # the same name as viewer.paths.ROOTS_ENV (not imported: the CLI stays light)

EPILOG = """examples:
  noisescope view runs/                       every trace under runs/
  noisescope view ddpm.h5 ddim.h5 --port 8600
  noisescope view runs/ --host 0.0.0.0        listen on every interface (trusted networks only)
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "view",
        help="open traces in the step-by-step viewer (Streamlit)",
        description="Start the viewer on the given trace files or folders of traces and print its URL. "
        "Only traces under these paths can be opened.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", type=Path, default=[Path(".")], help="trace files or folders (default: the current folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    p.add_argument("--open", dest="open_browser", action="store_true", help="open the URL in a web browser")
    p.set_defaults(run=run)


def check_paths(paths: Sequence[Path]) -> list[Path]:
    """The paths, resolved; raises FileNotFoundError (one line) for the first that does not exist."""
    resolved = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        resolved.append(path.resolve())
    return resolved


def url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    return f"http://{shown}:{port}"


def command(paths: Sequence[Path], host: str, port: int) -> list[str]:
    """The Streamlit command line that serves the viewer on these roots."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
        "--",
        *[str(p) for p in paths],
    ]


def launch(
    paths: Sequence[str | os.PathLike[str]],
    host: str = "127.0.0.1",
    port: int = 8501,
    open_browser: bool = False,
    wait: bool = True,
) -> subprocess.Popen[bytes] | int:
    """Start the viewer; with ``wait`` block until it exits and return its exit code, else return the process.

    Raises FileNotFoundError if a path does not exist and ValueError for a bad port.
    """
    if not 0 < port < 65536:
        raise ValueError(f"--port must lie in 1..65535, got {port}")
    roots = check_paths([Path(p) for p in paths])
    env = {**os.environ, ROOTS_ENV: os.pathsep.join(str(r) for r in roots)}
    process = subprocess.Popen(command(roots, host, port), env=env)
    address = url(host, port)
    print(f"noisescope viewer: {address}  (traces under {', '.join(str(r) for r in roots)}; Ctrl-C to stop)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(address)
    if not wait:
        return process
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        raise


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; a missing path is one line on stderr and exit code 2 (tracer.cli.main)."""
    code = launch(args.paths, host=args.host, port=args.port, open_browser=args.open_browser, wait=True)
    return int(code) if isinstance(code, int) else 0
