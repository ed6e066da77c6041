"""The worker's end of the request protocol (mpips.wire.message) on MPI: ``Poster`` turns a
request into its header, payload chunks and reply receive and posts them, sends push
verdicts and clock messages, and reads a reply's status and error text (API layer; the
worker side of ps-lite's Van).

KVWorker decides what goes where and under which clock; the poster only posts, without
waiting (``check_reply`` receives an error text the server has already sent). A post to a dead
server goes to the ``failed`` hook (ServerFailover.post_failed, in a launch with replicas),
or raises without one. Nothing here is collective.
"""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..mpi.transport import TAG_REQUEST, Tags
from ..wire import zero_rows
from ..wire.message import REPLY_WORDS, Op, Status, chunk_keys_for, encode_header, encode_reply, \
    parse_reply
from .requests import Part, Pending, Requests
from .traffic import Traffic


class Poster:
    """Posts the requests of one worker on ``comm`` (its data communicator), numbering them
    through ``requests`` and counting pushed bytes in ``traffic``; ``failed(exc)`` takes the
    error of a post to a dead server (None: raise it)."""

    def __init__(self, comm: MPI.Comm, tags: Tags, requests: Requests, traffic: Traffic,
                 failed=None):
        self.comm = comm
        self.tags = tags
        self.requests = requests
        self.traffic = traffic
        self.failed = failed

    def part(self, pending: Pending, op: Op, spec, segment: int, dest: int, keys, vals, out,
             clock: int, required: int, seq: int | None = None, verdict: bool = False) -> int:
        """Post one server's part of an operation to rank ``dest`` (``segment``: the one its
        keys are in; ``clock``, ``required``: the header's clocks; ``seq``: a resent push's
        sequence number; ``verdict``: a push whose verdict follows); returns the request id.
        The part is recorded in ``pending.parts``, to be posted again if ``dest`` dies."""
        request_id = self.requests.request_id()
        seq = request_id if seq is None else seq
        pending.parts.append(Part(op, spec, segment, keys, vals, out, seq, dest, verdict))
        tag = self.tags.payload(request_id)
        chunk = chunk_keys_for(spec.width)
        header = encode_header(op, spec.table_id, request_id, keys.size, spec.width, chunk,
                               clock=clock, required=required, segment=segment, seq=seq,
                               verdict=verdict)
        reply = np.zeros(REPLY_WORDS, np.uint64)  # stays zero if its server dies (ULFM)
        pending.keep += [header, reply]
        try:
            pending.add(self.comm.Isend(header, dest, TAG_REQUEST), dest)
            for lo in range(0, keys.size, chunk):
                hi = min(lo + chunk, keys.size)
                pending.add(self.comm.Isend(keys[lo:hi], dest, tag), dest)
                if vals is not None:
                    pending.add(self.comm.Isend(vals[lo:hi], dest, tag), dest)
                if out is not None and spec.zero_rows_dropped:  # mpips.wire.zero_rows
                    reply_rows = np.zeros(zero_rows.max_bytes(hi - lo, spec.width), np.uint8)
                    pending.expand.append((dest, reply_rows, out[lo:hi], spec.name))
                    pending.add(self.comm.Irecv(reply_rows, dest, tag), dest)
                elif out is not None:
                    pending.add(self.comm.Irecv(out[lo:hi], dest, tag), dest)
                    self.traffic.count_pulled(spec.name, out[lo:hi].size, out[lo:hi].nbytes)
            pending.add(self.comm.Irecv(reply, dest, tag), dest)
        except MPI.Exception as exc:
            self._failed(exc)  # the server died: posted again after failing over
        pending.replies.append((dest, tag, request_id, reply))
        if verdict:
            pending.verdicts.append((dest, request_id))
        if vals is not None:
            verdict_bytes = REPLY_WORDS * 8 if verdict else 0
            self.traffic.count_wire(spec.name, header.nbytes + keys.nbytes + vals.nbytes
                                    + verdict_bytes)
        return request_id

    def message(self, pending: Pending, op: Op, segment: int, dest: int, payload: np.ndarray,
                clock: int, table_id: int = 0, num_keys: int = 0, width: int = 1) -> int:
        """Post to rank ``dest`` a request about ``segment`` whose payload is one uint8 message
        (its length in header word 6), and the receive of its reply; returns the request id."""
        request_id = self.requests.request_id()
        tag = self.tags.payload(request_id)
        header = encode_header(op, table_id, request_id, num_keys, width, payload.size,
                               clock=clock, segment=segment)
        reply = np.zeros(REPLY_WORDS, np.uint64)
        pending.keep += [header, payload, reply]
        for request in (self.comm.Isend(header, dest, TAG_REQUEST),
                        self.comm.Isend(payload, dest, tag), self.comm.Irecv(reply, dest, tag)):
            pending.add(request, dest)
        pending.replies.append((dest, tag, request_id, reply))
        return request_id

    def verdicts(self, pending: Pending, status: Status) -> None:
        """Send every server awaiting a verdict on ``pending`` (a push) ``status``."""
        for dest, request_id in pending.verdicts:
            self.verdict(pending, dest, request_id, status)

    def verdict(self, pending: Pending, dest: int, request_id: int, status: Status) -> None:
        """Send rank ``dest`` the verdict ``status`` on its part ``request_id`` of ``pending``."""
        verdict = encode_reply(request_id, status)
        pending.keep.append(verdict)
        try:
            pending.add(self.comm.Isend(verdict, dest, self.tags.verdict(request_id)), dest)
        except MPI.Exception as exc:
            self._failed(exc)

    def clock(self, dest: int, clock: int) -> None:
        """Tell server rank ``dest`` that this worker finished clock ``clock``; the send stays
        in ``requests.clock_sends`` until it completes."""
        msg = encode_header(Op.CLOCK, 0, 0, 0, 1, 1, clock=clock)
        try:
            self.requests.clock_sends.append((self.comm.Isend(msg, dest, TAG_REQUEST), msg, dest))
        except MPI.Exception as exc:
            self._failed(exc)

    def check_reply(self, source: int, tag: int, request_id: int, reply) -> str | None:
        """The error a completed reply reports (receiving its text), or None for OK."""
        status, text_len = parse_reply(reply, request_id)
        if status in (Status.OK, Status.WITHDRAWN):
            return None
        if status is Status.KEY_CACHE_MISS:
            return f"server rank {source}: key-cache miss on a resent push"
        text = np.empty(text_len, np.uint8)
        self.comm.Recv(text, source, tag)
        return f"server rank {source}: {text.tobytes().decode(errors='replace')}"

    def _failed(self, exc: MPI.Exception) -> None:
        if self.failed is None:
            raise exc
        self.failed(exc)
