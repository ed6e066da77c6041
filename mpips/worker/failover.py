"""A worker carrying on when a server dies: ``ServerFailover``, its resender (ps-lite's
Resender), which KVWorker makes only in a launch with replicas (API layer;
mpips.server.replication is the servers' side). Without replicas the worker has none: a
dead server's error goes on to mpips.mpi.fault and the job leaves with EXIT_RANK_LOST.

Every request part a worker posts is remembered with its segment (mpips.core.hosting) and its
sequence number until its operation completes (mpips.worker.requests: Pending, Part). When a
server dies (ULFM: a request to it fails), the failover computes the segments' new hosts from
the dead servers, as every rank does, and posts again, in the order first sent, every part of
every operation in flight that went to a dead server: same keys, values and output rows,
same sequence number, a new request id. A resent push is vouched for at once (it was checked
when first sent); the new host answers it without applying it again if the dead server's
rows for it had reached the replica. When both holders of a segment died, the error goes on
to mpips.mpi.fault as without replicas.

KVWorker calls it at two hooks: ``wait`` (the wait for an operation's replies, which posts
again and waits again after a death; ``surviving`` for any other MPI call that may meet a
dead server) and ``post_failed`` / ``after_posting`` (a post that found its server dead, then
the failover once the operation is fully posted). Nothing here is collective: each rank
fails over on its own, and all reach the same hosting.
"""
from __future__ import annotations

import time

from mpi4py import MPI

from ..core.hosting import Hosting
from ..errors import SegmentLost
from ..mpi.fault import failed_ranks, is_rank_failure, note_carried_on
from ..mpi.transport import wait_all
from ..wire.message import Status
from .requests import Pending, Requests

DEATH_NOTICE_SECONDS = 10.0
"""How long a worker whose request failed waits for MPI to name the dead server."""


class ServerFailover:
    """The resender of one worker in a launch with replicas. It owns the current ``hosting``
    (who serves each segment, given the dead servers; replicas > 0), the ``graveyard`` of
    requests to dead servers (never freed: mpips.mpi.fault.leave) and the errors of posts
    that found their server dead. It reads the operations in flight from ``requests`` and
    posts a lost part again through ``post``, the worker's part-posting function
    (KVWorker._post: ``post(pending, op, spec, segment, keys, vals, out, seq=, verdict=)``,
    returning the request id); a resent push is vouched for at once through ``vouch``
    (Poster.verdict: ``vouch(pending, dest, request_id, status)``)."""

    def __init__(self, topology, requests: Requests, post, vouch, hosting: Hosting):
        if not hosting.replicas:
            raise ValueError("a server failover needs a hosting with replicas")
        self.topology = topology
        self.comm = topology.data
        self.requests = requests
        self.post = post
        self.vouch = vouch
        self.hosting = hosting  # who serves each segment now
        self.graveyard: list = []  # requests to dead servers: never freed (mpips.mpi.fault.leave)
        self.unposted: list = []  # errors of posts to servers that died

    def wait(self, pending: Pending) -> None:
        """Wait for ``pending``'s messages; after a server died, post again what went to it
        and wait again. An operation in ``requests`` was posted again by the failover itself;
        one outside it (a SAVE, which has no parts) just drops its requests to the dead."""
        while not self.surviving(self._wait_replies, pending):
            self._repost(pending, self._dead_ranks())

    def surviving(self, action, *args) -> bool:
        """Run ``action(*args)``; False (after failing over) when it failed because a
        server died, True when it succeeded."""
        try:
            action(*args)
            return True
        except MPI.Exception as exc:
            if not is_rank_failure(exc):
                raise
            self._fail_over(exc)
            return False

    def post_failed(self, exc: MPI.Exception) -> None:
        """Posting to a server failed: it died. The part stays recorded and is posted again
        to the segment's new host in ``after_posting``."""
        if not is_rank_failure(exc):
            raise exc
        self.unposted.append(exc)

    def after_posting(self) -> None:
        """Fail over for every post that found its server dead."""
        while self.unposted:
            self._fail_over(self.unposted.pop())

    def _dead_ranks(self) -> set[int]:
        return {self.topology.layout.server_rank(s) for s in self.hosting.dead}

    def _wait_replies(self, pending: Pending) -> None:
        """Wait for ``pending``'s messages. A reply that arrived empty means its server died
        (ULFM may complete a receive from a dead rank with no data and no error): raise as
        MPI would."""
        wait_all(pending.requests)
        if any(not reply.any() for *_, reply in pending.replies):
            raise MPI.Exception(MPI.ERR_PROC_FAILED)

    def _fail_over(self, exc: MPI.Exception) -> None:
        """A request failed because a rank died: find the dead servers, move their segments
        to the new hosts and post again every part of every operation in flight that went
        to a dead server. Re-raises ``exc`` when no server died, or a segment was lost."""
        layout = self.topology.layout
        deadline = time.monotonic() + DEATH_NOTICE_SECONDS
        while True:
            dead = {layout.server_index(r) for r in failed_ranks(self.comm)
                    if layout.is_server(r)} - self.hosting.dead
            if dead or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        if not dead:
            raise exc
        try:
            self.hosting = self.hosting.after_deaths(dead)
        except SegmentLost as lost:
            self.topology.log(str(lost))
            raise exc from None
        note_carried_on()
        dead_ranks = {layout.server_rank(s) for s in dead}
        resent = 0
        requests = self.requests
        for ts in requests.in_flight():
            resent += self._repost(requests.pending[ts], dead_ranks)
        self.graveyard += [c for c in requests.clock_sends if c[2] in dead_ranks]
        requests.clock_sends = [c for c in requests.clock_sends if c[2] not in dead_ranks]
        self.topology.log(f"server(s) {sorted(dead)} died: resent {resent} request(s) to "
                          f"the servers that took over their keys")

    def _repost(self, pending: Pending, dead_ranks: set[int]) -> int:
        """Post again the parts of ``pending`` that went to ``dead_ranks``; returns how many."""
        alive = [(r, d) for r, d in zip(pending.requests, pending.dests) if d not in dead_ranks]
        self.graveyard += [r for r, d in zip(pending.requests, pending.dests) if d in dead_ranks]
        pending.requests, pending.dests = [r for r, _ in alive], [d for _, d in alive]
        pending.replies = [r for r in pending.replies if r[0] not in dead_ranks]
        pending.expand = [e for e in pending.expand if e[0] not in dead_ranks]
        lost = [p for p in pending.parts if p.dest in dead_ranks]
        pending.parts = [p for p in pending.parts if p.dest not in dead_ranks]
        for part in lost:
            request_id = self.post(pending, part.op, part.spec, part.segment, part.keys,
                                   part.vals, part.out, seq=part.seq, verdict=part.verdict)
            if part.verdict:  # checked when first sent; the post recorded its new host last
                dest, _ = pending.verdicts[-1]
                self.vouch(pending, dest, request_id, Status.OK)
        return len(lost)
