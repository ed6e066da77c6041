"""Pushes a KVServer receives whole before applying them (API layer, mixed into KVServer):
pushes to BSP tables, stashed until their clock boundary, and pushes through a table's codec
(one mpips.codec message); and the worker's verdict on a plain push (mpips.message).
Uses KVServer's ``slices``, ``replication``, ``comm``, ``tags``, ``topology``,
``_key_caches``, ``_recv_exact`` and ``_reply``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from .codec import decode
from .errors import MessageError
from .kernels.rows import count_nonfinite
from .keycache import KeyCache, KeyCacheMiss
from .message import REPLY_WORDS, Header, Op, Status, parse_reply
from .partition import KEY_SPACE
from .store import FLOAT
from .transport import wait_all


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
    """KVServer methods for pushes received whole (BSP stash, coded)."""

    def _stash_or_log(self, hdr: Header, source: int) -> "StashedPush | None":
        try:
            if hdr.op is Op.PUSH_CODED:
                pushed = self._receive_coded(hdr, source)
                return None if pushed is None else StashedPush(hdr.table_id, *pushed,
                                                               hdr.segment)
            return self._receive_for_stash(hdr, source)
        except MessageError as exc:
            self.topology.log(f"lost the stream of a request from rank {source}: {exc}")
            return None

    def _receive_for_stash(self, hdr: Header, source: int) -> "StashedPush | None":
        """Receive a push to a BSP table whole, check it and its verdict, and answer it
        (accepted: applied at its clock boundary). None when it was refused or withdrawn."""
        try:
            table = self.replication.slice_for(hdr.segment, hdr.table_id)
            refused = None
        except MessageError as exc:
            table, refused = self.slices[hdr.table_id], str(exc)
        worker = self.topology.layout.worker_index(source)
        again = self.replication.enabled and \
            self.replication.is_duplicate(hdr.segment, worker, hdr.seq)
        tag = self.tags.payload(hdr.request_id)
        keys = np.empty(hdr.num_keys, np.uint64)
        vals = np.empty((hdr.num_keys, hdr.width), FLOAT)
        verdict = Verdict(self.comm, source, hdr.request_id, self.tags.verdict(hdr.request_id)) \
            if hdr.verdict else None
        error, prev = refused, None
        for index in range(hdr.num_chunks):
            lo, hi = hdr.chunk_bounds(index)
            self._recv_exact(keys[lo:hi], source, tag)
            self._recv_exact(vals[lo:hi], source, tag)
            if error is None:
                try:
                    table.check(keys[lo:hi], prev)
                    prev = int(keys[hi - 1])
                except MessageError as exc:
                    error = f"table {table.spec.name!r}, request {hdr.request_id}: {exc}"
        try:
            withdrawn = verdict is not None and verdict.wait_withdrawn()
        except MessageError as exc:
            withdrawn, error = False, error or f"verdict: {exc}"
        status = Status.WITHDRAWN if withdrawn and not error else (
            Status.BAD_REQUEST if error else Status.OK)
        stashed = StashedPush(hdr.table_id, keys, vals, hdr.segment, worker, hdr.seq, hdr.clock)
        if status is Status.OK and self.replication.enabled:
            if again:  # a resend of a push accepted before: stashed already
                stashed = None
                self.replication.wait_replicated()
            else:  # the replica holder keeps it too before the worker hears OK
                self.replication.stashed(stashed)
        self._reply(hdr.request_id, status, error, source, tag)
        return stashed if status is Status.OK else None

    def _push_coded(self, hdr: Header, source: int) -> None:
        """Receive, check and apply a coded push (async and ssp tables). A key list the
        codec's key cache held keeps its rows too (mpips.request_cache, chunk -1)."""
        pushed = self._receive_coded(hdr, source)
        if pushed is not None:
            table = self.slices[hdr.table_id]
            origin = (self.topology.layout.worker_index(source), -1) \
                if table.caches_requests else None
            table.push_chunk(*pushed, None, origin)

    def _receive_coded(self, hdr: Header, source: int):
        """Receive and decode a coded push, and answer it: (keys, vals) when it is good,
        None when it was refused (bad bytes, non-finite values, a key-cache miss)."""
        table = self.slices[hdr.table_id]
        tag = self.tags.payload(hdr.request_id)
        message = np.empty(hdr.chunk_keys, np.uint8)  # word 6: the message's byte length
        self._recv_exact(message, source, tag)
        cache = self._key_caches.setdefault((source, hdr.table_id), KeyCache())
        status, error, pushed = Status.OK, None, None
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
            pushed = keys, vals
        except KeyCacheMiss:
            status = Status.KEY_CACHE_MISS
        except MessageError as exc:
            status, error = Status.BAD_REQUEST, (f"table {table.spec.name!r}, request "
                                                 f"{hdr.request_id}: {exc}")
        self._reply(hdr.request_id, status, error, source, tag)
        return pushed


class Verdict:
    """The worker's verdict on one of its pushes, received on its verdict tag."""

    def __init__(self, comm: MPI.Comm, source: int, request_id: int, tag: int):
        self.buf = np.empty(REPLY_WORDS, np.uint64)
        self.request_id = request_id
        self.request = comm.Irecv(self.buf, source, tag)
        self.done = False

    def arrived_ok(self) -> bool:
        """True once an OK verdict has arrived (never blocks)."""
        if not self.done:
            self.done = self.request.Test()
        if not self.done:
            return False
        try:
            status, text_len = parse_reply(self.buf, self.request_id)
        except MessageError:
            return False  # wait_withdrawn reports it
        return status is Status.OK and text_len == 0

    def wait_withdrawn(self) -> bool:
        """Wait for the verdict; True when the worker withdrew the push. Raises MessageError
        for a malformed verdict."""
        if not self.done:
            wait_all([self.request])
            self.done = True
        status, text_len = parse_reply(self.buf, self.request_id)
        if text_len or status is Status.BAD_REQUEST:
            raise MessageError(f"verdict status {status.name} with {text_len} bytes of text")
        return status is Status.WITHDRAWN
