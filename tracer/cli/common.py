"""What every subcommand shares: one-line errors, argument types that refuse bad values, and the up-front checks.

Every check here runs before a command does any work (training, sampling, writing a
file, starting a server), and each failure is one line: an ``argparse.ArgumentTypeError``
at parse time, or a ``ConfigError`` that main() prints as ``noisescope: error: ...``.
One helper per kind of check; every command uses the same ones:

- argument types: ``int_in`` / ``float_in`` (ranges, NaN and inf refused, "1e9" read as
  an integer), ``seed``, ``port``, ``int_list``, ``nonempty_path``, ``dataset_spec``;
- ``refuse_inapplicable``: options given that the chosen mode does not use;
- ``check_fits_memory``: a batch whose tensors cannot fit in this machine's memory;
- ``check_output``: an output path that is an input, lies inside a file, or is the wrong kind;
- ``checkpoint_file``: the file a ``--checkpoint`` names, refusing a trace passed by mistake;
- ``check_port_free``: a host that cannot be listened on, or a port already taken.

This module stays light (no torch, no streamlit at import): ``noisescope view`` imports it.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import socket
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from tracer.config import ConfigError
from tracer.trace.reader import HDF5_SIGNATURE, TraceError
from tracer.trace.writer import TraceExistsError

# Every error a user can cause; main() turns each into one line on stderr and exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, TraceError, TraceExistsError, FileNotFoundError, ValueError, OSError)

EXIT_USAGE = 2
MAX_SEED = 2**32 - 1  # numpy's and most tools' seed range; torch takes it too


def one_line(error: BaseException | str) -> str:
    """The first line of an error's text (its type's name where it has none)."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def fail(error: BaseException | str) -> int:
    print(f"noisescope: error: {one_line(error)}", file=sys.stderr)
    return EXIT_USAGE


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is fail()'s one line (plus exit code 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise SystemExit(fail(f"{message} (see {self.prog} --help)"))


# -- argument types: each refuses a bad value with one line (argparse adds "argument --NAME: ") ------


def _integer(text: str) -> int:
    """An integer; "1e9" and "1_000" are read as integers too, "1.5" and "nan" are refused."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not math.isfinite(value) or not value.is_integer():
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    return int(value)


def _count(value: int) -> str:
    return f"{value:,}" if abs(value) >= 100_000 else str(value)


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (no upper bound when high is None)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {_count(low)}, got {_count(value)}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {_count(high)}, got {_count(value)}")
        return value

    parse.__name__ = "integer"  # argparse names the type in "invalid integer value" messages
    return parse


def float_in(low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite float from low to high (either end open where asked, absent when None)."""
    if low is not None and high is not None:
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"{'>' if low_open else '>='} {low:g}"
    else:
        allowed = f"{'<' if high_open else '<='} {high:g}" if high is not None else ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


finite_float = float_in()
positive_int = int_in(1)
nonnegative_int = int_in(0)
seed = int_in(0, MAX_SEED)
port = int_in(1, 65535)


def int_list(low: int, high: int, max_items: int) -> Callable[[str], tuple[int, ...]]:
    """An argparse type: integers in [low, high] separated by commas, at most ``max_items`` of them."""
    item = int_in(low, high)

    def parse(text: str) -> tuple[int, ...]:
        parts = [part.strip() for part in text.split(",")]
        if not text.strip() or not all(parts):
            raise argparse.ArgumentTypeError(f"must be integers separated by commas, got {text!r}")
        if len(parts) > max_items:
            raise argparse.ArgumentTypeError(f"at most {max_items} numbers, got {len(parts)}")
        try:
            return tuple(item(part) for part in parts)
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"{error} (in {text!r})") from None

    parse.__name__ = "list"
    return parse


def nonempty_path(text: str) -> Path:
    """An argparse type: a path that is not empty (Path('') would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(text).expanduser()


def dataset_spec(text: str) -> str:
    """An argparse type: a data set name, or name:DIR for the sets read from files (tracer/data.py)."""
    from tracer.data import NEEDS_DIR, parse_spec

    name, _, directory = text.partition(":")
    if name.strip().lower() in NEEDS_DIR and not directory:
        raise argparse.ArgumentTypeError(f"{name} is read from files: give --dataset {name}:DIR (the folder holding them)")
    try:
        parse_spec(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if directory and not Path(directory).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"{directory}: no such folder")
    return text


# -- checks that need more than one option ---------------------------------------------------------


def refuse_inapplicable(args: argparse.Namespace, options: Iterable[str], why: str) -> None:
    """Refuse the first of ``options`` (dest names) the user gave (not None): it does not apply, ``why``."""
    for dest in options:
        if getattr(args, dest, None) is not None:
            raise ConfigError(f"--{dest.replace('_', '-')} does not apply {why}")


def memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


TENSORS_HELD = 4  # a sampling step holds at least x_t, eps, x0_pred and the noise at once


def check_fits_memory(batch: int, shape: Sequence[int], option: str = "--batch", bytes_per_value: int = 4) -> None:
    """Refuse a batch whose float32 tensors (TENSORS_HELD of them) cannot fit in this machine's memory."""
    per_tensor = batch * math.prod(shape) * bytes_per_value
    available = memory_bytes()
    if per_tensor * TENSORS_HELD > available:
        size = "x".join(map(str, shape))
        raise ConfigError(f"batch {batch} of {size} needs {human_bytes(per_tensor)} per tensor (at least {TENSORS_HELD} held at once), "
                          f"more than this machine's {human_bytes(available)} of memory; use a smaller {option}")


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def check_output(out: Path, inputs: Mapping[str, Path | None] | None = None, *, directory: bool = False,
                 option: str = "--out") -> None:
    """Refuse an output path that is one of ``inputs`` (label: path), lies inside a file, or is the wrong kind.

    ``directory``: the output is a directory (a run directory), so an existing file is refused;
    otherwise it is a file, so an existing directory is refused.
    """
    known = {label: path for label, path in (inputs or {}).items() if path is not None}
    for label, path in known.items():
        if _same(out, path):
            raise ConfigError(f"{option} {out} is {label}; write somewhere else")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                inside = next((label for label, path in known.items() if _same(parent, path)), f"the file {parent}")
                raise ConfigError(f"{option} {out} lies inside {inside}, which is a file, not a folder")
            break
    if directory and out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out} is a file, not a run directory")
    if not directory and out.is_dir():
        raise ConfigError(f"{option} {out} is a directory; give a file name like trace.h5")




def checkpoint_file(path: Path) -> Path:
    """The checkpoint file ``--checkpoint`` names (a run directory means its model.safetensors).

    Refuses a path that does not exist, and an HDF5 file (a trace given by mistake) with a
    message that says so, before safetensors reads its first bytes as a header length.
    """
    from tracer.checkpoints import resolve_path

    file = resolve_path(path)
    with open(file, "rb") as f:
        head = f.read(len(HDF5_SIGNATURE))
    if head == HDF5_SIGNATURE:
        from tracer.trace.reader import TraceError, open_trace

        try:
            with open_trace(file):
                is_trace = True
        except TraceError:
            is_trace = False
        what = "a noisescope trace" if is_trace else "an HDF5 file"
        raise ConfigError(f"{file} is {what}, not a checkpoint (give a run directory or its model.safetensors)")
    return file


def check_port_free(host: str, port_number: int) -> None:
    """Refuse a host that cannot be listened on and a port already taken, by binding it for a moment."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port_number, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
        raise ConfigError(f"cannot listen on --host {host}: {reason}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a port in TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port_number} on {host} is already in use (another viewer?); choose another with --port") from None
            raise ConfigError(f"cannot listen on {host}:{port_number}: {error.strerror or error}") from None


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return name
