"""Several cooperating processes on JAX's own distributed runtime: the options, the start, and the supervisor.

``jaxstyle sweep`` and ``jaxstyle train`` take ``--coordinator HOST:PORT --num-processes N --process-id I`` (or
``--distributed`` where ``jax.distributed.initialize()`` finds its cluster by itself: Cloud TPU, SLURM, Open MPI;
in a SLURM step or under mpirun with more than one task nothing needs to be said). Every process runs the same command;
the default mesh then spans every device of every process, and process 0 alone writes outputs, logs and
progress. This module is the edge: the core never calls ``jax.distributed``.

When one process dies, JAX's coordination service notices the missing heartbeats (``--heartbeat-timeout``
seconds) and terminates every other process from C++ (``LOG(FATAL)``: a stack trace, SIGABRT), which Python
cannot catch. So the command runs its work in a child process and supervises it: the child's own output passes
through, and a termination by the coordination service becomes one line (``error: process 1 of 2: ...``) and
exit status :data:`EXIT_PEER`. A process that fails by itself (bad input) leaves at once without the shutdown
barrier, so the others stop within the heartbeat timeout instead of waiting for it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

from ..errors import EXIT_PEER, UsageError

WORKER_ENV = "JAXSTYLE_DISTRIBUTED_WORKER"  # set in the supervised child
SUPERVISOR_ENV = "JAXSTYLE_DISTRIBUTED_SUPERVISOR"  # its supervisor's process id
HEARTBEAT_TIMEOUT = 100  # seconds: JAX's default
INIT_TIMEOUT = 300  # seconds every process waits for the others at the start: JAX's default
# The coordination service's fatal message (jaxlib's client.h), and the C++ log lines that precede it.
_FATAL = "Terminating process because the JAX distributed service detected fatal errors"
_CPP_LOG = re.compile(r"^[EWF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]")
_NOISE = re.compile(r"^\[Gloo\] Rank \d+ is connected to")


def add_options(parser) -> None:
    group = parser.add_argument_group("several processes (JAX's distributed runtime; see docs/multiprocess.md)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0, where the coordination "
                       "service listens (the same on every process)")
    group.add_argument("--num-processes", type=int, metavar="N", help="processes in the job")
    group.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0 .. N-1 (0 writes)")
    group.add_argument("--distributed", action="store_true", help="let jax.distributed.initialize() find the "
                       "cluster (Cloud TPU VMs and pod slices; SLURM and Open MPI are found without it)")
    group.add_argument("--heartbeat-timeout", type=int, default=HEARTBEAT_TIMEOUT, metavar="S",
                       help="stop every process S seconds after one stops answering (default: %(default)s)")


def _cluster_env() -> bool:
    """More than one task in a SLURM step (srun; not merely an sbatch script) or under Open MPI's mpirun, or JAX's
    own variable: jax.distributed finds the rest."""
    counts = (os.environ.get("SLURM_STEP_NUM_TASKS"), os.environ.get("OMPI_COMM_WORLD_SIZE"))
    return any(c and c.isdigit() and int(c) > 1 for c in counts) or "JAX_COORDINATOR_ADDRESS" in os.environ


def requested(args) -> bool:
    """Whether the command runs as one of several processes; checks the options (UsageError)."""
    if not hasattr(args, "heartbeat_timeout"):
        return False
    given = [args.coordinator is not None, args.num_processes is not None, args.process_id is not None]
    if any(given) and not all(given):
        raise UsageError("--coordinator, --num-processes and --process-id go together — give all three (or "
                         "--distributed where jax.distributed finds the cluster itself)")
    if all(given):
        if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
            raise UsageError(f"--process-id must be in 0..{args.num_processes - 1} and --num-processes >= 1, "
                             f"got {args.process_id} of {args.num_processes}")
        if not re.fullmatch(r"\S+:\d+", args.coordinator):
            raise UsageError(f"--coordinator {args.coordinator!r} is not HOST:PORT (e.g. 10.0.0.1:1234)")
    if args.heartbeat_timeout < 1:
        raise UsageError("--heartbeat-timeout must be >= 1 second")
    return all(given) or args.distributed or _cluster_env()


def in_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1"


def initialize(args) -> None:
    """``jax.distributed.initialize`` with the options (the child process, before any JAX computation)."""
    import jax

    die_with_supervisor()
    # CPU devices talk through gloo (the only cross-process CPU collectives in jaxlib); GPUs and TPUs ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                   initialization_timeout=INIT_TIMEOUT,
                                   heartbeat_timeout_seconds=args.heartbeat_timeout)
    except (RuntimeError, ValueError) as e:  # jaxlib's XlaRuntimeError is a RuntimeError
        where = args.coordinator or "the cluster's coordinator"
        raise UsageError(f"cannot join the job at {where}: {' '.join(str(e).split())[:200]} — start every process "
                         "with the same --coordinator and --num-processes, each with its own --process-id") from None


def is_writer() -> bool:
    """Process 0 writes outputs, logs and progress (the only process when there is one)."""
    import jax

    return jax.process_index() == 0


def any_process(flag) -> bool:
    """Whether ``flag`` is true on any process: every process must decide to stop at the same chunk."""
    import jax

    if jax.process_count() == 1:
        return bool(flag)
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray(bool(flag)))))


def peer_failure(args, how: str) -> str:
    """The one line a process prints when the job broke under it."""
    who = f"process {args.process_id} of {args.num_processes}" if args.process_id is not None else "this process"
    return (f"error: {who} stopped: another process of the job stopped or stopped answering ({how}) — see that "
            "process's output")


def is_peer_failure(error: BaseException) -> bool:
    """A runtime error of a cross-process collective (gloo reports a closed connection at once, before the
    coordination service notices the missing heartbeats)."""
    import jax

    text = str(error)
    return isinstance(error, jax.errors.JaxRuntimeError) and any(
        m in text for m in ("Gloo", "gloo", "Connection reset", "Connection closed", "UNAVAILABLE", "DEADLINE"))


def leave(code: int) -> None:
    """A worker that failed leaves now: the shutdown barrier would keep the others waiting for it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ------------------------------------------------------------------------------------------------ supervisor


def die_with_supervisor() -> None:
    """In the worker: be killed when the supervisor dies (Linux; elsewhere the worker outlives a killed one)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(os.environ.get(SUPERVISOR_ENV, os.getppid())):
        os._exit(EXIT_PEER)  # the supervisor died before prctl took effect


def _copy_stdout(stream) -> None:
    for line in stream:  # gloo announces its connections on stdout: dropped
        if not _NOISE.match(line):
            sys.stdout.write(line)
            sys.stdout.flush()


def supervise(argv: list[str], args) -> int:
    """Run ``jaxstyle ARGV`` as the supervised child; return its exit status, one line if its peers failed."""
    code = "import sys; from jaxstyle.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, WORKER_ENV: "1", SUPERVISOR_ENV: str(os.getpid())}
    child = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1,
                             start_new_session=True)  # its own session: the terminal's Ctrl-C is forwarded once
    out = threading.Thread(target=_copy_stdout, args=(child.stdout,), daemon=True)
    out.start()
    # C++ log lines are held back a moment: the lines before the fatal one come in the same burst.
    held, held_at, fatal, said = [], 0.0, False, False
    previous = signal.signal(signal.SIGINT, lambda *_: child.send_signal(signal.SIGINT))
    try:
        for line in child.stderr:
            fatal = fatal or _FATAL in line
            if fatal or _NOISE.match(line):
                continue
            if held and time.monotonic() - held_at > 1.0:
                sys.stderr.writelines(held)
                held = []
            if held or _CPP_LOG.match(line):
                held_at = held_at if held else time.monotonic()
                held.append(line)
            else:
                said = said or line.startswith("error: ")
                sys.stderr.write(line)
        status = child.wait()
        out.join(5)
    finally:
        signal.signal(signal.SIGINT, previous)
    if fatal:
        if not said:  # the worker's own error (a failed collective, say) came first: it is the one line
            print(peer_failure(args, f"heartbeat timeout {args.heartbeat_timeout} s"), file=sys.stderr)
        return EXIT_PEER
    sys.stderr.writelines(held)
    return status if status >= 0 else 128 - status
