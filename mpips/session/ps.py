"""The session object of one SPMD launch: roles, tables, and the run of a job (API layer)."""
from __future__ import annotations

import os
import sys

import numpy as np
from mpi4py import MPI

from ..launch import startup
from ..errors import LayoutError, RankLost, TableError
from ..mpi.fault import abort_launch, carried_on_past_a_failure, is_rank_failure, rank_lost
from ..core.hosting import Hosting
from ..core.partition import KEY_SPACE, ranks_lost_before, servers_after_loss
from ..ckpt.restore import restore as restore_checkpoint
from ..mpi.onesided import ClockBoard, OneSidedReader, rma_mode
from ..server.kvserver import KVServer
from ..core.spec import TableSpec
from ..store.slice import Slice
from ..store.slices import make_slice
from ..mpi.topology import Topology
from ..mpi.workqueue import WorkQueue
from ..mpi.transport import PIN_VARIABLE, share_cores, tighten_timer_slack, use_dedicated_cores
from ..worker.kvworker import KVWorker


def init(servers: int = 1, *, replicas: int = 0, comm: MPI.Intracomm | None = None) -> "PS":
    """Start mpips on ``comm`` (default COMM_WORLD) with its last ``servers`` ranks as servers.

    ``replicas=K`` keeps K copies of each key range on other servers (mpips.core.hosting), so that
    in a ULFM launch (``mpips launch --ft``) the job carries on while fewer than K+1 servers
    holding the same keys die (mpips.server.replication); a push is then acknowledged only once
    every copy has it.

    Collective over ``comm``. Raises LayoutError on every rank when the layout is impossible.
    In a relaunch after lost ranks (``mpips launch --relaunch`` sets MPIPS_RANKS_LOST), each
    lost rank costs a server while more than one is left (see
    mpips.core.partition.servers_after_loss), so workers keep their data shards.
    """
    comm = comm if comm is not None else MPI.COMM_WORLD
    lost = ranks_lost_before(os.environ)
    if lost:
        fewer = servers_after_loss(servers, lost)
        if comm.Get_rank() == 0:
            print(f"[mpips rank 0/{comm.Get_size()}] relaunched after losing {lost} rank(s) "
                  f"(MPIPS_RANKS_LOST): {fewer} server(s) instead of {servers}", file=sys.stderr,
                  flush=True)
        servers = fewer
        if replicas >= servers:  # a replica needs a server of its own
            if comm.Get_rank() == 0:
                print(f"[mpips rank 0/{comm.Get_size()}] {servers} server(s) left: keeping "
                      f"{servers - 1} replica(s) instead of {replicas}", file=sys.stderr,
                      flush=True)
            replicas = servers - 1
    return PS(comm, servers, replicas)


class PS:
    """Roles, tables and the data path of one launch. Use ``init`` to make one."""

    def __init__(self, comm: MPI.Intracomm, servers: int, replicas: int = 0):
        self.topology = Topology(comm, servers)
        dedicated = self.topology.ranks_on_node <= len(os.sched_getaffinity(0))
        use_dedicated_cores(dedicated)
        if not dedicated and not self.topology.node_bound and \
                os.environ.get(PIN_VARIABLE, "") == "1":
            share_cores(self.topology.node_place)
        tighten_timer_slack()
        self.replicas = _same_everywhere(self.topology.data, replicas)
        self.hosting = Hosting(servers, self.replicas)  # LayoutError for an impossible one
        self.rma_mode = rma_mode(self.topology.data)  # "shared" on one node, else "get"
        self._board: ClockBoard | None = None
        self._queues: list[WorkQueue] = []
        self.tables: dict[str, TableSpec] = {}
        # per home segment (mpips.core.hosting) of this server, its slice of every table; on a
        # worker, under segment -1 - v, the window placeholders of home segment v of a server
        self._slices: dict[int, list[Slice]] = {}
        self._worker: KVWorker | None = None
        self.server: KVServer | None = None
        self.closed = False
        self.failed = False  # a rank died: nothing collective may run any more
        self.survived_a_failure = False  # set by close: end the process with mpips.mpi.fault.leave
        self._restored = False

    # -- who am I -------------------------------------------------------------------------
    is_server = property(lambda self: self.topology.is_server)
    is_worker = property(lambda self: not self.topology.is_server)
    rank = property(lambda self: self.topology.rank)
    size = property(lambda self: self.topology.size)
    num_servers = property(lambda self: self.topology.num_servers)
    num_workers = property(lambda self: self.topology.num_workers)
    worker_rank = property(lambda self: self.topology.worker_index)
    server_rank = property(lambda self: self.topology.server_index)
    comm = property(lambda self: self.topology.data)

    @property
    def worker_comm(self) -> MPI.Intracomm | None:
        """Communicator of the workers (None on servers)."""
        return None if self.is_server else self.topology.group

    def log(self, message: str) -> None:
        """One line to stderr labelled with this rank and role."""
        self.topology.log(message)

    # -- tables ---------------------------------------------------------------------------
    def dense_table(self, name: str, size: int, *, width: int = 1, rule: str = "sum",
                    init: float = 0.0, consistency: str = "async", codec: str = "",
                    one_sided: bool = False, **rule_params) -> TableSpec:
        """Create a dense table of keys 0..size-1. Collective over the launch (every rank
        creates the same tables in the same order). ``consistency``: "async" (default),
        "bsp" or "ssp:TAU" (see mpips.core.consistency; the last two need ``KVWorker.clock()``).
        ``codec``: how pushes travel, e.g. "keycache,zeros,fp16" (mpips.wire.codec; "" = raw).
        ``one_sided``: workers pull straight from the servers' windows (mpips.mpi.onesided)."""
        return self._add_table(name, "dense", size, width, rule, init, consistency, codec,
                               rule_params, one_sided)

    def sparse_table(self, name: str, *, width: int = 1, rule: str = "sum",
                     init: float = 0.0, consistency: str = "async", codec: str = "",
                     placement: str = "hash", admit: str = "", evict: str = "",
                     capacity: int = 0, **rule_params) -> TableSpec:
        """Create a sparse table keyed by any uint64. Collective over the launch.
        ``placement``: "hash" (default) spreads any keys evenly over the servers by a
        bijective mix of the key; "range" gives each server a contiguous key range.
        ``admit``: "count:K" gives a key its row at its K-th push, "prob:P" with probability
        P at each push (until then its pushes are only counted and it pulls as ``init``;
        mpips.core.admission); "" (default) at its first. ``evict="unseen:STEPS"`` drops the
        rows not pushed in STEPS clocks, ``capacity=N`` keeps at most N rows per server
        (least recently pushed go first; mpips.core.eviction); not with replicas yet."""
        return self._add_table(name, "sparse", KEY_SPACE, width, rule, init, consistency,
                               codec, rule_params, placement=placement, admit=admit,
                               evict=evict, capacity=capacity)

    def _add_table(self, name, kind, size, width, rule, init, consistency, codec,
                   rule_params, one_sided=False, placement="", admit="", evict="",
                   capacity=0) -> TableSpec:
        if self._worker is not None or self.server is not None:
            raise TableError(f"table {name!r}: tables must be created before run()")
        if name in self.tables:
            raise TableError(f"a table named {name!r} exists already")
        spec = TableSpec(name, kind, len(self.tables), self.hosting.num_segments, int(size),
                         int(width), rule, dict(rule_params), float(init), str(consistency),
                         str(codec), bool(one_sided), str(placement), admit, evict, capacity)
        if spec.eviction is not None and self.replicas:
            raise TableError(f"table {name!r}: evict and capacity do not work with replicas "
                             f"yet (a replica keeps its host's row numbers, which eviction "
                             f"changes); use replicas=0")
        self._check_same_everywhere(spec)
        server = self.topology.server_index
        for v in range(self.hosting.per_server):  # collective for dense tables (windows)
            segment = server * self.hosting.per_server + v if self.is_server else -1 - v
            self._slices.setdefault(segment, []).append(
                make_slice(spec, max(segment, -1), self.comm, self.rma_mode))
        self.tables[name] = spec
        return spec

    def work_queue(self, blocks: int) -> WorkQueue:
        """A queue of ``blocks`` data blocks that workers claim one-sidedly (dynamic work
        assignment: mpips.mpi.workqueue, mpips.worker.block_feed), hosted by server 0.
        Collective over the launch, before ``run``; freed by ``close``."""
        if self._worker is not None or self.server is not None:
            raise TableError("work_queue() must come before run()")
        queue = WorkQueue(self.comm, self.topology.layout.server_rank(0), blocks)
        self._queues.append(queue)
        return queue

    def _all_slices(self) -> list[Slice]:
        return [s for slices in self._slices.values() for s in slices]

    def _check_same_everywhere(self, spec: TableSpec) -> None:
        """Collective: every rank must define the same table, or all raise TableError."""
        if not _same_on_every_rank(self.comm, spec.fingerprint()):
            raise TableError(f"table {spec.name!r} is not defined identically on every rank "
                             f"(rank {self.rank}: {spec})")

    # -- running --------------------------------------------------------------------------
    def run(self, work):
        """Collective: workers call ``work(kv)`` with their KVWorker, then tell the servers
        they are done; servers serve until every worker is done. Returns ``work``'s result
        on workers and None on servers.

        When a rank dies (ULFM: ``mpips launch --ft``), raises RankLost on every survivor
        (mpips.mpi.fault); the PS is then unusable and ``close`` frees nothing collectively.

        A job that runs without a SaveSignal gets the default action of SIGUSR1/SIGTERM back
        here (``mpips run`` held them until now; a held one is delivered: mpips.launch.startup)."""
        startup.release()
        try:
            return self._run(work)
        except MPI.Exception as exc:
            if not is_rank_failure(exc):
                raise
            self.failed = True
            raise rank_lost(self.topology, exc) from None

    def _run(self, work):
        self._board = ClockBoard(self.comm, len(self.tables), self.is_server, self.rma_mode)
        if self.is_server:
            self.server = KVServer(self.topology, list(self.tables.values()), self._slices,
                                   self._board, self.replicas, self._restored)
            self.server.serve()
            return None
        one_sided = {(s.spec.table_id, -1 - segment): s for segment, slices in self._slices.items()
                     for s in slices if s.spec.one_sided}
        self._worker = KVWorker(self.topology, self.tables,
                                OneSidedReader(one_sided, self._board, self.topology.layout),
                                self.replicas)
        try:
            return work(self._worker)
        except MPI.Exception as exc:
            self.failed = is_rank_failure(exc)
            raise
        finally:
            if not self.failed:  # tell the servers this worker is done
                self._worker.close()

    def stored_keys(self) -> int:
        """Rows this rank's slices hold (0 on workers)."""
        return sum(s.num_stored for s in self._all_slices()) if self.is_server else 0

    def memory_bytes(self) -> int:
        """Bytes this rank's slices take for their keys, rows and index (0 on workers)."""
        return sum(s.memory_bytes() for s in self._all_slices()) if self.is_server else 0

    def table_stats(self) -> dict[str, dict[str, int]]:
        """Per table, what this rank's slices hold and decided (zeros on workers; local, not
        collective): ``rows`` stored, and for sparse tables with admission
        (mpips.core.admission) ``admitted`` (keys given a row) and ``deferred`` (pushes of
        keys left without one), ``evicted`` (rows dropped, mpips.core.eviction), ``bytes``,
        what the rows, optimizer state and index take (``memory_bytes`` per table), and
        ``copy_rows`` and ``copy_bytes``, the same of the copies this server keeps of other
        servers' segments (with replicas, once ``run`` has started the server)."""
        stats = {name: {"rows": 0, "admitted": 0, "deferred": 0, "evicted": 0, "bytes": 0,
                        "copy_rows": 0, "copy_bytes": 0} for name in self.tables}
        replication = getattr(self.server, "replication", None)
        for copy in [] if replication is None else replication.copies.arrived():
            stats[copy.spec.name]["copy_rows"] += int(copy.num_stored)
            stats[copy.spec.name]["copy_bytes"] += int(copy.memory_bytes())
        for table in self._all_slices() if self.is_server else ():
            entry = stats[table.spec.name]
            entry["rows"] += int(table.num_stored)
            entry["bytes"] += int(table.memory_bytes())
            admission = getattr(table, "admission", None)
            if admission is not None:
                entry["admitted"] += admission.admitted
                entry["deferred"] += admission.deferred
            entry["evicted"] += getattr(table, "evicted", 0)
        return stats

    def size_history(self, name: str) -> np.ndarray:
        """(clock, rows) of sparse table ``name`` on this server, one row per table clock its
        slices saw, the newest mpips.store.sparse_slice.SIZE_HISTORY of them (int64 (n, 2); empty on
        workers and for dense tables). Local."""
        by_clock: dict[int, int] = {}
        for table in self._all_slices() if self.is_server else ():
            if table.spec.name == name:
                for clock, rows in getattr(table, "sizes", ()):
                    by_clock[clock] = by_clock.get(clock, 0) + rows
        return np.array(sorted(by_clock.items()), np.int64).reshape(-1, 2)

    def restore(self, root) -> dict | None:
        """Load the newest valid checkpoint under ``root`` into the tables (any number of
        servers; see mpips.ckpt.restore). Collective over the launch, before ``run``.
        Returns the checkpoint's job dict plus "checkpoint_step" and "checkpoint_path", or
        None if there is none."""
        if self._worker is not None or self.server is not None:
            raise TableError("restore() must come before run()")
        found = restore_checkpoint(self, root, log=self.log)
        self._restored = self._restored or found is not None
        return found

    def close(self) -> None:
        """Free windows and communicators. Collective over the launch; safe to call twice.
        After a lost rank (``failed``) it only marks the PS closed: collective frees would
        fail on the revoked communicators. The same when this process carried on past a dead
        rank (ULFM): ``survived_a_failure`` is then True, and the process should end with
        ``mpips.mpi.fault.leave(code)``, not MPI_Finalize (``mpips run`` does)."""
        if self.closed:
            return
        self.survived_a_failure = carried_on_past_a_failure(self.comm)
        if self.failed or self.survived_a_failure:
            if self.survived_a_failure and not self.failed:
                self._drain_survivors()
            self.closed = True
            return
        if self._worker is not None:
            self._worker.close()
        if self._board is not None:
            self._board.free()
        for queue in self._queues:
            queue.free()
        for table_slice in self._all_slices():
            table_slice.free()
        self.topology.free()
        self.closed = True

    def _drain_survivors(self) -> None:
        """A Barrier among the living ranks of the launch (the communicator shrunk to them),
        errors ignored: no message of this process is still on its way when it then leaves
        without MPI_Finalize. Collective over the surviving ranks."""
        try:
            alive = self.comm.Shrink()
            try:
                alive.Barrier()
            finally:
                alive.Free()
        except MPI.Exception as exc:
            self.log(f"closing after a lost rank: the final barrier failed ({exc}); leaving")

    def __enter__(self) -> "PS":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close (collective) when the block ended normally, or on RankLost (which every
        survivor raises) or SystemExit. Any other error left this rank alone: the others may
        be waiting on it in a reply or a collective, so closing collectively would hang the
        launch; the error is printed (one line for an MpipsError) and the launch aborted."""
        if exc_type is None or isinstance(exc, (RankLost, SystemExit)) or self.failed:
            self.close()
            return
        world = MPI.COMM_WORLD
        abort_launch(f"[mpips rank {world.Get_rank()}/{world.Get_size()}]", exc)


def _same_on_every_rank(comm: MPI.Intracomm, value: int) -> bool:
    """Whether every rank of ``comm`` passed the same ``value`` (collective: the answer is
    the same on every rank)."""
    mine = np.array([value, -value], np.int64)
    seen = np.empty_like(mine)
    comm.Allreduce(mine, seen, op=MPI.MAX)
    return bool(seen[0] == -seen[1])


def _same_everywhere(comm: MPI.Intracomm, replicas) -> int:
    """``replicas``, checked to be an int that every rank of ``comm`` passed alike
    (collective; LayoutError on every rank otherwise)."""
    value = replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else -1
    if not _same_on_every_rank(comm, value) or value < 0:
        raise LayoutError(f"replicas must be the same int >= 0 on every rank (rank "
                          f"{comm.Get_rank()} has {replicas!r})")
    return value
