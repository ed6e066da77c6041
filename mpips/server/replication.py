"""Replicas of key ranges on successor servers, and taking over a dead server's keys (API
layer; one Replicator per server rank, made by KVServer only when the launch has replicas).

Who hosts and who copies each segment is mpips.core.hosting. After a push is applied, its host
sends the new rows of the keys it touched (values and optimizer state) to the segment's
replica holder as a batch (mpips.wire.replica) and answers the worker only once that holder
acknowledged the batch, so an acknowledged push is in two servers' memory. A replica applies
batches without waiting for anyone, and a host waiting for an ack keeps applying the batches
it receives itself, so two servers that copy each other never wait on each other.

Each segment keeps per-worker push watermarks (the sequence number of each worker's last
push applied to it), replicated with the rows. When a server dies (ULFM: a receive from it
fails), each survivor takes the same decisions from the same set of dead servers: the holder
of a dead host's copy applies every batch that reached it and serves the segment from then
on; every segment whose replica holders changed is sent whole to the new holders, and a
segment taken over to all of them (survivors may learn of simultaneous deaths one by one or
at once, so a holder the dead host had just gained may never have got its copy). The copies
themselves, and why one ignores a dead host's late batches, are mpips.server.copies. Workers
resend the requests the dead server had not answered (mpips.worker.failover); a resent push
at or below its segment's watermark was applied already and is answered without applying.
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from ..errors import MessageError, ReplicaStreamError
from ..mpi.fault import is_rank_failure, note_carried_on
from ..core.hosting import Hosting
from ..kernels.warmup_store import warm_copies
from ..wire.replica import (ACK_WORDS, BATCH_WORDS, Kind, check_marks, encode_ack, encode_batch,
                           parse_ack, parse_batch)
from ..mpi.topology import Topology
from ..mpi.transport import TAG_REPLICA, TAG_REPLICA_ACK, raise_failed, wait_all, wait_any
from ..store.slice import FLOAT, Slice
from .copies import Copies
from .segments import Segments

PROMOTION_WAIT_SECONDS = 10.0
"""How long a server waits to learn that a segment's host died, when a worker already sends
it that segment's requests (the worker noticed first)."""


class Replicator:
    """The copies one server keeps of other servers' segments, the batches that keep them
    and its own segments' copies current, and taking over when servers die.

    Narrow hooks into the server: ``segments`` (mpips.server.segments) is what it serves,
    and takeovers add to it; ``notice_deaths()`` acknowledges failures MPI reports and
    handles them (mpips.server.survivors: it calls ``on_servers_dead``); ``stashed()`` lists
    the BSP pushes the server's clock scheduler holds; ``adopt(entry)`` stashes a dead
    host's accepted BSP push in the scheduler and runs what that releases."""

    def __init__(self, topology: Topology, specs, segments: Segments, replicas: int,
                 restored: bool, *, notice_deaths: Callable[[], None],
                 stashed: Callable[[], list], adopt: Callable[[object], None]):
        self.comm, self.layout, self.log = topology.data, topology.layout, topology.log
        self.num_workers = topology.num_workers
        self.me = topology.server_index
        self.hosting = Hosting(topology.num_servers, replicas)
        self.specs = list(specs)
        self.segments = segments
        self.restored = restored  # the slices hold a checkpoint's rows
        self.notice_deaths, self._stashed, self._adopt = notice_deaths, stashed, adopt
        self._arrays = [s.arrays for s in segments.hosted[min(segments.hosted)]]  # per table
        self.copies = Copies(self.specs, self.hosting.copies_on(self.me), restored)
        # segment -> each worker's last push applied to it (hosted and copied segments)
        self.marks = {seg: np.full(self.num_workers, -1, np.int64)
                      for seg in (*segments.hosted, *self.copies.slices)}
        self._sent: dict[int, int] = defaultdict(int)  # server -> batches sent to it
        self._acked: dict[int, int] = defaultdict(int)
        self._received: dict[int, int] = defaultdict(int)
        self._batch_recvs: dict[int, tuple] = {}  # server -> (request, header buffer)
        self._ack_recvs: dict[int, tuple] = {}
        self._keep: list = []  # (request, buffer, server) of sends in flight
        self.graveyard: list = []  # requests with dead peers: never freed (mpips.mpi.fault.leave)
        # load the kernels a failover runs (whole copies, mirrored rows) now: loading them
        # then, from numba's cache, held a takeover up for most of a second
        warm_copies()
        for server_index in self.hosting.living:
            if server_index != self.me:
                self._post_batch_recv(server_index)
        self._finished: set[int] = set()  # servers that sent FIN (mpips.wire.replica)
        segments.await_takeover = self._await_takeover

    def start(self) -> None:
        """Before serving: after a restore, send the restored rows of every hosted segment
        whole to its replica holders (their copies count as incomplete until then)."""
        if self.restored:
            for segment in sorted(self.segments.hosted):
                for replica in self.hosting.replicas_of(segment):
                    self._copy_whole(segment, replica, [])

    # -- serving ------------------------------------------------------------------------
    def _await_takeover(self, segment: int) -> None:
        """A worker sends requests of ``segment``, which this server does not serve: wait
        (a while) until it has seen the segment's host die and taken the segment over."""
        deadline = time.monotonic() + PROMOTION_WAIT_SECONDS
        while segment not in self.segments.hosted and time.monotonic() < deadline:
            with contextlib.suppress(MPI.Exception):
                self.progress()  # a batch receive from the dead host fails here
            self.notice_deaths()  # takes over once the death is known
            time.sleep(0.001)

    def is_duplicate(self, segment: int, worker: int, seq: int) -> bool:
        """Whether ``worker``'s push ``seq`` to ``segment`` was applied already (a resend)."""
        marks = self.marks.get(segment)
        return marks is not None and seq <= marks[worker]

    def pushed(self, segment: int, table: Slice, keys: list, worker: int, seq: int,
               rows: list | None = None) -> None:
        """A push of ``worker`` (sequence ``seq``) to ``segment`` was applied: record it, send
        the rows of its ``keys`` (chunks; ``rows``: their rows, when the push knew them) to
        every replica holder, and return once they all have them."""
        self.marks[segment][worker] = max(self.marks[segment][worker], seq)
        replicas = self.hosting.replicas_of(segment)
        if replicas:
            touched = np.concatenate(keys) if keys else np.empty(0, np.uint64)
            at = np.concatenate(rows) if rows else table.rows_of(touched)
            touched, at = _stored(touched, at)
            packed = table.packed_at(at)
            for replica in replicas:
                self._send(replica, Kind.ROWS, segment, table, touched, at=at, packed=packed)
        self.wait_replicated()

    def stashed(self, item) -> None:
        """A push to a BSP table (mpips.server.whole_pushes.StashedPush) was accepted: record it and
        return once the replica holder keeps it too (it is applied at its clock boundary)."""
        marks = self.marks[item.segment]
        marks[item.worker] = max(marks[item.worker], item.seq)
        for replica in self.hosting.replicas_of(item.segment):
            self._send_stash(replica, item)
        self.wait_replicated()

    def applied_stash(self, item, table: Slice, rows: np.ndarray | None = None) -> None:
        """A stashed push was applied at its clock boundary (``rows``: the rows it changed,
        if the slice gave them): send its rows, so the replica holders forget the stashed
        copy (no wait: until they arrive they still hold the push)."""
        replicas = self.hosting.replicas_of(item.segment)
        if not replicas:
            return
        keys, at = _stored(item.keys, table.rows_of(item.keys) if rows is None else rows.copy())
        packed = table.packed_at(at)
        for replica in replicas:
            self._send(replica, Kind.ROWS, item.segment, table, keys,
                       entry=(item.worker, item.seq), at=at, packed=packed)

    def _serve_batches(self) -> None:
        """Wait for and apply batches and acks; survive a server dying meanwhile."""
        try:
            self.progress(block=True)
        except MPI.Exception as exc:
            if not is_rank_failure(exc):
                raise
            self.notice_deaths()

    def wait_replicated(self) -> None:
        """Wait until every batch sent has been acknowledged by its (living) receiver, serving
        incoming batches meanwhile; a receiver that dies is replaced (transfers)."""
        while True:
            behind = [s for s in self._sent if s not in self.hosting.dead
                      and self._acked[s] < self._sent[s]]
            if not behind:
                return
            self._serve_batches()

    def waitables(self) -> list:
        """Receives the serve loop waits on besides the workers' requests."""
        return [r for r, _ in self._batch_recvs.values()] + \
            [r for r, _ in self._ack_recvs.values()]

    def progress(self, block: bool = False) -> None:
        """Apply the batches and acks that arrived (with ``block``, wait for one first).
        Raises MPI_ERR_PROC_FAILED when a server died (mpips.server.survivors handles it)."""
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
                    self._receive_batch(server_index, buf)
                except MessageError as exc:
                    raise ReplicaStreamError(f"server {self.me}: replica batches from server "
                                             f"{server_index}: {exc}") from None
                self._post_batch_recv(server_index)
        self._keep = [k for k in self._keep if not k[0].Test()]  # sends done: let go

    # -- batches --------------------------------------------------------------------------
    def _send(self, dest: int, kind: Kind, segment: int, table: Slice, keys: np.ndarray,
              entry: tuple[int, int] | None = None, at: np.ndarray | None = None,
              packed: np.ndarray | None = None) -> None:
        """Send ``dest`` the rows of ``keys``: their row numbers ``at`` and packed rows
        (looked up here unless given, e.g. shared by the batches of several holders)."""
        if at is None:
            at = table.rows_of(keys)
        if packed is None:
            packed = table.packed_at(at)
        self._post_batch(dest, encode_batch(kind, segment, table.spec.table_id, keys.size,
                                            table.arrays, self._sent[dest] + 1, entry),
                         [keys, np.ascontiguousarray(at, np.int64),
                          np.ascontiguousarray(packed)] if keys.size else [], segment)

    def _send_stash(self, dest: int, item) -> None:
        header = encode_batch(Kind.STASH, item.segment, item.table_id, item.keys.size, 1,
                              self._sent[dest] + 1, (item.worker, item.seq), item.clock)
        self._post_batch(dest, header, [item.keys, np.ascontiguousarray(item.vals)]
                         if item.keys.size else [], item.segment)

    def _post_batch(self, dest: int, header, payload: list, segment: int) -> None:
        """Send ``dest`` a batch: its header, the ``payload`` arrays, the segment's marks."""
        self._sent[dest] += 1
        rank = self.layout.server_rank(dest)
        parts = [header] + payload
        parts.append(self.marks[segment].copy() if segment in self.marks else
                     np.full(self.num_workers, -1, np.int64))
        for part in parts:
            self._keep.append((self.comm.Isend(part, rank, TAG_REPLICA), part, dest))
        if dest not in self._ack_recvs:
            self._post_ack_recv(dest)

    def _receive_batch(self, source: int, buf: np.ndarray) -> None:
        """Receive the rest of a batch whose header arrived, check it, apply it, ack it."""
        if not buf.any():  # posted zeroed: the receive ended without a message (ULFM
            raise MPI.Exception(MPI.ERR_PROC_FAILED)  # completes a dead sender's so)
        workers = self.num_workers
        batch = parse_batch(buf, self.hosting.num_segments, self._arrays, workers)
        if batch.number != self._received[source] + 1:
            raise MessageError(f"batch {batch.number} from server {source} where "
                               f"{self._received[source] + 1} was next")
        rank = self.layout.server_rank(source)
        spec = self.specs[batch.table_id]
        keys = np.empty(batch.num_keys, np.uint64)
        at = np.empty(batch.num_keys, np.int64)
        rows = np.empty((batch.num_keys, spec.width * batch.arrays), FLOAT)
        marks = np.empty(workers, np.int64)
        payload = () if not batch.num_keys else (keys, rows) if batch.kind is Kind.STASH \
            else (keys, at, rows)
        for part in payload + (marks,):
            status = MPI.Status()
            self.comm.Recv(part, rank, TAG_REPLICA, status)
            if status.Get_count(MPI.BYTE) != part.nbytes:
                raise MessageError(f"batch {batch.number} from server {source}: a part of "
                                   f"{status.Get_count(MPI.BYTE)} bytes, not {part.nbytes}")
        check_marks(marks)
        self._received[source] = batch.number
        ack = encode_ack(batch.number)
        self._keep.append((self.comm.Isend(ack, rank, TAG_REPLICA_ACK), ack, source))
        if batch.kind is Kind.FIN:
            self._finished.add(source)
            return
        place = self.hosting.chain(batch.segment).index(source)
        if self.copies.is_stale(batch.segment, place):
            return
        if batch.segment in self.segments.hosted:
            raise MessageError(f"server {source} sent rows of segment {batch.segment}, which "
                               f"this server serves")
        self.copies.apply(batch, source, place, keys, at, rows)
        fresh = batch.kind is Kind.TRANSFER and batch.table_id == 0  # a new whole copy
        self.marks[batch.segment] = np.maximum(
            np.full_like(marks, -1) if fresh else
            self.marks.get(batch.segment, np.full_like(marks, -1)), marks)

    def _post_batch_recv(self, source: int) -> None:
        buf = np.zeros(BATCH_WORDS, np.uint64)
        request = self.comm.Irecv(buf, self.layout.server_rank(source), TAG_REPLICA)
        self._batch_recvs[source] = (request, buf)

    def _post_ack_recv(self, dest: int) -> None:
        buf = np.zeros(ACK_WORDS, np.uint64)
        request = self.comm.Irecv(buf, self.layout.server_rank(dest), TAG_REPLICA_ACK)
        self._ack_recvs[dest] = (request, buf)

    # -- a dead server --------------------------------------------------------------------
    def on_servers_dead(self, dead: set[int]) -> None:
        """Servers ``dead`` (server indices) died: take over the segments this server holds
        the copies of, and send whole copies to every new replica holder. Raises SegmentLost
        when every holder of some segment died, or when this server was to take over a
        segment whose whole copy had not reached it yet (after a restore or a failover)."""
        began = time.perf_counter()
        old = self.hosting
        new = old.after_deaths(dead)  # SegmentLost: the job cannot carry on
        for server_index in sorted(dead):
            self._drain_from(server_index)
        self.hosting = new
        note_carried_on()
        hosted = self.segments.hosted
        taken = [seg for seg in new.hosted_by(self.me) if seg not in hosted]
        adopted = []
        for segment in taken:
            hosted[segment], mirrored = self.copies.take_over(segment, self.me)
            adopted += mirrored
        for segment in [s for s in self.copies.slices if self.me not in new.replicas_of(s)]:
            self.copies.drop(segment)
        copied = []
        for segment in sorted(hosted):
            for replica in new.replicas_of(segment):
                # a segment taken over goes whole to every replica holder: the dead host may
                # have died before its whole copy reached a holder it had just gained (this
                # server may learn of two deaths one after the other, another server at once)
                if segment in taken or replica not in old.holders(segment):
                    self._copy_whole(segment, replica, adopted)
                    copied.append(f"segment {segment} to server {replica}")
        self._adopt_stashes(adopted)
        names = ", ".join(f"server {s} (rank {self.layout.server_rank(s)})" for s in sorted(dead))
        self.log(f"{names} died: " + (f"took over segment(s) {taken}" if taken else
                                      "its segments moved to other servers")
                 + (f"; copying {', '.join(copied)}" if copied else "")
                 + f"; serving again after {time.perf_counter() - began:.6f} s")

    def _copy_whole(self, segment: int, replica: int, adopted: list) -> None:
        """Send ``segment`` whole to ``replica``: every table's rows, then the BSP pushes
        accepted and not yet applied (the scheduler's, and ``adopted`` ones)."""
        for table in self.segments.hosted[segment]:
            keys, at = table.stored()
            self._send(replica, Kind.TRANSFER, segment, table, keys, at=at)
        waiting = self._stashed()
        for item in waiting + adopted:
            if item.segment == segment:
                self._send_stash(replica, item)

    def _adopt_stashes(self, entries: list) -> None:
        """Stash the BSP pushes a dead host had accepted and not applied (``entries``), in
        clock, worker and arrival order; apply those whose clock boundary has passed."""
        for entry in sorted(entries, key=lambda e: (e.clock, e.worker, e.seq)):
            self._adopt(entry)

    def _drain_from(self, source: int) -> None:
        """Apply every batch that fully arrived from the dead server ``source``; its receives
        and the sends to it are kept, unfreed, in ``graveyard``."""
        ack = self._ack_recvs.pop(source, None)
        self.graveyard += [ack] if ack else []
        self.graveyard += [(r, b) for r, b, d in self._keep if d == source]
        self._keep = [k for k in self._keep if k[2] != source]
        entry = self._batch_recvs.pop(source, None)
        while entry is not None:
            try:
                wait_all([entry[0]])  # a batch that arrived whole, or the failure
                self._receive_batch(source, entry[1])
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
        """Done serving: tell every living server (FIN), and keep applying their batches
        until each has said FIN too and acknowledged every batch sent to it, so no batch is
        left half-received; then cancel the receives still posted."""
        if self.specs:
            for server_index in self.hosting.living:
                if server_index != self.me:
                    self._post_batch(server_index, encode_batch(
                        Kind.FIN, self.me, 0, 0, self._arrays[0],
                        self._sent[server_index] + 1), [], self.me)
            while not set(self.hosting.living) - {self.me} <= self._finished:
                self._serve_batches()
            self.wait_replicated()
        wait_all([r for r, _, _ in self._keep])
        self._keep.clear()
        for recvs in (self._batch_recvs, self._ack_recvs):
            for request, buf in recvs.values():
                request.Cancel()
                with contextlib.suppress(MPI.Exception):
                    request.Wait()
                self.graveyard.append((request, buf))
            recvs.clear()


def _arrived(request: MPI.Request) -> bool:
    """Whether a receive completed; raises its error if it completed in error (a receive
    from a dead server completes so)."""
    status = MPI.Status()
    done = request.Test(status)
    if done:
        raise_failed([status])
    return done


def _stored(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keys of a push that have rows, and those rows: a table with admission leaves the
    keys it did not admit without one (row -1), and a replica holder has nothing to copy."""
    if rows.size and int(rows.min()) < 0:
        keep = rows >= 0
        return keys[keep], rows[keep]
    return keys, rows
