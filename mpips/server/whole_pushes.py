"""Pushes a server receives whole before applying them (API layer): pushes to BSP tables,
received, checked and answered at once and stashed until their clock boundary; and pushes
through a table's codec (one mpips.wire.codec message, async and ssp tables applied at once).

KVServer hands such a request to its WholePushes; it receives and answers through the
server's WorkerChannel and finds slices through its Segments. With replicas it tells the
Replicator (mpips.server.replication) what it applied or stashed, and answers once the
replica holders have it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ..core.partition import KEY_SPACE
from ..core.spec import TableSpec
from ..errors import KeyCacheMiss, MessageError
from ..kernels.rows import count_nonfinite
from ..mpi.topology import Topology
from ..mpi.transport import Tags
from ..store.slice import FLOAT
from ..wire.codec import decode
from ..wire.keycache import KeyCache
from ..wire.message import Header, Op, Status
from .channel import WorkerChannel
from .segments import Segments
from .verdict import Verdict


@dataclass
class StashedPush:
    """A push to a BSP table, received and accepted, waiting for its clock boundary."""

    table_id: int
    keys: np.ndarray
    vals: np.ndarray
    segment: int = 0
    worker: int = 0
    seq: int = 0
    clock: int = 0


class WholePushes:
    """The pushes one server receives whole. ``replication``: the server's Replicator, or
    None without replicas."""

    def __init__(self, topology: Topology, tables: list[TableSpec], segments: Segments,
                 channel: WorkerChannel, tags: Tags, replication=None):
        self.topology = topology
        self.tables = tables
        self.segments = segments
        self.channel = channel
        self.tags = tags
        self.replication = replication
        self._key_caches: dict[tuple[int, int], KeyCache] = {}  # (worker rank, table id)

    def stash_or_log(self, hdr: Header, source: int) -> "StashedPush | None":
        try:
            if hdr.op is Op.PUSH_CODED:
                return self._receive_coded_for_stash(hdr, source)
            return self._receive_for_stash(hdr, source)
        except MessageError as exc:
            self.topology.log(f"lost the stream of a request from rank {source}: {exc}")
            return None

    def _receive_for_stash(self, hdr: Header, source: int) -> "StashedPush | None":
        """Receive a push to a BSP table whole, check it and its verdict, and answer it
        (accepted: applied at its clock boundary). None when it was refused or withdrawn."""
        try:
            table, refused = self.segments.slice_for(hdr.segment, hdr.table_id), None
        except MessageError as exc:
            table, refused = None, str(exc)
        name = self.tables[hdr.table_id].name
        tag = self.tags.payload(hdr.request_id)
        keys = np.empty(hdr.num_keys, np.uint64)
        vals = np.empty((hdr.num_keys, hdr.width), FLOAT)
        verdict = Verdict(self.channel.comm, source, hdr.request_id, self.tags.verdict(hdr.request_id)) \
            if hdr.verdict else None
        error, prev = refused, None
        for index in range(hdr.num_chunks):
            lo, hi = hdr.chunk_bounds(index)
            self.channel.recv_exact(keys[lo:hi], source, tag)
            self.channel.recv_exact(vals[lo:hi], source, tag)
            if error is None:
                try:
                    table.check(keys[lo:hi], prev)
                    prev = int(keys[hi - 1])
                except MessageError as exc:
                    error = f"table {name!r}, request {hdr.request_id}: {exc}"
        try:
            withdrawn = verdict is not None and verdict.wait_withdrawn()
        except MessageError as exc:
            withdrawn, error = False, error or f"verdict: {exc}"
        status = Status.WITHDRAWN if withdrawn and not error else (
            Status.BAD_REQUEST if error else Status.OK)
        stashed = self._accept_stash(hdr, source, keys, vals) if status is Status.OK else None
        self.channel.reply(hdr.request_id, status, error, source, tag)
        return stashed

    def _receive_coded_for_stash(self, hdr: Header, source: int) -> "StashedPush | None":
        """A coded push to a BSP table: received, decoded, checked, answered; None when it
        was refused."""
        _, pushed, status, error = self._receive_coded(hdr, source)
        stashed = None if pushed is None else self._accept_stash(hdr, source, *pushed)
        self.channel.reply(hdr.request_id, status, error, source, self.tags.payload(hdr.request_id))
        return stashed

    def _accept_stash(self, hdr: Header, source: int, keys, vals) -> "StashedPush | None":
        """The stash entry of an accepted BSP push, once every replica holder keeps it too
        (mpips.server.replication); None for a resend of a push accepted before (stashed already)."""
        worker = self.topology.layout.worker_index(source)
        stashed = StashedPush(hdr.table_id, keys, vals, hdr.segment, worker, hdr.seq, hdr.clock)
        if self.replication is not None:
            if self.replication.is_duplicate(hdr.segment, worker, hdr.seq):
                self.replication.wait_replicated()
                return None
            self.replication.stashed(stashed)
        return stashed

    def push_coded(self, hdr: Header, source: int) -> None:
        """Receive, check, apply and answer a coded push (async and ssp tables); with
        replicas, answered once every replica holder has its rows. A key list the codec's
        key cache held keeps its rows too (mpips.store.request_cache, chunk -1)."""
        table, pushed, status, error = self._receive_coded(hdr, source)
        if pushed is not None:
            worker = self.topology.layout.worker_index(source)
            replicated = self.replication is not None
            again = replicated and self.replication.is_duplicate(hdr.segment, worker, hdr.seq)
            rows = None if again else \
                table.push_chunk(*pushed, None, (worker, -1) if table.caches_requests else None)
            if again:
                self.replication.wait_replicated()
            elif replicated:
                self.replication.pushed(hdr.segment, table, [pushed[0]], worker, hdr.seq,
                                        None if rows is None else [rows.copy()])
        self.channel.reply(hdr.request_id, status, error, source, self.tags.payload(hdr.request_id))

    def _receive_coded(self, hdr: Header, source: int):
        """Receive and decode a coded push: (slice, (keys, vals) or None, status, error text);
        (keys, vals) is None when it was refused (bad bytes, non-finite values, a key-cache
        miss, a segment this server does not serve). The caller answers."""
        tag = self.tags.payload(hdr.request_id)
        message = np.empty(hdr.chunk_keys, np.uint8)  # word 6: the message's byte length
        self.channel.recv_exact(message, source, tag)
        name = self.tables[hdr.table_id].name
        try:
            table = self.segments.slice_for(hdr.segment, hdr.table_id)
        except MessageError as exc:
            return None, None, Status.BAD_REQUEST, f"table {name!r}: {exc}"
        cache = self._key_caches.setdefault((source, hdr.table_id), KeyCache())
        hashed = table.spec.hashed  # positions are checked below, not by decode
        try:
            keys, vals = decode(message, width=hdr.width,
                                lo=0 if hashed else table.key_range.begin,
                                hi=KEY_SPACE - 1 if hashed else table.key_range.end - 1,
                                cache=cache)
            table.check(keys, None)
            if keys.size != hdr.num_keys:
                raise MessageError(f"{keys.size} keys where the header announced {hdr.num_keys}")
            if count_nonfinite(vals.reshape(-1)):
                raise MessageError("pushed values contain NaN or infinity")
        except KeyCacheMiss:
            return table, None, Status.KEY_CACHE_MISS, None
        except MessageError as exc:
            return table, None, Status.BAD_REQUEST, f"table {name!r}, request " \
                f"{hdr.request_id}: {exc}"
        return table, (keys, vals), Status.OK, None
