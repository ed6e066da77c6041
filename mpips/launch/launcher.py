"""Start an SPMD launch, relaunch it after a lost rank, stop it on request (launch layer).

``mpips launch -n 4 -- -m mpips run sparse_lr --servers 2`` runs
``mpiexec [flags] -n 4 <sys.executable> -m mpips run sparse_lr --servers 2`` with the
mpiexec, flags and environment of mpips.launch.mpiexec.

A lost rank: when a rank dies (SIGKILL, OOM killer, its node gone), a ULFM launch (``--ft``)
ends with the survivors' exit code EXIT_RANK_LOST (mpips.mpi.fault); without ULFM, mpiexec kills
the launch and exits with the signal (Open MPI 128+9, MPICH 9), which :func:`launch` reports
as EXIT_RANK_LOST too. A lost node's daemon makes Open MPI's mpirun end the whole job and
exit 0: the ranks' markers tell that from a finished job (mpips.launch.ranks.unfinished).
``--relaunch N`` then starts the job again on one rank fewer, up to N times, with
MPIPS_RANKS_LOST counting the ranks lost so far (``mpips.init`` gives up a server per lost
rank); a job run with ``--checkpoint-dir ... --resume`` carries on from its newest
checkpoint. A rank that dies before the job can notice (during its start-up, up to the end
of ``mpips.init``) is noticed here instead (mpips.launch.ranks): the launch is ended as a lost rank
within seconds, where a ULFM launch would otherwise wait in MPI_Init for good.

Stopping: SIGTERM, Ctrl-C or SIGUSR1 to ``mpips launch`` ask the job to checkpoint at its next
step boundary and stop (SIGUSR1 to every rank through mpiexec, once the ranks hold it:
mpips.launch.startup); the launch then exits EXIT_STOPPED (75). No rank outlives the launch: the
launcher adopts ranks orphaned by an mpiexec that ended first and kills them, and each rank
of ``mpips run`` dies with its parent (mpips.launch.startup).

Imports nothing from mpips but :mod:`mpips.errors`, :mod:`mpips.launch.mpiexec`,
:mod:`mpips.launch.processes` (running a launch
and killing its whole process tree), :mod:`mpips.launch.ranks` and :mod:`mpips.launch.startup`; no MPI
import.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

from ..core.partition import ranks_lost_before
from ..errors import EXIT_RANK_LOST, EXIT_STOPPED, LauncherError, LaunchTimeout
from .mpiexec import in_allocation, launch_settings, mpiexec_command
from .processes import StopRequests, Terminated, run_command
from .ranks import StartupWatch, unfinished
from .startup import STARTUP_DIR_VARIABLE, aborts

#: Return code of :func:`launch` when the launch ran past its timeout (as timeout(1)).
TIMEOUT_RETURNCODE = 124

#: Seconds a launch asked to stop gets to checkpoint and end before it is killed.
STOP_GRACE = 120.0

def warm_numba_cache(python: str | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Run ``python -m mpips warmup`` once, so that ranks do not race compiling the kernels
    into numba's on-disk cache. Prints a warning and returns False if it fails."""
    command = [python or sys.executable, "-m", "mpips", "warmup"]
    try:
        proc = run_command(command, env=env, timeout=600, capture=True)
        code, said = proc.returncode, (proc.stdout + proc.stderr).strip()
    except (OSError, LauncherError) as exc:
        code, said = "error", str(exc)
    if code != 0:
        print(f"mpips launch: warning: '{' '.join(command)}' failed ({code}); ranks will "
              f"compile the numba kernels themselves" + (f"\n{said}" if said else ""),
              file=sys.stderr, flush=True)
        return False
    return True


def lost_a_rank(returncode: int) -> bool:
    """Whether mpiexec's exit code says a rank died: the survivors' EXIT_RANK_LOST (ULFM), or
    a rank killed by SIGKILL (Open MPI exits 128+9, MPICH's Hydra 9)."""
    return returncode in (EXIT_RANK_LOST, signal.SIGKILL, 128 + signal.SIGKILL)


def launch(nprocs: int, argv: Sequence[str], timeout: float | None = None, *,
           ft: bool = False, warmup: bool = True, relaunch: int = 0,
           stop_grace: float = STOP_GRACE) -> int:
    """Run ``python argv...`` on ``nprocs`` ranks and return mpiexec's exit code, or
    EXIT_RANK_LOST when a rank died (:func:`lost_a_rank`), also during start-up
    (mpips.launch.ranks), or EXIT_STOPPED when asked to stop.

    Warms the numba cache first unless ``warmup=False``. Output goes to this process's
    stdout/stderr. A launch past ``timeout`` seconds is killed (return code 124). SIGTERM,
    SIGINT (Ctrl-C) or SIGUSR1 ask the job to checkpoint and stop: passed on to the ranks as
    SIGUSR1 (once they hold it, mpips.launch.startup), the launch gets ``stop_grace`` seconds to end
    and then returns EXIT_STOPPED (or its own non-zero code); a second SIGTERM or Ctrl-C kills
    the launch's whole tree at once (143 / 130). After a lost rank, up to ``relaunch`` more
    launches run on one rank fewer each (MPIPS_RANKS_LOST set to the ranks lost so far),
    while at least two ranks are left. No rank outlives the launch (mpips.launch.processes).
    """
    with StopRequests() as stop:  # from the start: a request during the warm-up stops too
        return _launch_attempts(nprocs, argv, timeout, ft, warmup, relaunch, stop_grace, stop)


def _launch_attempts(nprocs, argv, timeout, ft, warmup, relaunch, stop_grace,
                     stop: StopRequests) -> int:
    lost = ranks_lost_before(os.environ)
    for attempt in range(relaunch + 1):
        command, env = mpiexec_command(nprocs, argv, ft=ft)
        if lost:
            env["MPIPS_RANKS_LOST"] = str(lost)
        if warmup and attempt == 0:
            warm_numba_cache(env=env)
        if stop.signal is not None:  # before any rank of this attempt started
            print(f"mpips launch: stopped on {stop.signal} before the ranks started (nothing "
                  f"of this launch to save); exit code {EXIT_STOPPED}", file=sys.stderr,
                  flush=True)
            return EXIT_STOPPED
        base = os.environ.get(STARTUP_DIR_VARIABLE)  # where to put the markers, if given
        with tempfile.TemporaryDirectory(prefix="mpips-startup-", dir=base if base and
                                         os.path.isdir(base) else None) as markers:
            env[STARTUP_DIR_VARIABLE] = markers
            expected = None if in_allocation(env) else nprocs
            code, stopped = _launch_once(command, env, timeout, argv, expected, stop_grace,
                                         stop)
        if stopped:
            return _after_stop(stopped, code)
        if not lost_a_rank(code):
            return code
        say = f"mpips launch: a rank of the {nprocs}-rank launch died (exit code {code})"
        if attempt == relaunch or nprocs <= 2:
            print(f"{say}; exit code {EXIT_RANK_LOST} (relaunch on fewer ranks with "
                  f"--resume to continue from the newest checkpoint)", file=sys.stderr, flush=True)
            return EXIT_RANK_LOST
        nprocs, lost = nprocs - 1, lost + 1
        print(f"{say}; relaunching on {nprocs} ranks ({attempt + 1} of {relaunch} "
              f"relaunches, MPIPS_RANKS_LOST={lost})", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


def _after_stop(signame: str, code: int) -> int:
    """Exit code and last word of a launch asked to stop by ``signame``."""
    if code == 0:
        print(f"mpips launch: stopped on {signame}: the job checkpointed and stopped (its "
              f"checkpoint line is above), or had just finished; exit code {EXIT_STOPPED} "
              f"(resume with --resume)", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    print(f"mpips launch: the launch ended with exit code {code} after {signame}",
          file=sys.stderr, flush=True)
    return code


def _launch_once(command: Sequence[str], env: Mapping[str, str], timeout: float | None,
                 argv: Sequence[str], expected: int | None, stop_grace: float,
                 stop: StopRequests) -> tuple[int, str | None]:
    """One launch: (exit code, name of the signal that asked it to stop or None)."""
    tick = _Tick(argv, env[STARTUP_DIR_VARIABLE], expected, stop, stop_grace)
    try:
        code = run_command(command, env=env, timeout=timeout, tick=tick,
                           own_tree=True).returncode
        if code:
            for line in aborts(env[STARTUP_DIR_VARIABLE]):
                print(f"mpips launch: aborted by {line}", file=sys.stderr, flush=True)
        verdict = None
        if code == 0 and stop.signal is None:  # a torn-down launch can exit 0 too
            verdict = unfinished(env[STARTUP_DIR_VARIABLE])
        elif code and tick.watch and not lost_a_rank(code):
            verdict = tick.watch.killed_in_startup()
        if verdict is not None:
            print(f"mpips launch: {verdict.message}", file=sys.stderr, flush=True)
            code = verdict.code
    except LaunchTimeout as exc:
        print(f"mpips launch: {exc}", file=sys.stderr, flush=True)
        code = TIMEOUT_RETURNCODE
    except KeyboardInterrupt:
        print("mpips launch: interrupted, launch killed", file=sys.stderr, flush=True)
        return 130, None
    except Terminated:
        print("mpips launch: terminated, launch killed", file=sys.stderr, flush=True)
        return 143, None
    return code, stop.signal


class _Tick:
    """What the launcher does every 50 ms while a launch runs (mpips.launch.processes.run_command):
    watch the ranks' start-up (mpips.launch.ranks) and, once a stop was asked for, pass SIGUSR1 on
    as soon as the ranks hold it and end the launch past ``stop_grace`` seconds. Returns
    the exit code the launch must end with, or None to go on."""

    def __init__(self, argv, markers: str, expected: int | None, stop: StopRequests,
                 stop_grace: float):
        self.argv, self.markers, self.expected = argv, markers, expected
        self.stop, self.stop_grace = stop, stop_grace
        self.watch: StartupWatch | None = None
        self.forwarded, self.deadline = False, None

    def __call__(self, proc) -> int | None:
        if self.watch is None:
            self.watch = StartupWatch(proc.pid, self.argv, self.markers, self.expected)
        verdict = self.watch.poll()
        if self.stop.signal is not None:
            return self._stopping(proc)
        if verdict is not None:
            print(f"mpips launch: {verdict.message}", file=sys.stderr, flush=True)
            return verdict.code
        return None

    def _stopping(self, proc) -> int | None:
        now, signame = time.monotonic(), self.stop.signal
        if self.deadline is None:
            self.deadline = now + self.stop_grace
            print(f"mpips launch: got {signame}: asking the ranks to checkpoint at their next "
                  f"step boundary and stop (up to {self.stop_grace:g} s; SIGTERM or Ctrl-C "
                  f"again kills the launch at once)", file=sys.stderr, flush=True)
        if not self.forwarded and self.watch.holding():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGUSR1)  # mpiexec passes it on to every rank
            self.forwarded = True
        if now >= self.deadline:
            print(f"mpips launch: the job did not stop within {self.stop_grace:g} s; launch "
                  f"killed", file=sys.stderr, flush=True)
            return 128 + signal.SIGTERM
        return None


# --------------------------------------------------------------------------- CLI

def add_launch_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``mpips launch -n P [--ft] [--no-warmup] [--timeout S] -- ARGV...``."""
    parser = subparsers.add_parser(
        "launch", help="start python ARGV on P ranks with this environment's mpiexec",
        description="Run 'mpiexec -n P <this python> ARGV...' with the flags and environment "
                    "this environment's MPI needs (e.g. mpips launch -n 4 -- -m mpips run "
                    "sparse_lr --servers 2).")
    parser.add_argument("-n", "--np", dest="nprocs", type=int, required=True,
                        help="number of ranks")
    parser.add_argument("--ft", action="store_true",
                        help="enable fault tolerance (Open MPI ULFM: --with-ft ulfm)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip compiling the numba kernels before the launch")
    parser.add_argument("--timeout", type=float, default=None,
                        help="kill the launch after this many seconds (exit code 124)")
    parser.add_argument("--relaunch", type=int, default=0, metavar="N",
                        help="when a rank dies (exit code %d), launch again on one rank fewer, "
                             "up to N times; the job resumes with --checkpoint-dir ... --resume "
                             "(default 0)" % EXIT_RANK_LOST)
    parser.add_argument("--stop-grace", type=float, default=STOP_GRACE, metavar="S",
                        help="on SIGTERM, Ctrl-C or SIGUSR1 the job checkpoints and stops "
                             "(exit code %d); kill it if it takes longer than S seconds "
                             "(default %g)" % (EXIT_STOPPED, STOP_GRACE))
    parser.add_argument("--dry-run", action="store_true",
                        help="print the MPI settings of the launch's environment (MCA "
                             "parameters and the like, as export lines; those you set "
                             "yourself marked '# yours') and the mpiexec command line, "
                             "then exit")
    parser.add_argument("argv", nargs=argparse.REMAINDER,
                        help="python arguments, after '--' (e.g. -- -m mpips run JOB ...)")
    parser.set_defaults(handler=launch_main)
    return parser


def launch_main(args: argparse.Namespace) -> int:
    """Handler of ``mpips launch``; returns the exit code."""
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("mpips launch: nothing to run; give python arguments after '--', e.g. "
              "mpips launch -n 4 -- -m mpips run sparse_lr", file=sys.stderr)
        return 2
    try:
        if args.dry_run:
            command, env = mpiexec_command(args.nprocs, argv, ft=args.ft)
            print("\n".join(launch_settings(env, os.environ)))
            print(shlex.join(command))
            return 0
        if args.relaunch < 0:
            raise LauncherError(f"--relaunch must be 0 or more, got {args.relaunch}")
        return launch(args.nprocs, argv, timeout=args.timeout, ft=args.ft, warmup=args.warmup,
                      relaunch=args.relaunch, stop_grace=args.stop_grace)
    except LauncherError as exc:
        print(f"mpips launch: error: {exc}", file=sys.stderr)
        return 2
