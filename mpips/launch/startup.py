"""What a rank of ``mpips run`` does from its very first line, before numpy, numba, mpi4py and
the job load (pure module: standard library only, cheap to import).

* **Stop signals never kill a starting rank.** SIGUSR1 and SIGTERM ask a job to checkpoint and
  stop (mpips.ckpt.checkpoint.SaveSignal), but a rank starts with their default action, which kills
  it, and the imports, MPI_Init and the job's data take seconds before the job installs its
  SaveSignal. :func:`hold_stop_signals` handles them from the first line: SIGUSR1 (time is
  running out) is held, and SaveSignal takes it over (:func:`take_over`: the job then saves
  and stops at its first step boundary); SIGTERM (scancel, a time limit: SIGKILL follows
  within seconds) ends the rank at once with EXIT_STOPPED, since this run has nothing to save
  yet. A job that starts running without a SaveSignal gets the default actions back, a held
  signal included (:func:`release`), as if it had arrived only then.
* **A rank dies with its launcher.** :func:`die_with_parent` asks Linux to SIGKILL this
  process when its parent (mpiexec's daemon, Hydra's proxy, slurmstepd) exits, so that no
  rank outlives its launch, however the launch ended (PR_SET_PDEATHSIG). MPIPS_PDEATHSIG=0
  turns it off.
* **Start-up progress is visible.** With MPIPS_STARTUP_DIR set (``mpips launch`` and
  slurm/train.sbatch set it), the rank creates empty files ``<host>-<pid>.<stage>`` there:
  ``held`` (stop signals held: a signal no longer kills it), ``init-failed`` (MPI_Init
  returned an error: :func:`init_failed`), ``ready`` (``mpips.init`` done on this rank),
  ``survived`` (the job carried on past a dead rank: that rank's missing ``exit-*`` is
  known) and ``exit-<code>`` (it leaves normally). A launcher that sees a rank vanish before
  ``ready`` without an ``exit-*`` file knows it died during start-up; one whose mpiexec
  exits 0 while a ``ready`` rank has no ``exit-*`` file, and no rank ``survived``, knows the
  launch was torn down (mpips.launch.ranks).
* **MPI_Init reports its failure.** Open MPI aborts a process whose MPI_Init fails (a peer
  killed during the exchange of MPI_Init leaves the others "unreachable"), and an abort leaves
  no marker: the launcher could not tell the killed rank from the ones it took down.
  :data:`INITIAL_ERRHANDLER` makes MPI_Init return its error instead (an MPI-4 initial error
  handler; MPICH ignores the variable), and the rank leaves through :func:`init_failed`.
* **ULFM only under Open MPI's mpirun.** Open MPI supports its fault tolerance
  (``--with-ft ulfm``, which sets OMPI_MCA_mpi_ft_enable=1) only for ranks its own mpirun
  started; under srun a failure may hang the job. :func:`ulfm_refusal` names the problem,
  and ``mpips run`` leaves with EXIT_USAGE before MPI_Init.
* **An abort's reason survives the abort.** MPI_Abort may kill the ranks before the launcher
  forwarded what the aborting rank printed just before (MPICH's Hydra lost the line in about
  1 of 12 launches here), so the rank also leaves the line in ``aborts/<host>-<pid>`` under
  MPIPS_STARTUP_DIR (:func:`report_abort`), and ``mpips launch`` repeats it (:func:`aborts`).
"""
from __future__ import annotations

import os
import signal
import socket
import sys
from typing import NoReturn

from ..errors import EXIT_STOPPED

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
STARTUP_DIR_VARIABLE = "MPIPS_STARTUP_DIR"
HELD, READY, EXIT, INIT_FAILED, SURVIVED = "held", "ready", "exit", "init-failed", "survived"
#: Subdirectory of MPIPS_STARTUP_DIR for the lines of ranks that abort the launch (not a
#: marker: its name starts with no host).
ABORTS = "aborts"
#: Open MPI's MCA setting (set in a rank's environment before MPI_Init unless the user set it)
#: that makes a failed MPI_Init return its error rather than abort the process.
INITIAL_ERRHANDLER = ("OMPI_MCA_mpi_initial_errhandler", "mpi_errors_return")
#: Exit code of a rank whose MPI_Init failed.
EXIT_INIT_FAILED = 1
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36

#: Set in the environment of every rank Open MPI's mpirun (PRRTE) starts.
PRTE_LAUNCHED = "PRTE_LAUNCHED"

_held: list[int] = []  # stop signals that arrived while held, in order
_owner = None  # the handler that took the stop signals over (SaveSignal), if any
_reported = False  # this process reported a stage: it speaks the protocol (mpips run)


def _hold(signum, frame) -> None:
    if signum == signal.SIGTERM:
        _leave_stopped("SIGTERM")
    if signum not in _held:
        _held.append(signum)


def _leave_stopped(why: str):
    """End this rank at once with EXIT_STOPPED: stopped before its job had anything to save."""
    print(f"mpips run: got {why} while starting (nothing of this run to save yet); leaving "
          f"with exit code {EXIT_STOPPED}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    report_exit(EXIT_STOPPED)
    os._exit(EXIT_STOPPED)


def begin() -> None:
    """Everything a rank of ``mpips run`` does first: hold the stop signals, die with the
    launcher, and report ``held``."""
    hold_stop_signals()
    die_with_parent()
    report(HELD)


def hold_stop_signals() -> None:
    """From now on record SIGUSR1 instead of dying of it (see :func:`take_over`), and leave
    with EXIT_STOPPED on SIGTERM. No-op outside the main thread."""
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _hold)
    except ValueError:  # not the main thread
        pass


def held() -> str | None:
    """Name of the first stop signal held so far ("SIGUSR1"), or None."""
    return signal.Signals(_held[0]).name if _held else None


def take_over(handler) -> None:
    """Install ``handler(signum, frame)`` for the stop signals and pass it the ones held so
    far, so that a signal that came during start-up is acted on now."""
    global _owner
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    _owner = handler
    for signum in _held:
        handler(signum, None)
    _held.clear()


def release() -> None:
    """The job runs without a handler of its own (no :func:`take_over`): give the stop
    signals their default action back and deliver a held one now (which ends the process,
    as the signal would have without holding). No-op if a handler took them over."""
    if _owner is not None:
        return
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is _hold:
            signal.signal(sig, signal.SIG_DFL)
    pending, _held[:] = list(_held), []
    for signum in pending:
        os.kill(os.getpid(), signum)


def job_done() -> None:
    """The job returned: from now on a stop signal has nothing to stop, so ignore it. Python
    gives the handlers it installed their default action back when the interpreter ends, and
    MPI_Finalize runs after that (an exit hook of mpi4py): a SIGUSR1 or SIGTERM in that
    window killed a rank whose job had finished and saved, and the launch with it."""
    global _owner
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    _owner = signal.SIG_IGN
    _held.clear()


def init_failed(exc: BaseException) -> NoReturn:
    """MPI_Init failed on this rank (``from mpi4py import MPI`` raised ``exc``): say so in one
    line, report ``init-failed`` and leave with EXIT_INIT_FAILED (no MPI call is possible)."""
    host = socket.gethostname().split(".")[0]
    print(f"mpips run: error: MPI_Init failed on {host} (pid {os.getpid()}): {exc} (a rank of "
          f"the launch died during its start-up, or the ranks' transports cannot reach each "
          f"other: see MPI's message above); leaving with exit code {EXIT_INIT_FAILED}",
          file=sys.stderr, flush=True)
    report(INIT_FAILED)
    report_exit(EXIT_INIT_FAILED)
    sys.stdout.flush()
    os._exit(EXIT_INIT_FAILED)


def die_with_parent() -> None:
    """SIGKILL this process when its parent exits (Linux PR_SET_PDEATHSIG; no-op elsewhere
    or with MPIPS_PDEATHSIG=0). If the parent is already gone, leave at once."""
    if not sys.platform.startswith("linux") or os.environ.get("MPIPS_PDEATHSIG") == "0":
        return
    parent = os.getppid()
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() != parent:
        os._exit(1)  # the parent died before the request: nobody would kill us


def prctl(option: int, value: int) -> bool:
    """Linux prctl(option, value); False where it failed or is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def marker_name(stage: str, pid: int | None = None, host: str | None = None) -> str:
    """File name of a progress marker: ``<host>-<pid>.<stage>``."""
    host = host or socket.gethostname().split(".")[0]
    return f"{host}-{pid or os.getpid()}.{stage}"


def report(stage: str) -> None:
    """Create this rank's ``stage`` marker in $MPIPS_STARTUP_DIR (if set and present);
    errors are ignored: the markers only inform the launcher."""
    global _reported
    directory = os.environ.get(STARTUP_DIR_VARIABLE)
    if not directory:
        return
    try:
        with open(os.path.join(directory, marker_name(stage)), "w"):
            pass
        _reported = True
    except OSError:
        pass


def report_exit(code) -> None:
    """Report that this rank leaves normally with ``code`` (an int, None or a message), if it
    reported its start-up before. A plain MPI program that calls ``mpips.init`` itself (not
    ``mpips run``) stays silent: its first marker would make the launcher judge its start-up,
    and take a rank that died after ``mpips.init`` for one that died before (it has no
    ``ready`` marker)."""
    if not _reported:
        return
    number = code if isinstance(code, int) else (0 if code is None else 1)
    report(f"{EXIT}-{number}")


def report_abort(line: str) -> None:
    """Leave ``line`` (why this rank aborts the launch) in $MPIPS_STARTUP_DIR/aborts/ for the
    launcher to repeat, whether or not this process speaks the marker protocol; errors are
    ignored."""
    directory = os.environ.get(STARTUP_DIR_VARIABLE)
    if not directory:
        return
    try:
        os.makedirs(os.path.join(directory, ABORTS), exist_ok=True)
        with open(os.path.join(directory, ABORTS, marker_name("abort")), "w") as f:
            f.write(line)
    except OSError:
        pass


def aborts(directory: str) -> list[str]:
    """The lines ranks left with :func:`report_abort` under ``directory``, oldest first."""
    where = os.path.join(directory, ABORTS)
    try:
        names = os.listdir(where)
    except OSError:
        return []
    found = []
    for name in names:
        try:
            path = os.path.join(where, name)
            with open(path, errors="replace") as f:
                found.append((os.path.getmtime(path), f.read().strip()))
        except OSError:
            continue
    return [line for _, line in sorted(found) if line]


def ulfm_refusal(env) -> str | None:
    """Why this rank must not start: ULFM fault tolerance asked for (OMPI_MCA_mpi_ft_enable=1)
    in a rank that Open MPI's mpirun did not start (srun, Hydra, no launcher); None when
    ULFM is not asked for, or mpirun started the rank."""
    if env.get("OMPI_MCA_mpi_ft_enable") != "1" or env.get(PRTE_LAUNCHED):
        return None
    step = env.get("SLURM_STEP_ID")
    started = f"srun (SLURM job {env.get('SLURM_JOB_ID', '?')}, step {step})" \
        if step is not None else "something other than Open MPI's mpirun"
    return (f"ULFM fault tolerance (OMPI_MCA_mpi_ft_enable=1) needs ranks started by Open "
            f"MPI's mpirun --with-ft ulfm, and this one was started by {started}: Open MPI "
            f"supports ULFM under its own mpirun only (elsewhere a failure may hang the "
            f"job). Launch with mpirun --with-ft ulfm inside the allocation (`mpips launch "
            f"--ft`, or slurm/train.sbatch with MPIPS_FT=1), or unset OMPI_MCA_mpi_ft_enable")


def launch_rank(env) -> int | None:
    """This rank's place in its launch as the launcher told it (before MPI_Init), or None."""
    for name in ("SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    return None
