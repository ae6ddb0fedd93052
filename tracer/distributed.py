"""Many processes with torch.distributed: joining a run started by ``torchrun``, and starting one for ``--nproc N``.

noisescope runs on torch's own engine for many processes, not on one of its own:

- ``torchrun --nproc_per_node N -m tracer.cli train ...`` (one node or several) starts N processes and gives each
  RANK, LOCAL_RANK, WORLD_SIZE and the rendezvous in its environment; ``init_from_env()``, called by
  ``tracer.cli.main`` before the subcommand runs, joins the default process group: gloo on the CPU, NCCL on CUDA
  with one GPU per process (cuda:LOCAL_RANK), and ``torch.set_num_threads(cores // local world size)``.
- ``noisescope train --nproc N`` and ``noisescope sample --nproc N`` call ``launch()``, which is torchrun's
  ``--standalone`` mode run in-process: ``torch.distributed.launcher.api.elastic_launch`` with a c10d rendezvous
  on a free local port, no restarts, starting ``python -m tracer.cli`` with the same arguments (``--nproc``
  dropped) and the same environment, so that the code that starts is the code that launched it.

What each rank does is the subcommand's business (tracer/training.py: DistributedDataParallel, the global batch's
noise drawn on every rank, rank 0 alone writing). Here is what all of them share:

- A rank that dies ends the whole run: the elastic agent stops the others, and ``launch`` prints ONE line naming
  the rank that died first, with its exit code or signal (or the one-line error it reported), exit code 2 for
  bad input found inside a rank, 1 otherwise. The agent's own logging is silenced. A rank that stops only because
  a peer went away (a gloo or NCCL error in a collective) exits quietly with ``EXIT_PEER_LOST`` instead of
  printing a traceback: the root cause is the other rank's, and the launcher names it.
- Under ``launch`` a rank's one-line error (bad input found inside it) goes to a file the launcher reads
  (``ERRORS_ENV``), so that the run ends with one line, not one per rank.
- ``KILL_ENV`` is a test-only hook: ``NOISESCOPE_TEST_KILL_RANK=R:S`` makes rank R SIGKILL itself before its
  step S (a lost machine, an out-of-memory kill), so that tests can check what a dead rank leaves.

This module imports torch only inside its functions: ``tracer.cli`` imports it for every command.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracer.config import ConfigError

if TYPE_CHECKING:
    import torch

ERRORS_ENV = "NOISESCOPE_RANK_ERRORS"  # the folder where a rank under launch() leaves its one-line error
KILL_ENV = "NOISESCOPE_TEST_KILL_RANK"  # test-only: "R:S" makes rank R SIGKILL itself before step S
EXIT_PEER_LOST = 75  # a rank that stopped because another one died (EX_TEMPFAIL); launch() names the other
EXIT_FAILED = 1
EXIT_USAGE = 2
SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")  # the elastic agent's handlers; launch() restores the previous ones
_joined = False  # whether init_from_env started the default process group (destroy() ends only that one)
# What gloo and NCCL say when the other end of a collective is gone (plain RuntimeErrors in torch 2.x).
PEER_LOST_MARKERS = ("Connection closed by peer", "Connection reset by peer", "gloo/transport", "NCCL communicator was aborted",
                     "Socket Timeout", "Broken pipe")


def under_torchrun() -> bool:
    """Whether this process is one rank of a torchrun (or ``launch``) run: RANK set, or WORLD_SIZE above 1."""
    return "RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1") or "1") > 1


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0))


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) when there is none."""
    if "torch" not in sys.modules:  # nothing can have started a group without torch
        return 0, 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes: rank 0, or the only process."""
    return rank_and_world()[0] == 0


def init_from_env(device: str = "auto") -> tuple[int, int]:
    """Join the process group torchrun described in the environment; (rank, world size), (0, 1) outside torchrun.

    ``device`` is the subcommand's ``--device`` (auto, cpu, cuda): NCCL with cuda:LOCAL_RANK where it means a GPU,
    gloo otherwise. Torch gets ``usable cores // LOCAL_WORLD_SIZE`` threads (at least 1), so that the ranks on one
    machine do not oversubscribe it.
    """
    if not under_torchrun():
        return 0, 1
    import torch
    import torch.distributed as dist

    if dist.is_initialized():  # the caller's own group: used, and left to the caller
        return dist.get_rank(), dist.get_world_size()
    global _joined
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    torch.set_num_threads(max(1, usable_cores() // max(1, local_world)))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                              "start at most one process per GPU")
        torch.cuda.set_device(local_rank)  # "cuda" means this rank's GPU from here on
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    _joined = True
    return dist.get_rank(), dist.get_world_size()


def destroy() -> None:
    """Leave the process group ``init_from_env`` joined (a group the caller started is the caller's)."""
    global _joined
    if not _joined:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _joined = False


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over every rank, in place (unchanged with one process)."""
    import torch.distributed as dist

    if rank_and_world()[1] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def check_nproc(nproc: int, device: str) -> None:
    """Refuse an ``--nproc`` this machine cannot run (checked before anything is written): more processes than the
    cores this process may use, more than the GPUs with a CUDA device, or ``--nproc`` under torchrun itself."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    if nproc > 1 and under_torchrun():
        raise ConfigError("--nproc starts torchrun itself; under torchrun leave it out (torchrun's --nproc_per_node says how many)")
    cores = usable_cores()
    if nproc > cores:
        raise ConfigError(f"--nproc {nproc} is more than the {cores} CPU cores this process may use; give at most {cores}")
    if device.startswith("cuda"):
        import torch

        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise ConfigError(f"--nproc {nproc} with --device cuda needs one GPU per process; this machine has {gpus}")


def drop_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N`` (argparse's abbreviations --np, --npr, ... included)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name, equals, _ = arg.partition("=")
        if len(name) >= 4 and "--nproc".startswith(name):
            skip = not equals
            continue
        kept.append(arg)
    return kept


def forward_error(message: str) -> bool:
    """Under ``launch``: leave this rank's one-line error for the launcher to print (True); otherwise False."""
    folder = os.environ.get(ERRORS_ENV)
    if not folder or "RANK" not in os.environ:
        return False
    try:
        Path(folder, f"rank-{os.environ['RANK']}.txt").write_text(message, encoding="utf-8")
    except OSError:
        return False
    return True


def is_peer_lost(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another rank went away (only in a run of many processes)."""
    if rank_and_world()[1] < 2:
        return False
    import torch.distributed as dist

    return isinstance(error, dist.DistError) or (isinstance(error, RuntimeError) and any(m in str(error) for m in PEER_LOST_MARKERS))


def peer_lost_exit(error: BaseException) -> int:
    """End a rank whose peer went away: quietly under ``launch`` (which names the rank that died), else one line."""
    if not os.environ.get(ERRORS_ENV):
        rank = os.environ.get("RANK", "?")
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"noisescope: error: rank {rank} stopped: another rank of the run went away ({first[:200]})", file=sys.stderr)
    return EXIT_PEER_LOST


def kill_hook_for_tests(rank: int, step: int) -> None:
    """Test-only (``KILL_ENV`` = "R:S"): rank R SIGKILLs itself before its step S, as a lost machine would stop."""
    spec = os.environ.get(KILL_ENV)
    if spec and spec == f"{rank}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def _quiet_agent() -> Iterator[None]:
    """No logging from torch's elastic agent, and the signal handlers it installs put back afterwards."""
    handlers = {name: signal.getsignal(getattr(signal, name)) for name in SIGNALS if hasattr(signal, name)}
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)
        for name, handler in handlers.items():
            if handler is not None:
                signal.signal(getattr(signal, name), handler)


def _failure_line(failures: dict[int, Any], errors: Path) -> tuple[str, int]:
    """The one line naming the rank that died first, and the launcher's exit code.

    The agent reports every rank it ended: those it stopped itself (SIGTERM) and those that stopped because a peer
    went away (EXIT_PEER_LOST) are consequences; the cause is the rank that failed on its own.
    """
    consequences = {-signal.SIGTERM, EXIT_PEER_LOST}
    causes = [rank for rank, failure in failures.items() if failure.exitcode not in consequences] or list(failures)
    rank = min(causes, key=lambda r: (failures[r].timestamp, r))
    failure = failures[rank]
    message = errors / f"rank-{rank}.txt"
    if message.is_file():
        return f"rank {rank}: {message.read_text(encoding='utf-8').strip()}", failure.exitcode if failure.exitcode > 0 else EXIT_FAILED
    if failure.exitcode < 0:
        return f"rank {rank} was killed by {failure.signal_name()} (signal {-failure.exitcode}); the run is stopped", EXIT_FAILED
    return f"rank {rank} exited with code {failure.exitcode}; the run is stopped", EXIT_FAILED


def launch(argv: Sequence[str], nproc: int) -> int:
    """Run ``python -m tracer.cli ARGV`` (``--nproc`` dropped) as ``nproc`` processes on this machine; the exit code.

    torchrun's --standalone, in-process: torch's elastic agent with a c10d rendezvous on a free local port and no
    restarts; the children inherit this process's environment (PYTHONPATH included) and console. A rank that dies
    ends the run with one line naming it (see the module docstring).
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    args = ["-m", "tracer.cli", *drop_nproc(argv)]
    with tempfile.TemporaryDirectory(prefix="noisescope-ranks-") as folder, _quiet_agent():
        saved = {name: os.environ.get(name) for name in (ERRORS_ENV, "TORCHELASTIC_SIGNALS_TO_HANDLE")}
        os.environ[ERRORS_ENV] = folder
        config = LaunchConfig(
            min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
            rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # torchrun --standalone: a TCP store on a free port
            max_restarts=0, monitor_interval=0.1,
            logs_specs=DefaultLogsSpecs(log_dir=os.devnull),  # the ranks write to this console; no log folders
        )
        try:
            elastic_launch(config, sys.executable)(*args)
        except ChildFailedError as error:
            line, code = _failure_line(error.failures, Path(folder))
            print(f"noisescope: error: {line}", file=sys.stderr)
            return code
        except SignalException as error:  # Ctrl-C or a kill of the launcher: the agent has stopped the ranks
            if error.sigval == signal.SIGINT:
                raise KeyboardInterrupt from None
            print(f"noisescope: error: stopped by {error.sigval.name}", file=sys.stderr)
            return 128 + int(error.sigval)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    return 0
