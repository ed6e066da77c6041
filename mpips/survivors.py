"""A server carrying on when a worker dies (MPI layer; Open MPI ULFM launches, ``--ft``).

Servers hold the whole model, so a dead worker loses nothing that was acknowledged: the
server acknowledges the failure (so receives from any source work again), rolls back the push
the worker was in the middle of (mpips.undo: a push is all or nothing), drops its parked
pulls, retires it from the clock scheduler so BSP/SSP clocks stop waiting for it, and lets a
checkpoint save go ahead without it. A dead *server* is another matter: its key ranges are
gone, so the error goes on to mpips.fault and the job leaves with EXIT_RANK_LOST.

Without ULFM no error is a process failure (mpips.fault.failure_classes is empty) and every
method here is a plain pass-through.
"""
from __future__ import annotations

from mpi4py import MPI

from .fault import failed_ranks, is_rank_failure
from .transport import wait_all


class Survivors:
    """The failure handling of one KVServer (``server``)."""

    def __init__(self, server):
        self.server = server
        self.dead: set[int] = set()  # world ranks known dead and handled
        self.noticed = False  # a failure surfaced where it could not be handled yet

    def wait(self, requests: list, statuses) -> None:
        """wait_all, handling dead workers on the way: a receive from any source fails
        (MPI_ERR_PROC_FAILED_PENDING) while a failure is unacknowledged, and stays posted."""
        while True:
            try:
                return wait_all(requests, statuses)
            except MPI.Exception as exc:
                if not is_rank_failure(exc):
                    raise
                self.handle()

    def run(self, action) -> None:
        """Run ``action`` (receiving or answering one request); if its worker died in the
        middle, abandon the request and handle the death."""
        try:
            action()
        except MPI.Exception as exc:
            if not is_rank_failure(exc):
                raise
            self.server.abandon_request()
            self.noticed = True
        if self.noticed:
            self.handle()

    def complete(self, requests: list) -> None:
        """Complete every request, skipping the ones whose peer died (noted for later)."""
        for request in requests:
            try:
                wait_all([request])
            except MPI.Exception as exc:
                if not is_rank_failure(exc):
                    raise
                self.noticed = True

    def handle(self) -> None:
        """Acknowledge the failures MPI knows of and retire every newly dead worker; a dead
        server re-raises (mpips.fault takes over: the job leaves with EXIT_RANK_LOST)."""
        srv = self.server
        self.noticed = False
        srv.comm.Ack_failed()
        layout = srv.topology.layout
        for rank in sorted(set(failed_ranks(srv.comm)) - self.dead):
            self.dead.add(rank)
            if layout.is_server(rank):
                raise MPI.Exception(MPI.ERR_PROC_FAILED)
            worker = layout.worker_index(rank)
            srv.topology.log(f"worker {worker} (rank {rank}) died: serving the others without "
                             f"it (its acknowledged pushes stay applied)")
            srv.live_workers.discard(rank)
            srv.run_items(srv.scheduler.on_worker_gone(worker, dead=True))
            srv.scheduler.take_dropped()  # its parked pulls: nobody will read the answers
            srv.saves.on_worker_gone(srv.live_workers)
