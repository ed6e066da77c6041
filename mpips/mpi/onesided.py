"""One-sided pulls of dense tables from the servers' RMA windows (MPI layer).

A dense table created with ``one_sided=True`` is read by workers without any server CPU:

* ``shared``: when every rank of the launch shares a node, slices live in
  ``Win.Allocate_shared`` windows and a worker gathers rows straight from the server's
  segment (``Shared_query``), after a ``Win.Sync`` memory barrier;
* ``get``: otherwise (or with ``MPIPS_RMA=get``), ``Win.Get`` under a ``Lock_all`` passive
  epoch, then ``Flush``: a contiguous run of rows in one Get, a scattered set by reading its
  span when that is at most 4 times the rows wanted, else through an indexed datatype.

Consistency still holds: each server publishes, in a small clock window, the finished-clock
count every table has reached there (the scheduler's minimum over live workers, updated after
the pushes it releases are applied). A worker compares it with the count its read requires
(``Consistency.required_clock``) before reading; when a server is behind, the read goes the
two-sided way, which the server parks until the clocks allow it. Under BSP a read can never
overlap a write (the pushes of clock c wait for the reader to finish clock c); under SSP and
async a read may see rows that a concurrent push is changing, which those models allow.
"""
from __future__ import annotations

import os

import numpy as np
from mpi4py import MPI

from ..kernels import rows as row_kernels
from ..kernels.keys import offset_rows
from .fault import failed_ranks, failure_classes, is_rank_failure

CLOCK_DTYPE = np.int64
NOT_READY = -1


def rma_mode(comm: MPI.Intracomm) -> str:
    """"shared" when all ranks of ``comm`` share memory (unless ``MPIPS_RMA=get``), else
    "get". Collective over ``comm``."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local = node.Get_size() == comm.Get_size()
    node.Free()
    forced = os.environ.get("MPIPS_RMA", "")
    if forced not in ("", "shared", "get"):
        raise ValueError(f"MPIPS_RMA must be 'shared' or 'get', got {forced!r}")
    return "get" if forced == "get" or not local else "shared"


def allocate(nbytes: int, itemsize: int, comm: MPI.Intracomm, mode: str) -> MPI.Win:
    """A window of ``nbytes`` on this rank; collective over ``comm``. A rank of ``comm`` that
    died meanwhile fails it as a rank failure (MPI_ERR_PROC_FAILED), whatever error class
    the window's component gave (osc/rdma: MPI_ERR_WIN)."""
    try:
        if mode == "shared":
            return MPI.Win.Allocate_shared(nbytes, itemsize, comm=comm)
        return MPI.Win.Allocate(nbytes, itemsize, comm=comm)
    except MPI.Exception as exc:
        if not is_rank_failure(exc) and failure_classes() and failed_ranks(comm):
            raise MPI.Exception(MPI.ERR_PROC_FAILED) from exc
        raise


class ClockBoard:
    """Per server, the finished-clock count of every table, in a window. Collective over
    the launch to create and free."""

    def __init__(self, comm: MPI.Intracomm, num_tables: int, is_server: bool, mode: str):
        self.mode, self.num_tables = mode, num_tables
        n = num_tables if is_server else 0
        itemsize = np.dtype(CLOCK_DTYPE).itemsize
        self.win = allocate(max(n, 0) * itemsize, itemsize, comm, mode)
        self.local = np.frombuffer(self.win.tomemory(), CLOCK_DTYPE)[:n] if n else None
        if self.local is not None:
            self.local[:] = 0
        self.win.Lock_all(MPI.MODE_NOCHECK)
        self._views: dict[int, np.ndarray] = {}
        self._probe = np.empty(max(num_tables, 1), CLOCK_DTYPE)

    def publish(self, table_id: int, count: int) -> None:
        """Server: table ``table_id`` has every live worker at ``count`` or more here."""
        self.local[table_id] = count
        self.win.Sync()

    def read(self, server_rank: int, table_id: int) -> int:
        """Worker: the count server ``server_rank`` published for ``table_id``."""
        if self.mode == "shared":
            view = self._views.get(server_rank)
            if view is None:
                buf, _ = self.win.Shared_query(server_rank)
                view = self._views[server_rank] = np.frombuffer(buf, CLOCK_DTYPE)
            self.win.Sync()
            return int(view[table_id])
        probe = self._probe[:1]
        self.win.Get([probe, MPI.INT64_T], server_rank, (table_id, 1, MPI.INT64_T))
        self.win.Flush(server_rank)
        return int(probe[0])

    def free(self) -> None:
        """Collective over the launch; safe to call twice."""
        if self.win is not None:
            self.win.Unlock_all()
            self.local, self._views = None, {}
            self.win.Free()
            self.win = None


class OneSidedReader:
    """Worker side: reads rows of one-sided dense tables from the servers' windows.
    ``slices`` maps (table id, v) to the worker's placeholder slice of window v of that
    table, which holds home segment v of every server (mpips.core.hosting)."""

    def __init__(self, slices: dict[tuple[int, int], object], board: ClockBoard, layout):
        self.slices, self.board, self.layout = slices, board, layout
        self._views: dict[tuple[int, int], np.ndarray] = {}
        self._span = np.empty(0, np.float32)
        self.locked = []
        for table_slice in slices.values():
            table_slice.win.Lock_all(MPI.MODE_NOCHECK)
            self.locked.append(table_slice.win)

    def ready(self, spec, servers, required: int) -> bool:
        """Whether every server in ``servers`` has reached clock count ``required``."""
        if required <= 0:
            return True
        return all(self.board.read(self.layout.server_rank(s), spec.table_id) >= required
                   for s in servers)

    def pull(self, spec, keys: np.ndarray, out: np.ndarray, hosting, required: int) -> bool:
        """out = the rows of ``keys`` (checked and sorted by the caller) of a one-sided table;
        False, reading nothing, when some segment is served away from its home server after a
        failover (its window is gone with it) or a server has not reached clock count
        ``required`` (mpips.core.hosting ``hosting``: who serves what now): the caller then
        pulls two-sided."""
        runs = spec.split(keys)  # dense: runs of keys (slices), one per segment
        if any(hosting.host(segment) != hosting.home(segment) for segment, _ in runs):
            return False
        if not self.ready(spec, sorted({hosting.home(s) for s, _ in runs}), required):
            return False
        for segment, part in runs:
            rows = np.empty(part.stop - part.start, np.int64)
            offset_rows(keys[part], np.uint64(spec.partition.range_of(segment).begin), rows)
            self.read(spec, hosting.home(segment), segment % hosting.per_server, rows, out[part])
        return True

    def read(self, spec, server: int, v: int, rows: np.ndarray, out: np.ndarray) -> None:
        """out[i] = row ``rows[i]`` of server ``server``'s home segment ``v`` (rows int64,
        sorted, unique, inside the segment: checked by the caller)."""
        win = self.slices[spec.table_id, v].win
        rank = self.layout.server_rank(server)
        width, first, n = spec.width, int(rows[0]), rows.size
        span = int(rows[-1]) - first + 1
        if self.board.mode == "shared":
            view = self._view(spec, v, win, rank)
            win.Sync()
            if span == n:  # a run of rows: one copy
                np.copyto(out, view[first:first + n])
            else:
                row_kernels.gather_rows(view, rows, np.float32(spec.init), out)
            return
        if span == n:
            win.Get([out, MPI.FLOAT], rank, (first * width, n * width, MPI.FLOAT))
            win.Flush(rank)
        elif span <= 4 * n:
            if self._span.size < span * width:
                self._span = np.empty(span * width, np.float32)
            tmp = self._span[: span * width]
            win.Get([tmp, MPI.FLOAT], rank, (first * width, span * width, MPI.FLOAT))
            win.Flush(rank)
            row_kernels.gather_rows(tmp.reshape(span, width), rows - first, np.float32(0), out)
        else:
            rows_type = MPI.FLOAT.Create_indexed_block(width, (rows * width).tolist()).Commit()
            try:
                win.Get([out, MPI.FLOAT], rank, (0, 1, rows_type))
                win.Flush(rank)
            finally:
                rows_type.Free()

    def _view(self, spec, v, win, rank) -> np.ndarray:
        key = (spec.table_id, v, rank)
        view = self._views.get(key)
        if view is None:
            buf, _ = win.Shared_query(rank)
            view = np.frombuffer(buf, np.float32).reshape(-1, spec.width)
            self._views[key] = view
        return view

    def close(self) -> None:
        """End the passive epochs (before the windows are freed); safe to call twice."""
        for win in self.locked:
            win.Unlock_all()
        self.locked, self._views = [], {}
