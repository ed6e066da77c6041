"""What a worker keeps about its operations until ``wait`` finishes them (API layer; no MPI
call, bookkeeping only).

``Requests`` is the worker's request tracker (ps-lite's Customer): timestamps, request ids,
the operations in flight, the results not yet waited for and the clock messages in flight.
Each operation in flight is a ``Pending`` (its requests, replies and buffers), which keeps
each server's share as posted (``Part``), enough to post it again after a dead server.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.spec import TableSpec
from ..wire.message import Op


@dataclass
class Pending:
    """What ``wait`` needs to finish one operation."""

    requests: list = field(default_factory=list)
    replies: list = field(default_factory=list)  # (server rank, tag, request id, reply buffer)
    keep: list = field(default_factory=list)  # buffers MPI still reads or writes
    result: np.ndarray | None = None
    keys: np.ndarray | None = None  # unchecked pull keys, re-checked if a server rejects
    spec: TableSpec | None = None
    verdicts: list = field(default_factory=list)  # (server rank, request id) awaiting a push verdict
    callback: object = None  # called with the result on success
    coded: dict = field(default_factory=dict)  # request id -> (spec, server, keys, vals)
    dests: list = field(default_factory=list)  # rank of each of ``requests``
    parts: list = field(default_factory=list)  # Part, as posted
    scatter: list = field(default_factory=list)  # (result, index array, pulled rows) to copy back
    expand: list = field(default_factory=list)  # (server rank, reply buffer, rows, table) to decode

    def add(self, request, dest: int) -> None:
        self.requests.append(request)
        self.dests.append(dest)


@dataclass
class Part:
    """One server's share of an operation, as posted (enough to post it again)."""

    op: Op
    spec: object
    segment: int
    keys: np.ndarray
    vals: np.ndarray | None
    out: np.ndarray | None
    seq: int
    dest: int  # rank it was sent to
    verdict: bool = False  # a push whose verdict followed it


class Requests:
    """One worker's operations from posting to ``wait`` (ps-lite's Customer): the counters of
    timestamps and request ids, the operations in flight (timestamp -> Pending), the results
    completed but not yet waited for (timestamp -> (result, error)) and the clock messages in
    flight. Bookkeeping only: KVWorker posts and waits, ServerFailover posts again what went
    to a dead server."""

    def __init__(self):
        self.next_ts = 0
        self.next_request = 0
        self.pending: dict[int, Pending] = {}
        self.completed: dict[int, tuple] = {}  # ts -> (result, error), not yet waited for
        self.clock_sends: list = []  # (request, buffer, server rank) of clock messages in flight

    def request_id(self) -> int:
        """A new request id (it names the request's tags: mpips.mpi.transport.Tags)."""
        request_id = self.next_request
        self.next_request += 1
        return request_id

    def register(self, pending: Pending) -> int:
        """Put an operation in flight; returns its timestamp."""
        ts = self.next_ts
        self.next_ts += 1
        self.pending[ts] = pending
        return ts

    def in_flight(self) -> list[int]:
        """The timestamps of the operations in flight, oldest first."""
        return sorted(self.pending)

    def operation(self, ts: int) -> Pending:
        """Operation ``ts``, in flight; ValueError when it is unknown or was waited for."""
        try:
            return self.pending[ts]
        except KeyError:
            raise ValueError(f"timestamp {ts} is unknown or was already waited for") from None

    def take(self, ts: int) -> Pending:
        """Operation ``ts`` leaves the flight: its messages are done."""
        return self.pending.pop(ts)

    def finish(self, ts: int, result=None, error: Exception | None = None) -> None:
        """Operation ``ts`` completed with ``result`` or ``error``, kept for ``wait``."""
        self.completed[ts] = (result, error)

    def finished(self, ts: int) -> bool:
        """Whether operation ``ts`` completed and was not waited for yet."""
        return ts in self.completed

    def collect(self, ts: int) -> tuple:
        """(result, error) of completed operation ``ts``, handed out once."""
        return self.completed.pop(ts)
