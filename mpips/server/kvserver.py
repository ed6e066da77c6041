"""KVServer: the serve loop of a server rank (API layer).

The loop takes one request at a time from any worker, receives its payload chunk by chunk
into reused buffers, validates each chunk (mpips.wire.message) before a kernel reads it, and
answers. A request that fails validation is drained to its end so the stream from that
worker stays in step, and answered with an error the worker raises from ``wait``.

Requests run when the clock scheduler (mpips.core.scheduler) releases them: at once for async
tables, when the clocks allow for SSP reads; pushes to BSP tables are received whole, answered,
and applied at their clock boundary in worker order.

A push is applied while its worker still checks it: until the worker's verdict says OK, each
slice logs the rows it changes (mpips.store.undo), and a withdrawn or failed push is rolled back,
so a push is applied all or nothing.

Sparse slices settle between requests (mpips.store.sparse_slice.SparseSlice.settle), when the
loop has applied everything the last request released: after a clock message they record
their size and drop the rows their eviction policy says (mpips.core.eviction); tables with a
capacity also after every other request.

With replicas (mpips.server.replication) a server serves every segment it hosts (its own, and those
of dead servers it took over), answers a push once the segment's replica holder has its rows,
and applies the batches other servers send it while it waits.
"""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..ckpt.checkpoint import SaveCoordinator
from ..core.hosting import Hosting
from ..core.scheduler import ClockScheduler
from ..core.spec import TableSpec
from ..errors import ClockError, MessageError
from ..mpi.fault import ulfm_launch
from ..mpi.topology import Topology
from ..mpi.transport import TAG_REQUEST, Tags, wait_all
from ..store.slice import FLOAT, Slice
from ..wire import zero_rows
from ..wire.message import HEADER_WORDS, Header, Op, Status, parse_header
from .channel import WorkerChannel
from .replication import Replicator
from .segments import Segments
from .survivors import Survivors
from .verdict import Verdict
from .whole_pushes import StashedPush, WholePushes


class KVServer:
    """Serves the slices of one server rank until every worker has said DONE.

    Its collaborators: ``channel`` (receiving and answering workers), ``segments`` (what it
    serves), ``whole`` (BSP and coded pushes), ``saves`` (checkpoint requests); with
    replicas ``replication`` (else None); in a launch that survives dead ranks (ULFM, or
    replicas) ``survivors`` (else None)."""

    def __init__(self, topology: Topology, tables: list[TableSpec], home: dict[int, list[Slice]],
                 board=None, replicas: int = 0, restored: bool = False):
        """``tables``: every table's spec, in table id order; ``home``: per home segment of
        this server (mpips.core.hosting), its slice of every table."""
        self.topology = topology
        self.comm = topology.data
        self.tables = tables
        self.tags = Tags(self.comm)
        self.requests_served = 0
        self._keys = np.empty(0, np.uint64)
        self._vals = np.empty(0, FLOAT)
        self.board = board  # mpips.mpi.onesided.ClockBoard: clocks for one-sided readers
        self._published = {t.table_id: 0 for t in tables if t.one_sided}
        self._capped = any(t.capacity for t in tables)  # settle after every request
        self.live_workers = set(range(topology.num_workers))  # not yet DONE
        self.scheduler = ClockScheduler(topology.num_workers)
        self.segments = Segments(topology.server_index, home,
                                 Hosting(topology.num_servers, replicas).num_segments)
        self.channel = WorkerChannel(self.comm, topology.log)
        self.replication = Replicator(
            topology, tables, self.segments, replicas, restored,
            notice_deaths=lambda: self.survivors.handle(),
            stashed=lambda: [item for *_, item in self.scheduler.stashed()],
            adopt=self._adopt_stash) if replicas else None
        self.survivors = None  # carries on when a worker dies (ULFM launches), or a server
        if ulfm_launch() or replicas:
            self.survivors = Survivors(self.comm, topology.layout, topology.log,
                                       abandon=self.abandon_request, retire=self._retire,
                                       replication=self.replication)
            self.channel.complete = self.survivors.complete  # skips sends to dead workers
        self.whole = WholePushes(topology, tables, self.segments, self.channel, self.tags,
                                 self.replication)
        self.saves = SaveCoordinator(topology, tables, self.segments, self.channel, self.tags,
                                     guard=self._guarded, survivors=self.survivors,
                                     replicated=self.replication is not None)
        first, last = (min(home), max(home)) if home else (0, 0)  # one contiguous range
        for spec in tables:  # an empty range (more servers than keys) gets no requests
            begin, end = home[first][spec.table_id].key_range.begin, \
                home[last][spec.table_id].key_range.end
            self.scheduler.add_table(spec.table_id, spec.model, begin, max(end, begin + 1))

    def serve(self) -> None:
        """Serve until all workers are done. Point-to-point with the workers only.

        Each request goes through the clock scheduler (mpips.core.scheduler): pushes and pulls
        run when their table's consistency model lets them, one worker's requests in the
        order it sent them; a parked pull keeps its payload in MPI until it runs."""
        header = np.empty(HEADER_WORDS, np.uint64)
        remaining = self.live_workers
        if self.replication is not None:
            self.replication.start()
        status = MPI.Status()
        while remaining:
            if self.survivors is not None:  # ULFM: a dead worker must not block the others
                received = self.survivors.next_request(remaining)
                if received is None:
                    continue
                source, header = received
            else:
                wait_all([self.comm.Irecv(header, MPI.ANY_SOURCE, TAG_REQUEST)], [status])
                source = status.Get_source()
            try:
                parsed = parse_header(header, len(self.tables), [t.width for t in self.tables],
                                      self.segments.num_segments)
            except MessageError as exc:
                self.topology.log(f"dropped a request from rank {source}: {exc}")
                continue
            if parsed.op is Op.DONE:
                remaining.discard(source)
            self._guarded(lambda: self.run_items(self._admit(parsed, source)))
            self._publish_clocks()
            clocked = parsed.op is Op.CLOCK
            if remaining and (clocked or self._capped):
                self.segments.settle(self.scheduler.min_clock, clocked=clocked)
        self.channel.flush()
        if self.survivors is not None:
            self.survivors.close()
        if self.replication is not None:
            self.replication.close()
        if not self.scheduler.idle:
            self.topology.log("requests left unserved at the end: "
                              + "; ".join(self.scheduler.describe_waits()))

    def _publish_clocks(self) -> None:
        """Tell one-sided readers how far each one-sided table's clocks are (after the
        pushes the scheduler released were applied)."""
        if self.board is None:
            return
        for table_id, last in self._published.items():
            count = min(self.scheduler.min_clock(table_id), 1 << 62)
            if count != last:
                self.board.publish(table_id, count)
                self._published[table_id] = count

    def _admit(self, hdr: Header, source: int) -> list:
        """Hand a request to the scheduler; returns the items that may run now. A request
        that breaks the clock protocol is answered with the error (a CLOCK is logged)."""
        worker = self.topology.layout.worker_index(source)
        sched = self.scheduler
        if hdr.op is Op.SAVE:
            self.saves.on_request(hdr, source, self.live_workers)
            return []
        try:
            if hdr.op is Op.DONE:
                return sched.on_worker_gone(worker)
            if hdr.op is Op.CLOCK:
                return sched.on_clock(worker, hdr.clock)
            if hdr.op in (Op.PUSH, Op.PUSH_CODED):
                if sched.consistency(hdr.table_id).deterministic:
                    sched.check_request(worker, hdr.clock, hdr.table_id)  # before accepting it
                    stashed = self.whole.stash_or_log(hdr, source)
                    return [] if stashed is None else sched.on_push(worker, hdr.clock, stashed,
                                                                   hdr.table_id)
                return sched.on_push(worker, hdr.clock, (hdr, source), hdr.table_id)
            return sched.on_pull(worker, hdr.clock, hdr.required, (hdr, source), hdr.table_id)
        except ClockError as exc:
            if hdr.op in (Op.DONE, Op.CLOCK):
                self.topology.log(f"clock message from rank {source}: {exc}")
                return []
            if hdr.op is Op.PUSH_CODED:  # drain its one message, then answer
                tag = self.tags.payload(hdr.request_id)
                self.channel.recv_exact(np.empty(hdr.chunk_keys, np.uint8), source, tag)
                self.channel.reply(hdr.request_id, Status.BAD_REQUEST, str(exc), source, tag)
            else:
                self._handle(hdr, source, refuse=str(exc))
            return []

    def run_items(self, items) -> None:
        """Execute what the scheduler released, each item on its own: a worker that dies
        in the middle of one does not take the others with it."""
        for item in items:
            self._guarded(lambda: self._execute(item))

    def _guarded(self, action) -> None:
        """Run ``action``; in a launch that survives dead ranks, a worker that dies in the
        middle of it is handled (mpips.server.survivors)."""
        if self.survivors is None:
            action()
        else:
            self.survivors.run(action)

    def abandon_request(self) -> None:
        """A worker died in the middle of its request: roll back what of it was applied
        and not yet vouched for (mpips.store.undo), and forget its new keys."""
        for table in self.segments.slices():
            if table.undo.active:
                table.roll_back_push()
            table.abandon_pending()

    def _retire(self, rank: int) -> None:
        """Worker rank ``rank`` died: serve on without it (mpips.server.survivors)."""
        self.live_workers.discard(rank)
        self.run_items(self.scheduler.on_worker_gone(self.topology.layout.worker_index(rank),
                                                     dead=True))
        self.scheduler.take_dropped()  # its parked pulls: nobody will read the answers
        self.saves.on_worker_gone(self.live_workers)

    def _adopt_stash(self, entry: StashedPush) -> None:
        """Stash a BSP push a dead host had accepted (mpips.server.replication) and run what
        that releases."""
        self.run_items(self.scheduler.adopt_stash(entry.table_id, entry.clock, entry.worker,
                                                  entry))

    def _execute(self, item) -> None:
        """Run what the scheduler released: a request still in MPI, or a stashed push."""
        try:
            if isinstance(item, StashedPush):  # checked when it was received
                table = self.segments.hosted[item.segment][item.table_id]
                rows = table.push_whole(item.keys, item.vals)
                if self.replication is not None:
                    self.replication.applied_stash(item, table, rows)
            elif item[0].op is Op.PUSH_CODED:
                self.whole.push_coded(*item)
            else:
                self._handle(*item)
        except MessageError as exc:
            self.topology.log(f"lost the stream of a request: {exc}")
        self.requests_served += 1

    def _handle(self, hdr: Header, source: int, refuse: str | None = None) -> None:
        """Receive, apply or answer, and reply to one request; with ``refuse``, only drain
        its payload and reply with that error. With replicas, a push is answered once the
        replica holder has its rows, and a resent push applied before is not applied again
        (mpips.server.replication)."""
        table = None
        if refuse is None:
            try:
                table = self.segments.slice_for(hdr.segment, hdr.table_id)
            except MessageError as exc:
                refuse = str(exc)
        tag = self.tags.payload(hdr.request_id)
        name = self.tables[hdr.table_id].name
        error = None if refuse is None else f"table {name!r}: {refuse}"
        prev = None
        keys_buf, vals_buf = self._buffers(hdr)
        pushes = hdr.op in (Op.PUSH, Op.PUSH_PULL)
        worker = self.topology.layout.worker_index(source)
        replicated = pushes and self.replication is not None
        again = replicated and self.replication.is_duplicate(hdr.segment, worker, hdr.seq)
        touched: list[np.ndarray] = []  # keys a replicated push changed, chunk by chunk
        touched_rows: list[np.ndarray] = []  # their rows, when the slice gave them
        verdict = Verdict(self.comm, source, hdr.request_id, self.tags.verdict(hdr.request_id)) \
            if hdr.op is Op.PUSH and hdr.verdict else None
        if verdict is not None and not again and table is not None:
            table.begin_undoable_push(hdr.num_keys)
        for index in range(hdr.num_chunks):
            lo, hi = hdr.chunk_bounds(index)
            cached = error is None and table.caches_requests
            keys = table.receive_buffer(hi - lo) if cached else keys_buf[: hi - lo]
            vals = vals_buf[: hi - lo]
            self.channel.recv_exact(keys, source, tag)
            if pushes:
                self.channel.recv_exact(vals, source, tag)
            if verdict is not None and table is not None and table.undo.active \
                    and verdict.arrived_ok():
                table.keep_push()  # the worker vouched for the whole push: stop logging
            if error is None:
                try:
                    rows = self._apply_chunk(table, hdr, keys, vals, prev, tag, source, again,
                                             (worker, index) if cached else None)
                    prev = int(keys[-1])
                    if replicated and not again:
                        touched.append(keys.copy())
                        if rows is not None:
                            touched_rows.append(rows.copy())
                    continue
                except MessageError as exc:
                    error = f"table {name!r}, request {hdr.request_id}: {exc}"
            if hdr.op is not Op.PUSH:  # every announced chunk is answered, even after an error
                self._send_pulled(np.full_like(vals, np.nan), False, source, tag,
                                  self.tables[hdr.table_id])
        status = Status.BAD_REQUEST if error else Status.OK
        if verdict is not None:
            status, error = self._settle_push(table, verdict, error)
        elif pushes and table is not None:
            table.finish_push()
        if replicated and status is Status.OK:
            if again:
                self.replication.wait_replicated()
            else:
                self.replication.pushed(hdr.segment, table, touched, worker, hdr.seq,
                                        touched_rows if len(touched_rows) == len(touched)
                                        else None)
        self.channel.reply(hdr.request_id, status, error, source, tag)

    def _settle_push(self, table: Slice | None, verdict: "Verdict", error: str | None):
        """Keep or roll back a push once its verdict is in (``table`` None: it was refused);
        returns (status, error)."""
        try:
            withdrawn = verdict.wait_withdrawn()
        except MessageError as exc:
            error = error or f"verdict: {exc}"
            withdrawn = False
        if table is None:
            return Status.BAD_REQUEST, error
        if withdrawn or error:
            if table.undo.active:
                table.roll_back_push()
            else:
                table.keep_push()
                table.finish_push()
                error = f"{error} (the push was partly applied: it failed after its verdict)"
            return (Status.WITHDRAWN, None) if withdrawn and not error else (Status.BAD_REQUEST, error)
        table.keep_push()
        table.finish_push()
        return Status.OK, None

    def _apply_chunk(self, table, hdr, keys, vals, prev, tag, source, again=False,
                     origin=None) -> np.ndarray | None:
        """Apply/answer one chunk (``prev``: the last key of the chunk before); returns the
        rows a push changed when the slice says (mpips.store.slice). ``again``: the push was
        applied before (a resend), so only answer what it pulls. ``origin`` (worker, chunk
        index): the chunk came in a buffer of the slice's request cache."""
        rows = None
        if hdr.op is Op.PUSH:
            return None if again else table.push_chunk(keys, vals, prev, origin)
        if hdr.op is Op.PUSH_PULL and not again:
            rows = table.push_chunk(keys, vals, prev, origin)
            rows = None if rows is None else rows.copy()  # the pull may reuse its buffer
        data, reusable = table.read_chunk(keys, prev, self.channel.out_buffer, origin)
        self._send_pulled(data, reusable, source, tag, table.spec)
        return rows

    def _send_pulled(self, data: np.ndarray, reusable: bool, dest: int, tag: int,
                     spec: TableSpec) -> None:
        """Answer a pull chunk with its rows: raw float32, or without its all-zero rows for
        a table whose codec drops zeros (mpips.wire.zero_rows)."""
        if spec.zero_rows_dropped:
            encoded = zero_rows.encode(data)
            if reusable:
                self.channel.recycle(data)
            self.channel.send_values(encoded, dest, tag, reusable=False)
        else:
            self.channel.send_values(data, dest, tag, reusable=reusable)

    def _buffers(self, hdr: Header) -> tuple[np.ndarray, np.ndarray]:
        n = min(hdr.chunk_keys, hdr.num_keys)
        if self._keys.size < n:
            self._keys = np.empty(n, np.uint64)
        if self._vals.size < n * hdr.width:
            self._vals = np.empty(n * hdr.width, FLOAT)
        return self._keys, self._vals[: n * hdr.width].reshape(n, hdr.width)
