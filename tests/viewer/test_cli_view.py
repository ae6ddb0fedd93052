"""`noisescope view`: its command line, its refusals, and the Streamlit command it runs (the server itself: test_browser.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tracer.cli import main
from tracer.cli.view import APP, command, launch, url

ROOT = Path(__file__).resolve().parents[2]


def test_missing_path_is_one_line_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["view", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or folder" in err[0]


def test_bad_port_is_refused_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["view", str(tmp_path), "--port", "70000"]) == 2
    assert "at most 65535" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        launch([tmp_path / "nope"], wait=False)


def test_the_streamlit_command_serves_the_app_on_the_roots_only(tmp_path: Path) -> None:
    cmd = command([tmp_path], "127.0.0.1", 8600)
    assert cmd[:5] == [sys.executable, "-m", "viewer.serve", "run", str(APP)] and APP.name == "app.py" and APP.exists()
    flags = dict(zip(cmd[5:-2:2], cmd[6:-2:2], strict=False))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8600"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert cmd[-2:] == ["--", str(tmp_path)]


def test_printed_url_is_reachable_from_this_machine() -> None:
    assert url("127.0.0.1", 8501) == "http://127.0.0.1:8501"
    assert url("0.0.0.0", 9000) == "http://127.0.0.1:9000"


# -- refused before Streamlit starts: a bad host, a busy port ----------------------------------------


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting Streamlit fails the test: these refusals come first."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("streamlit was started")

    monkeypatch.setattr("tracer.cli.view.subprocess.Popen", boom)


def one_line(capsys: pytest.CaptureFixture[str], code: int, fragment: str) -> None:
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and fragment in captured.err, captured.err
    assert "http://" not in captured.out  # no URL printed for a server that will not run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_host_that_cannot_be_listened_on_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_server: None) -> None:
    one_line(capsys, main(["view", str(tmp_path), "--host", "no.such.host", "--port", str(free_port())]), "no.such.host")
    one_line(capsys, main(["view", str(tmp_path), "--host", "192.0.2.1", "--port", str(free_port())]), "cannot listen on 192.0.2.1")


def test_a_busy_port_is_refused_before_streamlit_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_server: None) -> None:
    with socket.socket() as other:  # someone else's server on the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        one_line(capsys, main(["view", str(tmp_path), "--port", str(port)]), f"port {port} on 127.0.0.1 is already in use")
        one_line(capsys, main(["demo", "--out", str(tmp_path / "demo"), "--port", str(port)]), "already in use")  # before training
    assert not (tmp_path / "demo").exists()


# -- SIGTERM, SIGINT and SIGHUP (a closed terminal) stop the server it started -----------------------

STARTUP_SECONDS = 120  # streamlit's start on 2 busy CPU cores


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the field after the state is the parent's pid
            found.append(int(stat.parent.name))
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"noisescope view exited with {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"nothing listened on port {port} within {STARTUP_SECONDS} s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_to_view_stops_its_streamlit_server(signum: signal.Signals, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "view.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from tracer.cli import main; sys.exit(main())",
                                 "view", str(tmp_path), "--port", str(port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    server: list[int] = []
    try:
        wait_listening(port, proc)
        server = children(proc.pid)
        assert len(server) == 1, server
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == 128 + signum, log.read_text()[-2000:]
        assert not Path(f"/proc/{server[0]}").exists()  # the server is gone (and reaped), not orphaned
        assert port_is_free(port)
        assert "Traceback" not in log.read_text(), log.read_text()[-2000:]
    finally:  # never leave a server behind, whatever failed
        for pid in [proc.pid, *server]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)
