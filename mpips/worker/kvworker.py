"""KVWorker: non-blocking push and pull of table rows by key (API layer).

Every call converts and checks its input (mpips.core.checks), splits the sorted keys into one
contiguous run per server, and posts the sends and receives at once; it returns a timestamp,
and ``wait(ts)`` completes the operation. As with MPI buffers, the arrays handed to push/pull
must not be changed until the wait returns.

A push validates keys and values while the servers already receive and apply them, then
sends each server its verdict (mpips.wire.message): a bad push is withdrawn, the servers roll it
back from their undo logs, and ``push`` raises the error, so a push is all or nothing.

KVWorker owns collaborators it calls through narrow interfaces: ``requests`` (worker.requests:
timestamps, operations in flight), ``poster`` (worker.posting: requests on the wire), ``coded``
(worker.coded, made at the first push to a table with a codec) and ``failover``
(worker.failover, only with replicas, else None), called where the worker waits for replies
(``_wait_replies``, ``_surviving``) and after it posts (``_after_posting``). Collective over
the workers: ``save_checkpoint``, ``barrier``, ``collective``; the rest is point to point.
"""
from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from ..ckpt.checkpoint import save_order
from ..core.checks import as_keys, as_output, as_values, check_keys, check_push
from ..core.hosting import Hosting
from ..core.spec import TableSpec
from ..errors import CheckpointError, MessageError, MpipsError, TableError
from ..mpi.fault import survive_collective
from ..mpi.topology import Topology
from ..mpi.transport import TAG_REQUEST, Tags, completed, wait_all
from ..wire import zero_rows
from ..wire.message import Op, Status, chunk_keys_for, encode_header
from .coded import CodedPushes
from .failover import ServerFailover
from .posting import Poster
from .requests import Pending, Requests
from .traffic import Traffic


class KVWorker:
    """The worker side of mpips; one per worker rank, made by ``PS.run``."""

    def __init__(self, topology: Topology, tables: dict[str, TableSpec], reader=None,
                 replicas: int = 0):
        self.topology = topology
        self.rma = reader  # mpips.mpi.onesided.OneSidedReader for one-sided dense tables
        self.comm = topology.data
        self.tables = tables
        self.tags = Tags(self.comm)
        self.requests = Requests()  # timestamps, request ids, operations in flight
        self._staleness: dict[str, int] = {}
        self._filters: dict[str, object] = {}  # table name -> mpips.wire.filters.PushFilter
        self.traffic = Traffic()
        self.coded: CodedPushes | None = None  # made at the first push to a table with a codec
        self.clock_value = 0
        self.wait_seconds = 0.0
        self.closed = False
        hosting = Hosting(topology.num_servers, replicas)  # who serves each segment
        self._fixed_hosting = hosting  # without replicas no segment ever moves
        self.failover = (ServerFailover(topology, self.requests, self._post,
                                        lambda *verdict: self.poster.verdict(*verdict), hosting)
                         if hosting.replicas else None)  # resends after a dead server
        self.poster = Poster(self.comm, self.tags, self.requests, self.traffic,
                             self.failover.post_failed if self.failover else None)

    @property
    def hosting(self) -> Hosting:
        """Who serves each segment now (mpips.core.hosting): with replicas the failover's,
        which changes as servers die; without, the one of the launch."""
        return self._fixed_hosting if self.failover is None else self.failover.hosting

    @property
    def worker_rank(self) -> int:
        return self.topology.worker_index

    @property
    def num_workers(self) -> int:
        return self.topology.num_workers

    @property
    def worker_comm(self) -> MPI.Intracomm:
        """The communicator of all workers (of those alive, after a worker died in a ULFM
        launch: see ``collective``), for the job's own collectives."""
        return self.topology.group

    def collective(self, operation):
        """Run ``operation(worker_comm)``, a collective over the workers, and return its
        result. In a ULFM launch (``mpips launch --ft``) a worker that dies meanwhile is
        survived: the others shrink ``worker_comm`` to the living and run ``operation``
        again, so it must be safe to repeat (mpips.mpi.fault.survive_collective); the servers
        retire the dead worker themselves (mpips.server.survivors)."""
        return survive_collective(self.topology, operation)

    def push(self, table, keys, vals, *, after=(), callback=None) -> int:
        """Send ``vals`` for ``keys`` to the servers' update rule; returns a timestamp.

        ``after``: timestamps this operation depends on; they complete before it is sent.
        ``callback(result)`` runs when the operation completes successfully (in ``wait``,
        ``wait_all`` or ``poll``). The same two options apply to pull and push_pull."""
        return self._submit(Op.PUSH, table, keys, vals, None, after, callback)

    def pull(self, table, keys, out=None, *, after=(), callback=None) -> int:
        """Fetch the rows of ``keys`` (into ``out`` if given); returns a timestamp. A pull
        sees every earlier push of this worker to the same table (per-server order) under
        async and ssp; under bsp it sees the pushes of earlier clocks."""
        return self._submit(Op.PULL, table, keys, None, out, after, callback)

    def push_pull(self, table, keys, vals, out=None, *, after=(), callback=None) -> int:
        """Push ``vals`` then pull the updated rows of the same keys, in one round trip."""
        return self._submit(Op.PUSH_PULL, table, keys, vals, out, after, callback)

    def clock(self) -> int:
        """End this worker's current step: tell every server it finished clock
        ``clock_value`` (its later pushes and pulls carry the next one). Tables under "bsp"
        and "ssp:TAU" need it once per step from every worker; returns the new clock. With
        replicas it first completes the operations in flight (their results stay for
        ``wait``), so that none is resent to a new server under a clock already finished."""
        if self.failover is not None:  # a resend after a failover never carries an old clock
            for ts in self.requests.in_flight():
                self._complete(ts)  # results stay for wait(ts)
        requests = self.requests
        requests.clock_sends = [c for c in requests.clock_sends if not completed(c[0])]
        for server in self.hosting.living:
            self.poster.clock(self.topology.layout.server_rank(server), self.clock_value)
        self._after_posting()
        self.clock_value += 1
        return self.clock_value

    def save_checkpoint(self, root, step: int, job: dict | None = None,
                        keep: int | None = None, run: str | None = None,
                        incremental: bool = False) -> None:
        """Checkpoint every table under ``root`` as step ``step`` (mpips.ckpt.checkpoint), with
        ``job`` (JSON) in the manifest, keeping the ``keep`` newest checkpoints of run
        ``run`` (an id the manifest records; pruning never touches another run's, nor a
        checkpoint that a kept one builds on). ``incremental``: write only the rows changed
        since the last checkpoint these servers saved or restored, when they can (else a full
        one, and server 0 logs why). Collective over the workers, at a step boundary (after
        ``clock()``); raises CheckpointError when the servers could not write or commit it
        (nothing valid is ever overwritten)."""
        self.wait_all()
        order = save_order(root, step, job, keep, run, incremental)
        pending = Pending()
        for server in self.hosting.living:  # each writes the segments it serves
            self._post_message(pending, Op.SAVE, 0, order,
                               dest=self.topology.layout.server_rank(server))
        # a server that dies meanwhile: the others save without it (mpips.ckpt.checkpoint),
        # and its own request is dropped (a SAVE has no parts to send again)
        self._wait_replies(pending)
        errors = [e for e in (self.poster.check_reply(*r) for r in pending.replies) if e]
        if errors:
            raise CheckpointError(root, errors[0])

    def set_push_filter(self, table, push_filter) -> None:
        """Filter this worker's pushes to ``table`` (an mpips.wire.filters.PushFilter, e.g.
        ``make_filter("significantly_modified", delta=1e-3)``; None removes it)."""
        name = self._spec(table).name
        if push_filter is None:
            self._filters.pop(name, None)
        else:
            self._filters[name] = push_filter

    def push_filter(self, table):
        """The push filter of ``table`` on this worker, or None."""
        return self._filters.get(self._spec(table).name)

    def set_staleness(self, table, staleness: int) -> None:
        """Change the SSP bound of this worker's reads of an "ssp" table from now on."""
        spec = self._spec(table)
        if spec.model.model != "ssp":
            raise TableError(f"table {spec.name!r} is {spec.consistency}: only ssp tables "
                             f"take a staleness")
        if isinstance(staleness, bool) or not isinstance(staleness, int) or staleness < 0:
            raise TableError(f"table {spec.name!r}: staleness must be an int >= 0, got "
                             f"{staleness!r}")
        self._staleness[spec.name] = staleness

    def wait(self, ts: int):
        """Block until operation ``ts`` is complete; returns the pulled rows (shape (n,) for
        width-1 tables unless ``out`` was given) or None for a push. Raises KeyOrderError /
        KeyRangeError for bad pull keys, MessageError when a server rejected a request for
        another reason."""
        if not self.requests.finished(ts):
            self._complete(ts)
        result, error = self.requests.collect(ts)
        if error is not None:
            raise error
        return result

    def poll(self) -> list[int]:
        """Complete (and run the callbacks of) every operation whose messages are all done,
        without blocking; returns their timestamps, still to be ``wait``-ed for results."""
        ready = [ts for ts, p in self.requests.pending.items() if completed(p.requests)]
        for ts in ready:
            self._complete(ts)
        return ready

    def wait_all(self) -> None:
        """Wait for every operation still in flight."""
        for ts in self.requests.in_flight():
            self.wait(ts)

    def _complete(self, ts: int) -> None:
        """Finish operation ``ts``: its result or error waits in ``requests`` for ``wait``."""
        operation = self.requests.operation(ts)  # ValueError if unknown
        began = time.perf_counter()
        self._wait_replies(operation)  # after a dead server, for its parts posted again
        pending = self.requests.take(ts)
        if pending.coded:  # a key-cache miss is resent with full keys
            self.coded.resend_misses(pending)
        self.wait_seconds += time.perf_counter() - began
        try:
            errors = [e for e in (self.poster.check_reply(*r) for r in pending.replies) if e]
            if errors:
                if pending.keys is not None:
                    check_keys(pending.keys, pending.spec)  # the precise error, if the keys
                raise MessageError("; ".join(errors))
            for _, reply_rows, rows, table in pending.expand:  # replies without zero rows
                self.traffic.count_pulled(table, rows.size, zero_rows.decode_into(reply_rows,
                                                                                  rows))
        except MpipsError as exc:
            self.requests.finish(ts, error=exc)
            return
        for whole, part, rows in pending.scatter:
            whole[part] = rows
        self.requests.finish(ts, pending.result)
        if pending.callback is not None:
            pending.callback(pending.result)

    def barrier(self, scope: str = "workers") -> None:
        """Collective over the workers: returns once every worker has entered it. With
        ``scope="job"`` each worker first completes all its operations, so afterwards every
        server has applied every push sent before the barrier (bsp tables: at its clock
        boundary), and every pull after it sees them (async, ssp)."""
        if scope not in ("workers", "job"):
            raise ValueError(f"barrier scope must be 'workers' or 'job', got {scope!r}")
        if scope == "job":
            self.wait_all()
        wait_all([self.topology.group.Ibarrier()])

    def close(self) -> None:
        """Finish pending operations and tell every server this worker is done.
        Safe to call twice."""
        if self.closed:
            return
        self.wait_all()
        if self.rma is not None:
            self.rma.close()
        while not self._surviving(wait_all, [c[0] for c in self.requests.clock_sends]):
            pass
        self.requests.clock_sends.clear()
        done = encode_header(Op.DONE, 0, 0, 0, 1, 1, clock=self.clock_value)
        for server in range(self.topology.num_servers):
            if server in self.hosting.living:  # a server that dies now needs no DONE
                self._surviving(self.comm.Send, done, self.topology.layout.server_rank(server),
                                TAG_REQUEST)
        self.closed = True

    def _dest(self, segment: int) -> int:
        """Rank of the server that serves ``segment`` now."""
        return self.topology.layout.server_rank(self.hosting.host(segment))

    def _wait_replies(self, pending: Pending) -> None:
        """Wait for ``pending``'s messages; with replicas, surviving dead servers (without,
        an error goes on to mpips.mpi.fault)."""
        if self.failover is None:
            wait_all(pending.requests)
        else:
            self.failover.wait(pending)

    def _surviving(self, action, *args) -> bool:
        """Run ``action(*args)``; True when it succeeded, False when a server died and the
        failover took over (with replicas only)."""
        if self.failover is None:
            action(*args)
            return True
        return self.failover.surviving(action, *args)

    def _after_posting(self) -> None:
        """An operation is posted: with replicas, fail over for posts that found a server dead."""
        if self.failover is not None:
            self.failover.after_posting()

    def _spec(self, table) -> TableSpec:
        name = table.name if isinstance(table, TableSpec) else table
        try:
            return self.tables[name]
        except KeyError:
            raise TableError(f"no table named {name!r}; tables: {sorted(self.tables)}") from None

    def _submit(self, op: Op, table, keys, vals, out, after=(), callback=None) -> int:
        if self.closed:
            raise RuntimeError("this KVWorker is closed")
        for ts in (after,) if isinstance(after, int) else after:
            if not self.requests.finished(ts):
                self._complete(ts)  # its result stays for a later wait(ts)
        spec = self._spec(table)
        if op is Op.PUSH and spec.name in self._filters:
            keys, vals = self._filters[spec.name].apply(keys, vals)
        if op is Op.PUSH and spec.codec:
            if self.coded is None:
                self.coded = CodedPushes(self._post_message, self._dest, self.requests,
                                         self.traffic)
            return self.coded.push(spec, keys, vals, callback)
        if op is Op.PULL and spec.one_sided and self.rma is not None:
            ts = self._pull_one_sided(spec, keys, out, callback)
            if ts is not None:
                return ts
        if op is Op.PUSH_PULL and spec.model.deterministic:
            raise TableError(f"table {spec.name!r} is bsp: its pushes apply at the clock "
                             f"boundary, so push_pull cannot return them; push, then pull")
        pushes, pulls = op in (Op.PUSH, Op.PUSH_PULL), op in (Op.PULL, Op.PUSH_PULL)
        # A push of more than one chunk is checked while it travels (see _judge); a smaller
        # push, and a push_pull (applied and answered chunk by chunk), are checked whole
        # before anything is sent. A pull changes nothing: the servers check its keys.
        keys = as_keys(keys, spec, check_order=False)
        travels = op is Op.PUSH and keys.size > chunk_keys_for(spec.width)
        if pushes and not travels:
            check_keys(keys, spec)
        vals = as_values(vals, keys.size, spec, finite=not travels) if pushes else None
        result = as_output(out, keys.size, spec) if pulls else None
        pending = Pending(keep=[keys, vals, result], callback=callback)
        if not pushes:
            pending.keys, pending.spec = keys, spec
        for server, part in spec.split(keys):
            into = None
            if pulls:
                into = result[part]  # a copy for an index array: scattered back in _complete
                if not isinstance(part, slice):
                    pending.scatter.append((result, part, into))
            self._post(pending, op, spec, server, keys[part], vals[part] if pushes else None,
                       into, verdict=travels)
        if pushes:
            self.traffic.count_push(spec.name, keys.size, spec.width)
        if travels:
            self._judge(pending, spec, keys, vals)
        if pulls and out is None and spec.width == 1:
            result = result.reshape(-1)
        pending.result = result if pulls and out is None else (out if pulls else None)
        ts = self.requests.register(pending)
        self._after_posting()
        return ts

    def _pull_one_sided(self, spec: TableSpec, keys, out, callback) -> int | None:
        """Read the rows from the servers' windows (mpips.mpi.onesided); None when the reader
        cannot serve this read now (a server behind the clock it needs, a segment away from
        its home server): the caller pulls two-sided."""
        keys = as_keys(keys, spec)  # fully checked: no server looks at them
        result = as_output(out, keys.size, spec)
        required = spec.model.required_clock(self.clock_value, self._staleness.get(spec.name))
        if not self.rma.pull(spec, keys, result, self.hosting, required):
            return None
        if out is None and spec.width == 1:
            result = result.reshape(-1)
        return self.requests.register(Pending(result=out if out is not None else result,
                                              callback=callback))

    def _post(self, pending: Pending, op: Op, spec: TableSpec, segment: int, keys, vals, out,
              seq: int | None = None, verdict: bool = False) -> int:
        """Post one server's part of an operation to the host of ``segment`` (the segment its
        keys are in), at this worker's clock (``seq``: a resent push's sequence number;
        ``verdict``: a push whose verdict follows); returns the request id."""
        required = spec.model.required_clock(self.clock_value, self._staleness.get(spec.name)) \
            if op is not Op.PUSH else 0
        return self.poster.part(pending, op, spec, segment, self._dest(segment), keys, vals, out,
                                self.clock_value, required, seq, verdict)

    def _post_message(self, pending: Pending, op: Op, segment: int, payload: np.ndarray,
                      table_id: int = 0, num_keys: int = 0, width: int = 1,
                      dest: int | None = None) -> int:
        """Post a one-message request about ``segment`` (Poster.message) to the server that
        serves the segment now, or to rank ``dest`` (a request to one server, not about a
        segment); returns the request id."""
        dest = self._dest(segment) if dest is None else dest
        return self.poster.message(pending, op, segment, dest, payload, self.clock_value,
                                   table_id, num_keys, width)

    def _judge(self, pending: Pending, spec: TableSpec, keys, vals) -> None:
        """Check a posted push and send every server involved its verdict. On a bad push,
        wait until every server has rolled it back, then raise the check's error."""
        requests = pending.requests
        try:
            check_push(keys, vals, spec, chunk_keys_for(spec.width),
                       between=lambda: completed(requests))
        except MpipsError as exc:
            self.poster.verdicts(pending, Status.WITHDRAWN)
            if self._surviving(wait_all, pending.requests):  # else: nothing to withdraw there
                for reply in pending.replies:
                    self.poster.check_reply(*reply)  # reads error texts: streams stay in step
            raise exc from None
        self.poster.verdicts(pending, Status.OK)
