"""Ordered, acknowledged streams of replica batches between servers (API layer; owned by
mpips.server.replication's Replicator, made only when the launch has replicas).

Between every two servers a stream runs each way: batches on TAG_REPLICA (a header of
mpips.wire.replica, then its parts as separate messages) and one ack per batch on
TAG_REPLICA_ACK. Batches are numbered per sender and receiver from 1 and the receiver checks
the numbers, so a lost, repeated or reordered batch is a ReplicaStreamError rather than a
wrong copy. A receive for the next batch header is always posted to every peer, and one for
the next ack to every peer sent anything; sends stay referenced until they complete.

What a batch holds and what applying it means is the Replicator's: it hands the streams
``parse(header)`` (the validated Batch), ``parts_of(batch)`` (the empty arrays its parts are
received into) and ``apply(source, batch, parts)``. FIN batches (a server done serving) are
counted here, in ``finished``.

A peer that dies: a receive posted to it completes in error (ULFM) or zeroed (ended without a
message); ``progress`` raises MPI_ERR_PROC_FAILED for both (mpips.server.survivors handles
it). ``drain(source)`` then applies what fully arrived from the dead server; every request
with it stays in ``graveyard``, never freed (mpips.mpi.fault.leave).
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from ..errors import MessageError, ReplicaStreamError
from ..mpi.fault import is_rank_failure
from ..mpi.transport import TAG_REPLICA, TAG_REPLICA_ACK, raise_failed, wait_all, wait_any
from ..wire.replica import ACK_WORDS, BATCH_WORDS, Kind, encode_ack, parse_ack


class ReplicaStreams:
    """One server's ends of its replica streams with every other server (``peers``: their
    server indices; ``layout`` maps them to ranks of ``comm``)."""

    def __init__(self, comm: MPI.Intracomm, layout, me: int, peers, *,
                 parse: Callable[[np.ndarray], object],
                 parts_of: Callable[[object], list[np.ndarray]],
                 apply: Callable[[int, object, list[np.ndarray]], None]):
        self.comm, self.layout, self.me = comm, layout, me
        self._parse, self._parts_of, self._apply = parse, parts_of, apply
        self._sent: dict[int, int] = defaultdict(int)  # server -> batches sent to it
        self._acked: dict[int, int] = defaultdict(int)
        self._received: dict[int, int] = defaultdict(int)
        self._batch_recvs: dict[int, tuple] = {}  # server -> (request, header buffer)
        self._ack_recvs: dict[int, tuple] = {}
        self._keep: list = []  # (request, buffer, server) of sends in flight
        self.graveyard: list = []  # requests with dead peers: never freed (mpips.mpi.fault.leave)
        self.finished: set[int] = set()  # servers that sent FIN
        for server_index in peers:
            self._post_batch_recv(server_index)

    def next_number(self, dest: int) -> int:
        """The number the next batch to ``dest`` carries in its header."""
        return self._sent[dest] + 1

    def send(self, dest: int, header: np.ndarray, parts: list[np.ndarray]) -> None:
        """Send server ``dest`` a batch: ``header`` (numbered ``next_number(dest)``), then
        ``parts``, without waiting (``behind`` tells when its ack is due)."""
        self._sent[dest] += 1
        rank = self.layout.server_rank(dest)
        for part in [header, *parts]:
            self._keep.append((self.comm.Isend(part, rank, TAG_REPLICA), part, dest))
        if dest not in self._ack_recvs:
            self._post_ack_recv(dest)

    def behind(self, dead) -> bool:
        """Whether a server not in ``dead`` has not acknowledged every batch sent to it."""
        return any(s not in dead and self._acked[s] < self._sent[s] for s in self._sent)

    def waitables(self) -> list:
        """The receives posted: a serve loop waits on them besides the workers' requests."""
        return [r for r, _ in self._batch_recvs.values()] + \
            [r for r, _ in self._ack_recvs.values()]

    def progress(self, block: bool = False) -> None:
        """Count the acks and apply the batches that arrived (with ``block``, wait for one
        first). Raises MPI_ERR_PROC_FAILED when a peer died, ReplicaStreamError when a peer
        sent what the stream cannot trust."""
        if block:
            requests = self.waitables()
            if requests:
                wait_any(requests)  # raises if a peer died
        for server_index, (request, buf) in list(self._ack_recvs.items()):
            if _arrived(request):
                if not buf.any():  # ended without a message: the replica holder died
                    raise MPI.Exception(MPI.ERR_PROC_FAILED)
                try:
                    parse_ack(buf, self._acked[server_index] + 1)
                except MessageError as exc:
                    raise ReplicaStreamError(f"server {self.me}: replica acks from server "
                                             f"{server_index}: {exc}") from None
                self._acked[server_index] += 1
                self._post_ack_recv(server_index)
        for server_index, (request, buf) in list(self._batch_recvs.items()):
            if _arrived(request):
                try:
                    self._receive(server_index, buf)
                except MessageError as exc:
                    raise ReplicaStreamError(f"server {self.me}: replica batches from server "
                                             f"{server_index}: {exc}") from None
                self._post_batch_recv(server_index)
        self._keep = [k for k in self._keep if not k[0].Test()]  # sends done: let go

    def drain(self, source: int) -> None:
        """Apply every batch that fully arrived from the dead server ``source``; its receives
        and the sends to it go to ``graveyard``."""
        ack = self._ack_recvs.pop(source, None)
        self.graveyard += [ack] if ack else []
        self.graveyard += [(r, b) for r, b, d in self._keep if d == source]
        self._keep = [k for k in self._keep if k[2] != source]
        entry = self._batch_recvs.pop(source, None)
        while entry is not None:
            try:
                wait_all([entry[0]])  # a batch that arrived whole, or the failure
                self._receive(source, entry[1])
                buf = np.zeros(BATCH_WORDS, np.uint64)
                entry = (self.comm.Irecv(buf, self.layout.server_rank(source), TAG_REPLICA), buf)
            except MPI.Exception as exc:
                if not is_rank_failure(exc):
                    raise
                self.graveyard.append(entry)
                entry = None
            except MessageError as exc:  # as in progress(): the copy can no longer be trusted
                raise ReplicaStreamError(f"server {self.me}: replica batches from the dead "
                                         f"server {source}: {exc}") from None

    def close(self) -> None:
        """Wait for the sends in flight, then cancel the receives still posted (after every
        peer said FIN and acknowledged every batch: Replicator.close)."""
        wait_all([r for r, _, _ in self._keep])
        self._keep.clear()
        for recvs in (self._batch_recvs, self._ack_recvs):
            for request, buf in recvs.values():
                request.Cancel()
                with contextlib.suppress(MPI.Exception):
                    request.Wait()
                self.graveyard.append((request, buf))
            recvs.clear()

    def _receive(self, source: int, buf: np.ndarray) -> None:
        """Receive the parts of a batch whose header arrived, check them, ack, apply."""
        if not buf.any():  # posted zeroed: the receive ended without a message (ULFM
            raise MPI.Exception(MPI.ERR_PROC_FAILED)  # completes a dead sender's so)
        batch = self._parse(buf)
        if batch.number != self._received[source] + 1:
            raise MessageError(f"batch {batch.number} from server {source} where "
                               f"{self._received[source] + 1} was next")
        rank = self.layout.server_rank(source)
        parts = self._parts_of(batch)
        for part in parts:
            status = MPI.Status()
            self.comm.Recv(part, rank, TAG_REPLICA, status)
            if status.Get_count(MPI.BYTE) != part.nbytes:
                raise MessageError(f"batch {batch.number} from server {source}: a part of "
                                   f"{status.Get_count(MPI.BYTE)} bytes, not {part.nbytes}")
        self._received[source] = batch.number
        ack = encode_ack(batch.number)
        self._keep.append((self.comm.Isend(ack, rank, TAG_REPLICA_ACK), ack, source))
        if batch.kind is Kind.FIN:
            self.finished.add(source)
            return
        self._apply(source, batch, parts)

    def _post_batch_recv(self, source: int) -> None:
        buf = np.zeros(BATCH_WORDS, np.uint64)
        request = self.comm.Irecv(buf, self.layout.server_rank(source), TAG_REPLICA)
        self._batch_recvs[source] = (request, buf)

    def _post_ack_recv(self, dest: int) -> None:
        buf = np.zeros(ACK_WORDS, np.uint64)
        request = self.comm.Irecv(buf, self.layout.server_rank(dest), TAG_REPLICA_ACK)
        self._ack_recvs[dest] = (request, buf)


def _arrived(request: MPI.Request) -> bool:
    """Whether a receive completed; raises its error if it completed in error (a receive
    from a dead server completes so)."""
    status = MPI.Status()
    done = request.Test(status)
    if done:
        raise_failed([status])
    return done
