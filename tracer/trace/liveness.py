"""Whether the process writing a trace is still there: a run killed outright leaves its trace saying "running".

A run stopped by an exception, Ctrl-C or SIGTERM closes its trace as ``failed``; one killed by SIGKILL (the
out-of-memory killer, a lost rank's machine, ``kill -9``) cannot, and its trace keeps the status ``running`` for
good. So the writer stamps a live trace with who writes it (root attribute ``writer``, schema.ATTR_WRITER):
the host name, the kernel's boot id, the pid namespace, the pid and the process's start time (clock ticks after
boot, field 22 of /proc/PID/stat, which tells a pid reused by another process). A reader on the same machine (same
host, boot and pid namespace) can then say whether that process still runs; anywhere else, or for a trace without
the stamp, it cannot tell. Linux only (/proc): elsewhere every answer is "unknown". Torch-free.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Final, Literal

WriterState = Literal["alive", "gone", "unknown"]
BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
FIELDS: Final = ("host", "boot_id", "pid_ns", "pid", "started")


def _boot_id() -> str | None:
    try:
        return BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def _pid_ns() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of process ``pid``; None where it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": comm may hold spaces and parentheses
    return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime) of proc(5)


def identity() -> dict[str, Any] | None:
    """This process, as the ``writer`` attribute records it; None where the system does not say (no /proc)."""
    boot, ns = _boot_id(), _pid_ns()
    stat = _stat(os.getpid()) if boot is not None else None
    if boot is None or ns is None or stat is None:
        return None
    return {"host": socket.gethostname(), "boot_id": boot, "pid_ns": ns, "pid": os.getpid(), "started": stat[1]}


def state(writer: Any) -> WriterState:
    """Whether the process ``writer`` (a trace's ``writer`` attribute, parsed) still runs: "alive", "gone" (no such
    process, a zombie, or another process under its pid), or "unknown" (no stamp, another machine, another boot or pid
    namespace, or no /proc)."""
    if not isinstance(writer, dict) or any(key not in writer for key in FIELDS):
        return "unknown"
    pid, started = writer["pid"], writer["started"]
    if not (isinstance(pid, int) and isinstance(started, int)) or isinstance(pid, bool) or pid <= 0:
        return "unknown"
    if writer["host"] != socket.gethostname() or writer["boot_id"] != _boot_id() or writer["pid_ns"] != _pid_ns():
        return "unknown"
    try:
        now = _stat(pid)
    except (OSError, ValueError, IndexError):
        return "unknown"
    if now is None or now[0] in ("Z", "X") or now[1] != started:
        return "gone"
    return "alive"
