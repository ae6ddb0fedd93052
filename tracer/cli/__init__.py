"""The ``noisescope`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Bad input of any kind ends with one line on stderr and exit code 2, never a
traceback: every error a user can cause is raised as one of USER_ERRORS
(set NOISESCOPE_DEBUG=1 to see the traceback instead), and each command checks
its input before it does any work.

``noisescope`` without a command lists the commands on stdout, one line each, and
exits with code 2 (a missing command is a usage error, as argparse has it), with the
one-line error on stderr. ``noisescope --version`` prints the version.
A closed stdout (``noisescope check ... | head``) ends the command quietly, exit code 0.

Under torchrun (RANK or WORLD_SIZE in the environment) ``main`` joins the process group before the
command runs and leaves it at the end (tracer/distributed.py); only train and sample run that way.
SIGTERM stops a command that writes a run (train, sample, invert, demo) as Ctrl-C does: the trace
is marked failed with every committed step kept, and the command exits with 143 (a rank under
torchrun ends by the signal itself, as torchrun's agent expects).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from tracer import distributed
from tracer.cli.common import EXIT_USAGE, USER_ERRORS, OneLineParser, fail, one_line, resolve_device
from tracer.config import ConfigError
from tracer.interrupts import Terminated, sigterm_raises

COMMANDS = ("train", "sample", "invert", "demo", "view", "inspect", "check", "diff", "recover")
DISTRIBUTED_COMMANDS = ("train", "sample")  # the commands that run as many processes (torchrun, --nproc)
RUN_COMMANDS = ("train", "sample", "invert", "demo")  # the commands that write a run: SIGTERM ends them as Ctrl-C does
EXIT_TERMINATED = 128 + signal.SIGTERM


def version() -> str:
    """The installed package's version, else the one in pyproject.toml beside the sources."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("noisescope")
    except PackageNotFoundError:
        import tomllib

        try:
            with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as f:
                return str(tomllib.load(f)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="noisescope",
        description="Record diffusion models step by step into HDF5 traces and replay them beside the equations.",
        epilog="Run 'noisescope COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"noisescope {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tracer.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"tracer.cli.{name}":
                continue  # a command that has not landed yet
            raise
        module.add_parser(sub)
    return parser


def command_list(parser: argparse.ArgumentParser) -> str:
    """The commands, one line each: name and help."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    choices = actions[0]._choices_actions if actions else []  # noqa: SLF001
    width = max((len(c.dest) for c in choices), default=0)
    lines = [f"usage: {parser.prog} COMMAND [options]   ({parser.prog} COMMAND --help for each)", "", "commands:"]
    lines += [f"  {c.dest:<{width}}  {c.help}" for c in choices]
    return "\n".join(lines)


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command is None:
        print(command_list(parser))
        return fail("no command given; choose one of the commands above")
    args.argv = argv  # --nproc N: tracer.distributed.launch starts this command line in N processes
    try:
        if distributed.under_torchrun():  # one rank of torchrun (or of --nproc): join the process group first
            if args.command not in DISTRIBUTED_COMMANDS:
                raise ConfigError(f"noisescope {args.command} runs in one process; torchrun is for "
                                  f"{' and '.join(DISTRIBUTED_COMMANDS)}")
            distributed.init_from_env(resolve_device(getattr(args, "device", "auto")))
        with sigterm_raises() if args.command in RUN_COMMANDS else contextlib.nullcontext():
            return int(args.run(args) or 0)
    except USER_ERRORS as error:
        if isinstance(error, BrokenPipeError) or os.environ.get("NOISESCOPE_DEBUG"):
            raise
        if distributed.forward_error(one_line(error)):  # a rank under --nproc: the launcher prints it, once
            return EXIT_USAGE
        return fail(error)
    except KeyboardInterrupt:
        if not os.environ.get(distributed.ERRORS_ENV):  # a rank under --nproc: the launcher says it
            print("noisescope: interrupted", file=sys.stderr)
        return 130
    except Terminated:  # the writers have closed what they wrote (failed, every committed step kept)
        if distributed.under_torchrun():  # stopped by torchrun's agent: end by the signal, as the agent expects of a rank
            distributed.destroy()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        print("noisescope: stopped by SIGTERM", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as error:
        if distributed.is_peer_lost(error):  # another rank died: it is the cause, and it is named once
            return distributed.peer_lost_exit(error)
        raise
    finally:
        distributed.destroy()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (argparse's own exits, --help and usage errors, included)."""
    try:
        code = _run(argv)
        sys.stdout.flush()  # a closed pipe shows here rather than at exit
        return code
    except BrokenPipeError:
        # The reader of stdout went away (| head): end quietly. Python's docs recipe: point stdout at
        # devnull so that the interpreter's final flush does not fail again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (in-process tests)
            pass
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
