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
themselves, and why one ignores a dead host's late batches, are mpips.server.copies; the
numbered, acknowledged batch streams between servers are mpips.server.replica_stream. Workers
resend the requests the dead server had not answered (mpips.worker.failover); a resent push
at or below its segment's watermark was applied already and is answered without applying.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from ..core.hosting import Hosting
from ..errors import MessageError
from ..kernels.warmup_store import warm_copies
from ..mpi.fault import is_rank_failure, note_carried_on
from ..mpi.topology import Topology
from ..store.slice import FLOAT, Slice
from ..wire.replica import Kind, check_marks, encode_batch, parse_batch
from .copies import Copies
from .replica_stream import ReplicaStreams
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
        # load the kernels a failover runs (whole copies, mirrored rows) now: loading them
        # then, from numba's cache, held a takeover up for most of a second
        warm_copies()
        self.streams = ReplicaStreams(
            self.comm, self.layout, self.me, [s for s in self.hosting.living if s != self.me],
            parse=lambda buf: parse_batch(buf, self.hosting.num_segments, self._arrays,
                                          self.num_workers),
            parts_of=self._parts_of, apply=self._apply)
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
        while self.streams.behind(self.hosting.dead):
            self._serve_batches()

    def waitables(self) -> list:
        """Receives the serve loop waits on besides the workers' requests."""
        return self.streams.waitables()

    def progress(self, block: bool = False) -> None:
        """Apply the batches and acks that arrived (with ``block``, wait for one first).
        Raises MPI_ERR_PROC_FAILED when a server died (mpips.server.survivors handles it)."""
        self.streams.progress(block)

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
                                            table.arrays, self.streams.next_number(dest), entry),
                         [keys, np.ascontiguousarray(at, np.int64),
                          np.ascontiguousarray(packed)] if keys.size else [], segment)

    def _send_stash(self, dest: int, item) -> None:
        header = encode_batch(Kind.STASH, item.segment, item.table_id, item.keys.size, 1,
                              self.streams.next_number(dest), (item.worker, item.seq), item.clock)
        self._post_batch(dest, header, [item.keys, np.ascontiguousarray(item.vals)]
                         if item.keys.size else [], item.segment)

    def _post_batch(self, dest: int, header, payload: list, segment: int) -> None:
        """Send ``dest`` a batch: its header, the ``payload`` arrays, the segment's marks."""
        marks = self.marks[segment].copy() if segment in self.marks else \
            np.full(self.num_workers, -1, np.int64)
        self.streams.send(dest, header, [*payload, marks])

    def _payload(self, batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Empty keys, row numbers and rows (STASH: gradients) for ``batch``'s payload."""
        n, width = batch.num_keys, self.specs[batch.table_id].width * batch.arrays
        return np.empty(n, np.uint64), np.empty(n, np.int64), np.empty((n, width), FLOAT)

    def _parts_of(self, batch) -> list[np.ndarray]:
        """The arrays a batch's parts are received into (mpips.wire.replica): with keys, the
        keys, their rows on the sender (not for STASH) and the rows; then the marks."""
        keys, at, rows = self._payload(batch)
        payload = [] if not batch.num_keys else [keys, rows] if batch.kind is Kind.STASH \
            else [keys, at, rows]
        return payload + [np.empty(self.num_workers, np.int64)]

    def _apply(self, source: int, batch, parts: list[np.ndarray]) -> None:
        """Apply a batch from server ``source`` to the copy it is for, and take its marks."""
        marks = parts[-1]
        check_marks(marks)
        place = self.hosting.chain(batch.segment).index(source)
        if self.copies.is_stale(batch.segment, place):
            return
        if batch.segment in self.segments.hosted:
            raise MessageError(f"server {source} sent rows of segment {batch.segment}, which "
                               f"this server serves")
        keys, at, rows = self._payload(batch) if not batch.num_keys else \
            (parts[0], np.empty(0, np.int64), parts[1]) if batch.kind is Kind.STASH else \
            parts[:3]
        self.copies.apply(batch, source, place, keys, at, rows)
        fresh = batch.kind is Kind.TRANSFER and batch.table_id == 0  # a new whole copy
        self.marks[batch.segment] = np.maximum(
            np.full_like(marks, -1) if fresh else
            self.marks.get(batch.segment, np.full_like(marks, -1)), marks)

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
            self.streams.drain(server_index)
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

    def close(self) -> None:
        """Done serving: tell every living server (FIN), and keep applying their batches
        until each has said FIN too and acknowledged every batch sent to it, so no batch is
        left half-received; then cancel the receives still posted."""
        if self.specs:
            for server_index in self.hosting.living:
                if server_index != self.me:
                    self._post_batch(server_index, encode_batch(
                        Kind.FIN, self.me, 0, 0, self._arrays[0],
                        self.streams.next_number(server_index)), [], self.me)
            while not set(self.hosting.living) - {self.me} <= self.streams.finished:
                self._serve_batches()
            self.wait_replicated()
        self.streams.close()


def _stored(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keys of a push that have rows, and those rows: a table with admission leaves the
    keys it did not admit without one (row -1), and a replica holder has nothing to copy."""
    if rows.size and int(rows.min()) < 0:
        keep = rows >= 0
        return keys[keep], rows[keep]
    return keys, rows
