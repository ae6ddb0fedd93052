"""The ``noisescope`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Bad input of any kind ends with one line on stderr and exit code 2, never a
traceback: every error a user can cause is raised as one of USER_ERRORS
(set NOISESCOPE_DEBUG=1 to see the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from tracer.cli.common import USER_ERRORS, OneLineParser, fail

COMMANDS = ("train", "sample", "demo", "view", "inspect", "check", "recover")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="noisescope",
        description="Record diffusion models step by step into HDF5 traces and replay them beside the equations.",
        epilog="Run 'noisescope COMMAND --help' for the options of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tracer.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"tracer.cli.{name}":
                continue  # a command that has not landed yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (argparse's own exits, --help and usage errors, included)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as error:
        if os.environ.get("NOISESCOPE_DEBUG"):
            raise
        return fail(error)
    except KeyboardInterrupt:
        print("noisescope: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
