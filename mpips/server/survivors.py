"""A server carrying on when a worker dies (MPI layer; Open MPI ULFM launches, ``--ft``).

Servers hold the whole model, so a dead worker loses nothing that was acknowledged: the
server acknowledges the failure (so receives from any source work again), rolls back the push
the worker was in the middle of (mpips.store.undo: a push is all or nothing), drops its parked
pulls, retires it from the clock scheduler so BSP/SSP clocks stop waiting for it, and lets a
checkpoint save go ahead without it. A dead *server* is another matter: with replicas its
segments are taken over (mpips.server.replication); without, its key ranges are gone, so the error
goes on to mpips.mpi.fault and the job leaves with EXIT_RANK_LOST.

KVServer makes Survivors only in a launch that can survive a rank (ULFM, or replicas); it
gives it narrow callbacks: ``abandon()`` rolls back the request in progress, ``retire(rank)``
serves on without a dead worker, and the Replicator (or None) takes over dead servers'
segments and has receives of its own the serve loop must wait on.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from ..errors import SegmentLost
from ..mpi.fault import failed_ranks, is_rank_failure, note_carried_on
from ..wire.message import HEADER_WORDS
from ..mpi.transport import TAG_REQUEST, wait_all, wait_any


def _survivable(exc: MPI.Exception) -> bool:
    """A process failure a server can carry on after; not a revoked communicator, which
    means the job is ending (mpips.mpi.fault revoked it): the server leaves with the others."""
    return is_rank_failure(exc) and exc.Get_error_class() != MPI.ERR_REVOKED


class Survivors:
    """The failure handling of one server rank, on its data communicator ``comm``."""

    def __init__(self, comm: MPI.Intracomm, layout, log: Callable[[str], None], *,
                 abandon: Callable[[], None], retire: Callable[[int], None],
                 replication=None):
        self.comm, self.layout, self.log = comm, layout, log
        self.abandon, self.retire = abandon, retire
        self.replication = replication
        self.dead: set[int] = set()  # world ranks known dead and handled
        self.noticed = False  # a failure surfaced where it could not be handled yet
        self._posted: dict[int, tuple] = {}  # world rank -> (its posted request receive, buffer)

    def next_request(self, remaining: set[int]) -> tuple[int, np.ndarray] | None:
        """(source, header) of the next request from a worker in ``remaining`` (world
        ranks), receiving from each worker on its own, not from any source: a receive from
        any source can keep failing with MPI_ERR_PROC_FAILED_PENDING after the failure was
        acknowledged (seen with Open MPI 5.0), one from a dead worker fails once. None when
        a worker died meanwhile (handled; ask again)."""
        for rank in remaining:
            if rank not in self._posted:
                buf = np.empty(HEADER_WORDS, np.uint64)
                self._posted[rank] = (self.comm.Irecv(buf, rank, TAG_REQUEST), buf)
        ranks = list(self._posted)
        requests = [self._posted[r][0] for r in ranks]
        replication = self.replication
        try:
            index = wait_any(requests + (replication.waitables() if replication else []))
            if index >= len(ranks):  # a replica batch or ack (mpips.server.replication)
                replication.progress()
                return None
        except MPI.Exception as exc:
            if not _survivable(exc):
                raise
            self.handle()
            return None
        rank = ranks[index]
        return rank, self._posted.pop(rank)[1]

    def close(self) -> None:
        """Cancel the receives still posted (workers that said DONE get none)."""
        for request, _ in self._posted.values():
            request.Cancel()
            with contextlib.suppress(MPI.Exception):
                request.Wait()
        self._posted.clear()

    def run(self, action) -> None:
        """Run ``action`` (receiving or answering one request); if its worker died in the
        middle, abandon the request and handle the death."""
        try:
            action()
        except MPI.Exception as exc:
            if not _survivable(exc):
                raise
            self.abandon()
            self.noticed = True
        if self.noticed:
            self.handle()

    def complete(self, requests: list) -> None:
        """Complete every request, skipping the ones whose peer died (noted for later)."""
        for request in requests:
            try:
                wait_all([request])
            except MPI.Exception as exc:
                if not _survivable(exc):
                    raise
                self.noticed = True

    def handle(self) -> None:
        """Acknowledge the failures MPI knows of, take over the segments of newly dead servers
        (with replicas; else, or when a segment is lost, raise: mpips.mpi.fault takes over and
        the job leaves with EXIT_RANK_LOST) and retire every newly dead worker."""
        self.noticed = False
        self.comm.Ack_failed()
        layout = self.layout
        newly = sorted(set(failed_ranks(self.comm)) - self.dead)
        servers = {layout.server_index(r) for r in newly if layout.is_server(r)}
        if servers:
            if self.replication is None:
                raise MPI.Exception(MPI.ERR_PROC_FAILED)
            try:
                self.replication.on_servers_dead(servers)
            except SegmentLost as exc:
                self.log(str(exc))
                raise MPI.Exception(MPI.ERR_PROC_FAILED) from None
        for rank in newly:
            self.dead.add(rank)
            self._posted.pop(rank, None)  # its receive failed with it
            if layout.is_server(rank):
                continue
            worker = layout.worker_index(rank)
            note_carried_on()
            self.log(f"worker {worker} (rank {rank}) died: serving the others without it "
                     f"(its acknowledged pushes stay applied)")
            self.retire(rank)
