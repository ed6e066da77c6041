"""A worker carrying on when a server dies, in a launch with replicas (API layer, mixed into
KVWorker; mpips.server.replication is the servers' side).

Every request part a worker posts is remembered with its segment (mpips.core.hosting) and its
sequence number until its operation completes. When a server dies (ULFM: a request to it
fails), the worker computes the segments' new hosts from the dead servers, as every rank
does, and posts again, in the order first sent, every part of every operation in flight
that went to a dead server: same keys, values and output rows, same sequence number, a new
request id. A resent push is vouched for at once (it was checked when first sent); the new
host answers it without applying it again if the dead server's rows for it had reached the
replica. Without replicas, or when both holders of a segment died, the error goes on to
mpips.mpi.fault and the job leaves with EXIT_RANK_LOST.
"""
from __future__ import annotations

import time

from mpi4py import MPI

from ..errors import SegmentLost
from ..mpi.fault import failed_ranks, is_rank_failure, note_carried_on
from ..mpi.transport import wait_all
from ..wire.message import Status, encode_reply

DEATH_NOTICE_SECONDS = 10.0
"""How long a worker whose request failed waits for MPI to name the dead server."""




class ServerFailover:
    """KVWorker methods for surviving a dead server. Uses KVWorker's ``hosting``, ``comm``,
    ``topology``, ``tags``, ``requests`` and ``_post``."""

    def _dest(self, segment: int) -> int:
        """Rank of the server that serves ``segment`` now."""
        return self.topology.layout.server_rank(self.hosting.host(segment))

    def _wait_replies(self, pending) -> None:
        """Wait for ``pending``'s messages. In a launch with replicas, a reply that arrived
        empty means its server died (ULFM may complete a receive from a dead rank with no
        data and no error): raise as MPI would."""
        wait_all(pending.requests)
        if self.hosting.replicas and any(not reply.any() for *_, reply in pending.replies):
            raise MPI.Exception(MPI.ERR_PROC_FAILED)

    def _surviving(self, action, *args) -> bool:
        """Run ``action(*args)``; False (after failing over) when it failed because a
        server died and the launch has replicas, True when it succeeded."""
        try:
            action(*args)
            return True
        except MPI.Exception as exc:
            if not (is_rank_failure(exc) and self.hosting.replicas):
                raise
            self._fail_over(exc)
            return False

    def _fail_over(self, exc: MPI.Exception) -> None:
        """A request failed because a rank died: find the dead servers, move their segments
        to the new hosts and post again every part of every operation in flight that went
        to a dead server. Re-raises ``exc`` when no server died, or without replicas."""
        layout = self.topology.layout
        deadline = time.monotonic() + DEATH_NOTICE_SECONDS
        while True:
            dead = {layout.server_index(r) for r in failed_ranks(self.comm)
                    if layout.is_server(r)} - self.hosting.dead
            if dead or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        if not dead or not self.hosting.replicas:
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

    def _repost(self, pending, dead_ranks: set[int]) -> int:
        """Post again the parts of ``pending`` that went to ``dead_ranks``; returns how many."""
        alive = [(r, d) for r, d in zip(pending.requests, pending.dests) if d not in dead_ranks]
        self.graveyard += [r for r, d in zip(pending.requests, pending.dests) if d in dead_ranks]
        pending.requests, pending.dests = [r for r, _ in alive], [d for _, d in alive]
        pending.replies = [r for r in pending.replies if r[0] not in dead_ranks]
        lost = [p for p in pending.parts if p.dest in dead_ranks]
        pending.parts = [p for p in pending.parts if p.dest not in dead_ranks]
        for part in lost:
            request_id = self._post(pending, part.op, part.spec, part.segment, part.keys,
                                    part.vals, part.out, seq=part.seq, verdict=part.verdict)
            if part.verdict:  # checked when first sent
                verdict = encode_reply(request_id, Status.OK)
                dest = self._dest(part.segment)
                pending.keep.append(verdict)
                pending.add(self.comm.Isend(verdict, dest, self.tags.verdict(request_id)), dest)
        return len(lost)

    def _post_failed(self, exc: MPI.Exception) -> None:
        """Posting to a server failed: it died. Fail over at once (the part stays recorded
        and is posted again to the segment's new host)."""
        if not (is_rank_failure(exc) and self.hosting.replicas):
            raise exc
        self._unposted.append(exc)

    def _after_posting(self) -> None:
        """Fail over for every post that found its server dead."""
        while self._unposted:
            self._fail_over(self._unposted.pop())
