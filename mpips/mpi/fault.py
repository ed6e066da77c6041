"""Noticing that a rank died and leaving the job cleanly (MPI layer).

With Open MPI's ULFM (``mpips launch --ft``, i.e. ``mpiexec --with-ft ulfm``) a SIGKILLed rank
surfaces on the ranks that talk to it as MPI_ERR_PROC_FAILED (or ..._PENDING for a receive
from any source). :func:`rank_lost` revokes the launch's communicators, so every other
survivor's pending or next operation fails with MPI_ERR_REVOKED instead of waiting forever,
and names the dead ranks and their roles. Each survivor then raises :class:`RankLost`, and
``mpips run`` exits with :data:`EXIT_RANK_LOST`; ``mpips launch --relaunch N`` starts the
job again on the remaining ranks, which resumes from the newest checkpoint.

Without ULFM (MPICH, or a launch without ``--ft``) mpiexec itself tears the launch down when
a rank dies; ``mpips launch`` maps that outcome to the same exit code (mpips.launch.launcher).
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from typing import NoReturn

from mpi4py import MPI

from ..launch import startup
from ..errors import EXIT_RANK_LOST, MpipsError, RankLost
from ..core.partition import Layout

__all__ = ["EXIT_RANK_LOST", "RankLost", "carried_on_past_a_failure", "failure_classes",
           "is_rank_failure", "leave", "lost_during_init", "rank_lost", "ulfm_launch",
           "survive_collective"]


@functools.cache
def failure_classes() -> frozenset[int]:
    """MPI error classes that mean "a process failed" (empty without ULFM support: MPICH's
    mpi4py maps the three names to one generic class)."""
    names = ("ERR_PROC_FAILED", "ERR_PROC_FAILED_PENDING", "ERR_REVOKED")
    classes = {getattr(MPI, name, None) for name in names}
    if None in classes or len(classes) != len(names) or not hasattr(MPI.Comm, "Revoke"):
        return frozenset()
    return frozenset(classes)


def is_rank_failure(exc: BaseException) -> bool:
    """True when ``exc`` is an MPI error saying a process failed or a communicator was
    revoked because one did."""
    return isinstance(exc, MPI.Exception) and exc.Get_error_class() in failure_classes()


def failed_ranks(comm: MPI.Comm) -> tuple[int, ...]:
    """Ranks of ``comm`` this process knows to have failed (empty if MPI cannot say)."""
    try:
        failed = comm.Get_failed()
        try:
            ranks = MPI.Group.Translate_ranks(failed, list(range(failed.Get_size())),
                                              comm.Get_group())
        finally:
            failed.Free()
    except (MPI.Exception, NotImplementedError, AttributeError):
        return ()
    return tuple(sorted(r for r in ranks if r != MPI.UNDEFINED))


def describe(ranks: tuple[int, ...], layout: Layout) -> str:
    """``rank 3 (server 1), rank 0 (worker 0)`` for world ranks of ``layout``."""
    def role(rank: int) -> str:
        if layout.is_server(rank):
            return f"server {layout.server_index(rank)}"
        return f"worker {layout.worker_index(rank)}"
    return ", ".join(f"rank {r} ({role(r)})" for r in ranks) or "a rank MPI did not name"


def rank_lost(topology, exc: BaseException) -> RankLost:
    """Revoke ``topology``'s communicators (so no survivor waits forever on the dead rank),
    log which ranks died, and return the RankLost to raise. Local: not collective (the other
    ranks find out through the revoked communicators)."""
    for comm in (topology.group, topology.data):
        if comm is not None and comm != MPI.COMM_NULL:
            try:
                if not comm.Is_revoked():
                    comm.Revoke()
            except (MPI.Exception, NotImplementedError, AttributeError):
                pass
    lost = failed_ranks(topology.data)  # data is a duplicate of the launch's communicator
    reason = exc.Get_error_string() if isinstance(exc, MPI.Exception) else str(exc)
    message = (f"lost {describe(lost, topology.layout)}: {reason.split(':')[0]}; leaving with "
               f"exit code {EXIT_RANK_LOST} (relaunch on the remaining ranks to resume from "
               f"the newest checkpoint: mpips launch --relaunch)")
    topology.log(message)
    return RankLost(message, lost)


def leave(code: int) -> NoReturn:
    """End this process with exit code ``code`` at once, without MPI_Finalize, output flushed
    (and the exit reported to the launcher, mpips.launch.startup).

    For a process that carried on past a dead rank (or is leaving because of one): Open MPI
    5.0.11's MPI_Finalize then waits forever for the dead process in about 3 of 100 launches
    (seen in a bare mpi4py revoke/shrink program; none in 100 with os._exit). A ULFM launch
    (``--with-ft ulfm``) counts a process that exits without finalizing as a normal exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    startup.report_exit(code)
    os._exit(code)


def abort_launch(label: str, exc: BaseException) -> NoReturn:
    """An error on this rank alone, which the other ranks may be waiting on (a reply, a
    collective): print it, each line labelled (``label``, e.g. "[mpips rank 2/4]"), as one
    line for an MpipsError (a named problem) or as the traceback otherwise, and abort the
    whole launch (MPI_Abort) so that no rank is left hanging. The line (a traceback's last
    one) is also left for ``mpips launch`` to repeat (mpips.launch.startup.report_abort)."""
    if isinstance(exc, MpipsError):
        lines = [f"{label} error: {type(exc).__name__}: {exc}"]
    else:
        lines = [f"{label} {line}"
                 for line in "".join(traceback.format_exception(exc)).rstrip().splitlines()]
    print("\n".join(lines), file=sys.stderr, flush=True)
    startup.report_abort(lines[-1])  # for the launcher: MPI_Abort may outrun the output
    MPI.COMM_WORLD.Abort(1)
    raise SystemExit(1)  # not reached: MPI_Abort ends the process


def lost_during_init(label: str, exc: BaseException) -> NoReturn:
    """A rank died while ``mpips.init`` ran (ULFM): revoke the launch's communicator so that
    no survivor waits on it, say so and leave with EXIT_RANK_LOST, as a rank lost later
    would (a relaunch resumes). Local: not collective."""
    with contextlib.suppress(MPI.Exception, NotImplementedError, AttributeError):
        if not MPI.COMM_WORLD.Is_revoked():
            MPI.COMM_WORLD.Revoke()
    reason = exc.Get_error_string() if isinstance(exc, MPI.Exception) else str(exc)
    print(f"{label} lost a rank during mpips.init: {reason.split(':')[0]}; leaving with exit "
          f"code {EXIT_RANK_LOST} (relaunch on the remaining ranks: mpips launch --relaunch)",
          file=sys.stderr, flush=True)
    leave(EXIT_RANK_LOST)


_carried_on = False


def note_carried_on() -> None:
    """Record that this process went on after a rank died (mpips.server.survivors, shrink)."""
    global _carried_on
    _carried_on = True


def carried_on_past_a_failure(comm: MPI.Comm) -> bool:
    """In a ULFM launch: whether this process went on after a rank died, or knows that a
    process of ``comm`` (the launch's) died, so it must ``leave`` rather than finalize.
    False in other launches."""
    return ulfm_launch() and (_carried_on or bool(failed_ranks(comm)))


def ulfm_launch() -> bool:
    """Whether this launch runs with ULFM fault tolerance (Open MPI ``--with-ft ulfm``, which
    sets OMPI_MCA_mpi_ft_enable=1 in every rank's environment)."""
    return bool(failure_classes()) and os.environ.get("OMPI_MCA_mpi_ft_enable") == "1"


def survive_collective(topology, operation):
    """``operation(topology.group)``, a collective over this rank's role; returns its
    result. In a ULFM launch, a member that dies during it is survived: the others agree
    (MPI_Comm_agree) that the operation failed somewhere, shrink the communicator to the
    living, store it as ``topology.group`` and run ``operation`` again among themselves, so
    it must be safe to repeat. Collective over ``topology.group``."""
    while True:
        group = topology.group
        try:
            result, ok = operation(group), True
        except MPI.Exception as exc:
            if not is_rank_failure(exc) or not ulfm_launch():
                raise
            result, ok = None, False
        if not ulfm_launch() or _agreed(group, ok):
            return result
        _shrink_group(topology)


def _agreed(comm: MPI.Comm, ok: bool) -> bool:
    """True when ``ok`` holds on every living member (a uniform answer; False if a failure
    surfaced during the agreement itself)."""
    comm.Ack_failed()
    try:
        return bool(comm.Agree(int(ok)))
    except MPI.Exception as exc:
        if not is_rank_failure(exc):
            raise
        return False


def _shrink_group(topology) -> None:
    old = topology.group
    lost = failed_ranks(old)
    with contextlib.suppress(MPI.Exception):
        old.Revoke()
    topology.group = old.Shrink()
    topology.group.Set_errhandler(MPI.ERRORS_RETURN)
    note_carried_on()
    group, world = old.Get_group(), topology.data.Get_group()
    names = MPI.Group.Translate_ranks(group, list(lost), world) if lost else []
    group.Free()
    world.Free()
    if topology.group.Get_rank() == 0:
        role = "servers" if topology.is_server else "workers"
        topology.log(f"lost {describe(tuple(names), topology.layout)}; "
                     f"{topology.group.Get_size()} {role} carry on without it")
