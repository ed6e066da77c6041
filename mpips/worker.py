"""KVWorker: non-blocking push and pull of table rows by key (API layer).

Every call converts and checks its input (mpips.checks), splits the sorted keys into one
contiguous run per server, and posts the sends and receives at once; it returns a timestamp,
and ``wait(ts)`` completes the operation. As with MPI buffers, the arrays handed to push/pull
must not be changed until the wait returns.

A push validates keys and values while the servers already receive and apply them, then
sends each server its verdict (mpips.message): a bad push is withdrawn, the servers roll it
back from their undo logs, and ``push`` raises the error, so a push is all or nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI

from .checks import as_keys, as_output, as_values, check_keys, check_push
from .errors import MessageError, MpipsError, TableError
from .message import (REPLY_WORDS, Op, Status, chunk_keys_for, encode_header, encode_reply,
                      parse_reply)
from .spec import TableSpec
from .topology import Topology
from .transport import TAG_REQUEST, TAG_VERDICT, Tags, wait_all


@dataclass
class _Pending:
    """What ``wait`` needs to finish one operation."""

    requests: list = field(default_factory=list)
    replies: list = field(default_factory=list)  # (server rank, tag, request id, reply buffer)
    keep: list = field(default_factory=list)  # buffers MPI still reads or writes
    result: np.ndarray | None = None
    keys: np.ndarray | None = None  # unchecked pull keys, re-checked if a server rejects
    spec: TableSpec | None = None
    verdicts: list = field(default_factory=list)  # (server rank, request id) awaiting a push verdict


class KVWorker:
    """The worker side of mpips; one per worker rank, made by ``PS.run``."""

    def __init__(self, topology: Topology, tables: dict[str, TableSpec]):
        self.topology = topology
        self.comm = topology.data
        self.tables = tables
        self.tags = Tags(self.comm)
        self._next_request = 0
        self._next_ts = 0
        self._pending: dict[int, _Pending] = {}
        self.closed = False

    @property
    def worker_rank(self) -> int:
        return self.topology.worker_index

    @property
    def num_workers(self) -> int:
        return self.topology.num_workers

    @property
    def worker_comm(self) -> MPI.Intracomm:
        """The communicator of all workers (for the job's own collectives)."""
        return self.topology.group

    def push(self, table, keys, vals) -> int:
        """Send ``vals`` for ``keys`` to the servers' update rule; returns a timestamp."""
        return self._submit(Op.PUSH, table, keys, vals, None)

    def pull(self, table, keys, out=None) -> int:
        """Fetch the rows of ``keys`` (into ``out`` if given); returns a timestamp."""
        return self._submit(Op.PULL, table, keys, None, out)

    def push_pull(self, table, keys, vals, out=None) -> int:
        """Push ``vals`` then pull the updated rows of the same keys, in one round trip."""
        return self._submit(Op.PUSH_PULL, table, keys, vals, out)

    def wait(self, ts: int):
        """Block until operation ``ts`` is complete; returns the pulled rows (shape (n,) for
        width-1 tables unless ``out`` was given) or None for a push. Raises KeyOrderError /
        KeyRangeError for bad pull keys, MessageError when a server rejected a request for
        another reason."""
        try:
            pending = self._pending.pop(ts)
        except KeyError:
            raise ValueError(f"timestamp {ts} is unknown or was already waited for") from None
        wait_all(pending.requests)
        errors = [self._check_reply(*reply) for reply in pending.replies]
        errors = [e for e in errors if e]
        if errors:
            if pending.keys is not None:
                check_keys(pending.keys, pending.spec)  # the precise error, if it is the keys
            raise MessageError("; ".join(errors))
        return pending.result

    def wait_all(self) -> None:
        """Wait for every operation still in flight."""
        for ts in sorted(self._pending):
            self.wait(ts)

    def barrier(self) -> None:
        """Collective over the workers: returns once every worker has entered it."""
        wait_all([self.topology.group.Ibarrier()])

    def close(self) -> None:
        """Finish pending operations and tell every server this worker is done.
        Safe to call twice."""
        if self.closed:
            return
        self.wait_all()
        done = encode_header(Op.DONE, 0, 0, 0, 1, 1)
        for server in range(self.topology.num_servers):
            self.comm.Send(done, self.topology.layout.server_rank(server), TAG_REQUEST)
        self.closed = True

    def _spec(self, table) -> TableSpec:
        name = table.name if isinstance(table, TableSpec) else table
        try:
            return self.tables[name]
        except KeyError:
            raise TableError(f"no table named {name!r}; tables: {sorted(self.tables)}") from None

    def _submit(self, op: Op, table, keys, vals, out) -> int:
        if self.closed:
            raise RuntimeError("this KVWorker is closed")
        spec = self._spec(table)
        pushes, pulls = op in (Op.PUSH, Op.PUSH_PULL), op in (Op.PULL, Op.PUSH_PULL)
        # A plain push is checked while it travels (see _judge); a push_pull applies and
        # answers chunk by chunk, so it is checked whole before anything is sent. A pull
        # changes nothing: the servers check its keys chunk by chunk as they read them.
        keys = as_keys(keys, spec, check_order=op is Op.PUSH_PULL)
        vals = as_values(vals, keys.size, spec, finite=op is Op.PUSH_PULL) if pushes else None
        result = as_output(out, keys.size, spec) if pulls else None
        pending = _Pending(keep=[keys, vals, result])
        if not pushes:
            pending.keys, pending.spec = keys, spec
        cuts = np.searchsorted(keys, spec.partition.boundaries())
        bounds = np.concatenate([[0], cuts, [keys.size]])
        for server in range(spec.num_servers):
            lo, hi = int(bounds[server]), int(bounds[server + 1])
            if hi > lo:
                self._post(pending, op, spec, server, keys[lo:hi],
                           vals[lo:hi] if pushes else None, result[lo:hi] if pulls else None)
        if op is Op.PUSH:
            self._judge(pending, spec, keys, vals)
        if pulls and out is None and spec.width == 1:
            result = result.reshape(-1)
        pending.result = result if pulls and out is None else (out if pulls else None)
        ts = self._next_ts
        self._next_ts += 1
        self._pending[ts] = pending
        return ts

    def _judge(self, pending: _Pending, spec: TableSpec, keys, vals) -> None:
        """Check a posted push and send every server involved its verdict. On a bad push,
        wait until every server has rolled it back, then raise the check's error."""
        requests = pending.requests
        try:
            check_push(keys, vals, spec, chunk_keys_for(spec.width),
                       between=lambda: MPI.Request.Testsome(requests))
        except MpipsError as exc:
            self._send_verdicts(pending, Status.WITHDRAWN)
            wait_all(pending.requests)
            for reply in pending.replies:
                self._check_reply(*reply)  # consumes any error text, keeping streams in step
            raise exc from None
        self._send_verdicts(pending, Status.OK)

    def _send_verdicts(self, pending: _Pending, status: Status) -> None:
        for dest, request_id in pending.verdicts:
            verdict = encode_reply(request_id, status)
            pending.keep.append(verdict)
            pending.requests.append(self.comm.Isend(verdict, dest, TAG_VERDICT))

    def _post(self, pending: _Pending, op: Op, spec: TableSpec, server: int, keys, vals, out):
        dest = self.topology.layout.server_rank(server)
        request_id = self._next_request
        self._next_request += 1
        tag = self.tags.payload(request_id)
        chunk = chunk_keys_for(spec.width)
        header = encode_header(op, spec.table_id, request_id, keys.size, spec.width, chunk)
        pending.keep.append(header)
        reqs = pending.requests
        reqs.append(self.comm.Isend(header, dest, TAG_REQUEST))
        for lo in range(0, keys.size, chunk):
            hi = min(lo + chunk, keys.size)
            reqs.append(self.comm.Isend(keys[lo:hi], dest, tag))
            if vals is not None:
                reqs.append(self.comm.Isend(vals[lo:hi], dest, tag))
            if out is not None:
                reqs.append(self.comm.Irecv(out[lo:hi], dest, tag))
        reply = np.empty(REPLY_WORDS, np.uint64)
        reqs.append(self.comm.Irecv(reply, dest, tag))
        pending.replies.append((dest, tag, request_id, reply))
        if op is Op.PUSH:
            pending.verdicts.append((dest, request_id))

    def _check_reply(self, source: int, tag: int, request_id: int, reply) -> str | None:
        status, text_len = parse_reply(reply, request_id)
        if status in (Status.OK, Status.WITHDRAWN):
            return None
        text = np.empty(text_len, np.uint8)
        self.comm.Recv(text, source, tag)
        return f"server rank {source}: {text.tobytes().decode(errors='replace')}"
