"""Point-to-point plumbing of the data path: tags and polite waiting (MPI layer).

Requests travel on ``TAG_REQUEST``; the payload and the reply of request ``rid`` use
``Tags.payload(rid)`` and a push's verdict (mpips.wire.message) ``Tags.verdict(rid)``, so a worker may have many requests in flight to one server and MPI's
non-overtaking rule keeps each stream in order.
"""
from __future__ import annotations

import os
import time

from mpi4py import MPI

from ..launch.startup import prctl

TAG_REQUEST = 1
TAG_BASE = 16
SPIN_SECONDS = 200e-6
"""How long an idle wait spins before it sleeps, when the ranks of a node share cores."""
DEDICATED_SPIN_SECONDS = 20e-3
"""The same when every rank of the node has a core of its own (see ``use_dedicated_cores``)."""
MAX_SLEEP_SECONDS = 1e-3
SLEEP_FRACTION = 0.125
"""An idle wait sleeps this share of the time it has waited so far (at least 10 µs, at most
MAX_SLEEP_SECONDS), so a message that arrives during a sleep waits at most about this share
longer again (doubling sleeps could add up to the whole wait)."""
_spin = SPIN_SECONDS
_shared = True  # whether this rank shares its core (see use_dedicated_cores)


def use_dedicated_cores(dedicated: bool) -> None:
    """Whether this rank has a core to itself. Waits then spin DEDICATED_SPIN_SECONDS before
    sleeping: a message that arrives while a wait sleeps waits for the sleep to end, which
    for a reply that takes a millisecond can add half of it again."""
    global _spin, _shared
    _spin = DEDICATED_SPIN_SECONDS if dedicated else SPIN_SECONDS
    _shared = not dedicated


TIMER_SLACK_NANOSECONDS = 1000
"""Timer slack of a rank's sleeps (Linux ``PR_SET_TIMERSLACK``). The kernel's default of 50 µs
made a 10 µs sleep of an idle wait last about 80 µs here, and a message that arrives during
a sleep waits for it to end; with 1 µs such a sleep lasts about 30 µs."""
_PR_SET_TIMERSLACK = 29


def tighten_timer_slack() -> None:
    """Let this process's sleeps end close to when they were asked to end (Linux only;
    elsewhere, or if the kernel refuses, sleeps keep the system's slack)."""
    prctl(_PR_SET_TIMERSLACK, TIMER_SLACK_NANOSECONDS)


PIN_VARIABLE = "MPIPS_PIN_RANKS"
"""Set to 1 to have ``mpips.init`` pin ranks that outnumber their node's cores (share_cores).
Off by default: with it, a launch that lost two servers at once hung in about 3 of 100 drills
(both survivors then shared one core), and none of 60 without it."""


def share_cores(place: int) -> None:
    """Pin this rank to one CPU of those it may use: the ``place``-th, round robin. For a node
    whose ranks outnumber its cores and were left unbound: the scheduler tends to put two
    servers that wake each other (a replica's ack) on one core while another core holds a
    sleeping worker, and a replicated push then took twice as long in some launches. With
    servers first in ``place`` (mpips.mpi.topology), servers get cores of their own first.
    Only with MPIPS_PIN_RANKS=1 (PIN_VARIABLE)."""
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[place % len(cpus)]})


class Tags:
    """Payload tags for request ids, within the tag bound of ``comm``."""

    def __init__(self, comm: MPI.Comm):
        upper = comm.Get_attr(MPI.TAG_UB) or 32767
        self.span = min(1 << 20, (int(upper) - TAG_BASE) // 2)

    def payload(self, request_id: int) -> int:
        return TAG_BASE + request_id % self.span

    def verdict(self, request_id: int) -> int:
        """A tag of its own, so verdicts can be awaited out of request order."""
        return TAG_BASE + self.span + request_id % self.span


def wait_all(requests: list[MPI.Request], statuses: list[MPI.Status] | None = None) -> None:
    """Wait for ``requests``: spin while they keep completing, sleep with backoff when idle.

    Busy-waiting ranks starve each other when there are more ranks than cores, so a wait
    that sees no completion for SPIN_SECONDS (DEDICATED_SPIN_SECONDS when every rank has a
    core: ``use_dedicated_cores``) sleeps between tests (every test still enters
    the library, so MPI keeps progressing). While completions keep coming, as when a large
    message streams chunk by chunk, it does not sleep: MPICH moves large messages through
    shared memory only while the sender is inside MPI. ``statuses``, when given, receives
    one status per request.
    """
    remaining = len(requests)
    if statuses is None:  # a failed request's error (e.g. a dead peer) is only in its status
        statuses = [MPI.Status() for _ in requests]
    idle_since = time.perf_counter()
    while remaining:
        try:
            done = MPI.Request.Testsome(requests, statuses)
        except MPI.Exception as exc:
            _raise_request_error(exc, statuses)
        if done is None:  # no active request left
            return
        if done:
            raise_failed(statuses)  # a request to a dead rank may complete in error
            remaining -= len(done)
            idle_since = time.perf_counter()
        else:
            _idle(time.perf_counter() - idle_since)


def _idle(waited: float) -> None:
    """Between two tests of a wait that has seen nothing for ``waited`` seconds: spin for the
    first ``_spin`` seconds (yielding the core at each turn when ranks share cores: a worker
    waiting for a reply must not hold up the server that makes it), then sleep a share of
    the time waited (SLEEP_FRACTION)."""
    if waited > _spin:
        time.sleep(min(max(SLEEP_FRACTION * waited, 1e-5), MAX_SLEEP_SECONDS))
    elif _shared:  # a core shared with other ranks: let them run meanwhile
        os.sched_yield()


def raise_failed(statuses) -> None:
    """Raise the error of the first status that holds one (e.g. MPI_ERR_PROC_FAILED)."""
    for status in statuses:
        if status.Get_error() not in (MPI.SUCCESS, MPI.ERR_PENDING):
            raise MPI.Exception(status.Get_error())


def _raise_request_error(exc: MPI.Exception, statuses) -> None:
    """Re-raise MPI_ERR_IN_STATUS as the error of the request that failed (e.g.
    MPI_ERR_PROC_FAILED, which mpips.mpi.fault recognises), else ``exc`` itself."""
    if exc.Get_error_class() == MPI.ERR_IN_STATUS:
        try:
            raise_failed(statuses)
        except MPI.Exception as failed:
            raise failed from None
    raise exc


def wait_one(request: MPI.Request) -> None:
    """``wait_all`` for one request."""
    wait_all([request])


def completed(requests) -> bool:
    """Whether ``requests`` (one MPI.Request or a list) have all completed, without waiting.
    False when one failed (e.g. its peer died): a later wait for them reports the error."""
    try:
        if isinstance(requests, MPI.Request):
            return requests.Test()
        return MPI.Request.Testall(requests)
    except MPI.Exception:
        return False

TAG_REPLICA = 2
"""Replica batches between servers (mpips.wire.replica): header and payload, in order."""
TAG_REPLICA_ACK = 3


_PARENT = os.getppid()  # the launcher's daemon (see wait_any)


def wait_any(requests: list) -> int:
    """Index of the first of ``requests`` to complete (sleeping with backoff while idle).
    Raises the error of a request that completed in error (a dead peer), and
    MPI_ERR_PROC_FAILED when this rank's launcher daemon is gone: the launch has
    ended around it, and no failure notice will ever come again."""
    idle_since, checked = time.perf_counter(), time.monotonic()
    status = MPI.Status()
    while True:
        index, done = MPI.Request.Testany(requests, status)
        if done and index != MPI.UNDEFINED:
            raise_failed([status])  # e.g. a receive from a dead rank
            return index
        _idle(time.perf_counter() - idle_since)
        if time.monotonic() - checked > 1.0:
            checked = time.monotonic()
            if os.getppid() != _PARENT:
                raise MPI.Exception(MPI.ERR_PROC_FAILED)
