"""`noisescope view`: its command line, its refusals, and the Streamlit command it runs (the server itself: test_browser.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tracer.cli import main
from tracer.cli.view import APP, command, launch, url


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
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)] and APP.name == "app.py" and APP.exists()
    flags = dict(zip(cmd[5:-2:2], cmd[6:-2:2], strict=False))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8600"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert cmd[-2:] == ["--", str(tmp_path)]


def test_printed_url_is_reachable_from_this_machine() -> None:
    assert url("127.0.0.1", 8501) == "http://127.0.0.1:8501"
    assert url("0.0.0.0", 9000) == "http://127.0.0.1:9000"
