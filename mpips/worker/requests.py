"""What a worker keeps about each operation in flight until ``wait`` finishes it: its
requests, replies and buffers (Pending), and each server's share as posted, enough to post
it again after a dead server (Part). API layer, pure data."""
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
