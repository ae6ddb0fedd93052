"""``noisescope view [PATH ...]``: start the Streamlit viewer on traces (files or folders of traces) and print its URL.

Only traces under the given paths can be opened (viewer/paths.py): they are passed
to the app after ``--`` and in $NOISESCOPE_VIEW_ROOTS. The server listens on
127.0.0.1:8501 unless ``--host``/``--port`` say otherwise; a host that cannot be listened
on, or a port already taken, is refused (one line, exit code 2) before Streamlit starts.
Streamlit runs in its own process group, and SIGINT, SIGTERM or SIGHUP to ``noisescope view``
stops that whole group before it exits: no server is left behind on the port.
``launch`` is also what ``noisescope demo`` calls.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from tracer.cli.common import check_port_free, nonempty_path, port

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
    p.add_argument("paths", nargs="*", type=nonempty_path, default=[Path(".")], help="trace files or folders (default: the current folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=8501, help="port to listen on, 1..65535 (default 8501; it must be free)")
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


def command(paths: Sequence[Path], host: str, port: int, app: Path = APP) -> list[str]:
    """The Streamlit command line that serves the viewer (``app``: another script, served the same way) on these roots."""
    return [
        sys.executable, "-m", "viewer.serve", "run", str(app),  # Streamlit, its first page's imports done first
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
        "--",
        *[str(p) for p in paths],
    ]


# SIGHUP too: the server has its own session, so a closed terminal reaches it only through us.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop the server's whole process group (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:  # the group is gone already
            pass
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def launch(
    paths: Sequence[str | os.PathLike[str]],
    host: str = "127.0.0.1",
    port: int = 8501,
    open_browser: bool = False,
    wait: bool = True,
) -> subprocess.Popen[bytes] | int:
    """Start the viewer; with ``wait`` serve until it exits or a signal comes and return its exit code, else return the process.

    Raises FileNotFoundError if a path does not exist, ValueError for a bad port, and
    ConfigError for a host that cannot be listened on or a port already in use.
    With ``wait``, SIGINT, SIGTERM and SIGHUP stop the server (its process group) and return 128 + the signal.
    """
    if not 0 < port < 65536:
        raise ValueError(f"--port must lie in 1..65535, got {port}")
    roots = check_paths([Path(p) for p in paths])
    check_port_free(host, port)
    env = {**os.environ, ROOTS_ENV: os.pathsep.join(str(r) for r in roots)}
    process = subprocess.Popen(command(roots, host, port), env=env, start_new_session=True)  # its own group: stop() ends all of it
    handle = wait and threading.current_thread() is threading.main_thread()  # signal handlers can only be set there
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in STOP_SIGNALS} if handle else {}
    try:
        address = url(host, port)
        print(f"noisescope viewer: {address}  (traces under {', '.join(str(r) for r in roots)}; Ctrl-C to stop)", flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(address)
        if not wait:
            return process
        return process.wait()
    except (_Stopped, KeyboardInterrupt) as error:
        stop(process)
        return 128 + (error.signum if isinstance(error, _Stopped) else signal.SIGINT)
    except BaseException:
        stop(process)  # any other way out (a closed stdout, say): never leave the server behind
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C, SIGTERM or SIGHUP; bad input is one line on stderr and exit code 2 (tracer.cli.main)."""
    code = launch(args.paths, host=args.host, port=args.port, open_browser=args.open_browser, wait=True)
    return int(code) if isinstance(code, int) else 0
