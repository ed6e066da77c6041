"""The slice of a dense table: rows ``[begin, end)`` in an MPI window (MPI layer), so that
workers may read them one-sidedly (mpips.mpi.onesided); a dense row's number is its key's
offset in the range, and every row exists from the start.
"""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..kernels import keys as key_kernels
from ..kernels import rows as row_kernels
from ..mpi.onesided import allocate
from ..core.spec import TableSpec
from .slice import FLOAT, Slice


class DenseSlice(Slice):
    """Rows ``[begin, end)`` of a dense table in an MPI window (``Win.Allocate``, or
    ``Win.Allocate_shared`` when all ranks share a node).

    Collective over ``comm`` (every rank of the launch): workers expose an empty window.
    """

    def __init__(self, spec: TableSpec, server_index: int, comm: MPI.Intracomm | None,
                 rma: str = "get"):
        super().__init__(spec, server_index)
        n = self.key_range.size if self.key_range else 0
        itemsize = np.dtype(FLOAT).itemsize
        self.win = None  # comm None: a replica's copy, in plain memory (mpips.server.replication)
        if comm is not None:
            self.win = allocate(n * spec.width * itemsize, itemsize, comm, rma)
        memory = np.frombuffer(self.win.tomemory(), FLOAT) if n and self.win is not None \
            else np.empty(n * spec.width, FLOAT)
        self.values = memory[: n * spec.width].reshape(n, spec.width)
        self.values.fill(spec.init)
        self.state = {name: np.zeros((n, spec.width), FLOAT) for name in self.rule.state_names}
        self.begin = self.key_range.begin if self.key_range else 0
        self.changed: np.ndarray | None = None  # uint8 per row once changes are tracked

    def _locate(self, keys, prev):
        """(first row, None) for consecutive keys, else (None, rows); validates first."""
        self.check(keys, prev)
        first = int(keys[0]) - self.begin
        if int(keys[-1]) - int(keys[0]) == keys.size - 1:
            return first, None
        rows = self.rows_buffer(keys.size)
        key_kernels.offset_rows(keys, np.uint64(self.begin), rows)
        return None, rows

    def push_chunk(self, keys, grads, prev, source=None) -> None:
        """Validate and apply one chunk of a push; returns None (rows of a dense slice are
        the keys' offsets: ``rows_of``)."""
        first, rows = self._locate(keys, prev)
        self.undo.save(self.values, self.state, first, rows, keys.size)
        if rows is None:
            self.rule.apply_run(self.values, self.state, first, grads)
            if self.changed is not None:
                self.changed[first:first + keys.size] = 1
        else:
            self.rule.apply(self.values, self.state, rows, grads)
            if self.changed is not None:
                row_kernels.mark_rows(self.changed, rows)

    def read_chunk(self, keys, prev, out_buffer, source=None) -> tuple[np.ndarray, bool]:
        """Validate one chunk of a pull; returns (values to send, whether that array is a
        reusable buffer rather than a view of the table)."""
        first, rows = self._locate(keys, prev)
        if rows is None:
            return self.values[first:first + keys.size], False
        out = self._out(out_buffer, keys.size)
        row_kernels.gather_rows(self.values, rows, np.float32(self.spec.init), out)
        return out, True

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """The rows of ``keys`` (their offsets in the range)."""
        rows = np.empty(keys.size, np.int64)
        key_kernels.offset_rows(keys, np.uint64(self.begin), rows)
        return rows

    def packed_at(self, rows: np.ndarray) -> np.ndarray:
        """Values and state of ``rows``, packed float32[n, width x arrays] (replica batches)."""
        return np.concatenate([self.values[rows]]
                              + [self.state[name][rows] for name in self.rule.state_names], axis=1)

    def put_rows_at(self, keys: np.ndarray, rows: np.ndarray, packed: np.ndarray) -> None:
        """Set the rows of ``keys`` (validated here; ``rows`` as the host numbered them, the
        same offsets) to a replica batch's packed rows."""
        self.check(keys, None)
        rows = self.rows_of(keys)
        width = self.spec.width
        self.values[rows] = packed[:, :width]
        for i, name in enumerate(self.rule.state_names, start=1):
            self.state[name][rows] = packed[:, i * width:(i + 1) * width]
        if self.changed is not None:
            self.changed[rows] = 1

    def track_changes(self, since: dict | None) -> None:
        if self.changed is None:
            self.changed = np.zeros(self.values.shape[0], np.uint8)
        else:
            self.changed.fill(0)
        self.since = since

    def changes(self) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
        rows = np.flatnonzero(self.changed)
        keys = np.uint64(self.begin) + rows.astype(np.uint64)
        return (keys, self.values[rows], {n: a[rows] for n, a in self.state.items()},
                np.empty(0, np.uint64))

    def stored(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, rows) of every row: the whole range."""
        keys = np.arange(self.key_range.begin, self.key_range.end, dtype=np.uint64)
        return keys, np.arange(keys.size, dtype=np.int64)

    @property
    def num_stored(self) -> int:
        return self.values.shape[0]

    def memory_bytes(self) -> int:
        return self.values.nbytes + sum(a.nbytes for a in self.state.values())

    def free(self) -> None:
        """Free the window; collective over the launch; safe to call twice."""
        if self.win is not None:
            self.values = None
            self.win.Free()
            self.win = None
