"""What every subcommand shares: one-line errors, and argument parsers for common options."""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

from tracer.config import ConfigError
from tracer.trace.reader import TraceError
from tracer.trace.writer import TraceExistsError

# Every error a user can cause; main() turns each into one line on stderr and exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, TraceError, TraceExistsError, FileNotFoundError, ValueError, OSError)

EXIT_USAGE = 2


def fail(error: BaseException | str) -> int:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    print(f"noisescope: error: {message}", file=sys.stderr)
    return EXIT_USAGE


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus exit code 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return name


