"""Server-side storage of one table's slice (MPI layer: dense slices live in RMA windows).

A slice applies pushes and answers pulls chunk by chunk. ``cursor`` is the position in the
slice where the previous chunk of the same request stopped, so one request costs one pass;
``prev`` is the previous chunk's last key. Each chunk is validated (sorted, unique, inside
the slice's range) before a kernel indexes with it, except when it equals a run of the
stored keys, which are valid by construction.
"""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

from .kernels import keys as key_kernels
from .kernels import rows as row_kernels
from .kernels.keys import matches_run
from .message import check_key_chunk
from .onesided import allocate
from .spec import TableSpec
from .undo import UndoLog

FLOAT = np.float32


class Slice:
    """Common part of dense and sparse slices: the rule, optimizer state, row buffers."""

    def __init__(self, spec: TableSpec, server_index: int):
        self.spec = spec
        self.rule = spec.make_rule()
        self.key_range = spec.partition.range_of(server_index) if server_index >= 0 else None
        self._rows = np.empty(0, np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.undo = UndoLog(spec.width, self.rule.state_names)

    def rows_buffer(self, n: int) -> np.ndarray:
        if self._rows.size < n:
            self._rows = np.empty(n, np.int64)
        return self._rows[:n]

    def _zero_state(self, n: int) -> dict[str, np.ndarray]:
        return {name: np.zeros((n, self.spec.width), FLOAT) for name in self.rule.state_names}

    def push_chunk(self, keys, grads, cursor: int, prev: int | None) -> int:
        """Apply the rule to one validated-here chunk; returns the next cursor. Keys this
        slice does not store yet are kept for ``finish_push``. Raises MessageError (and
        changes nothing) when the keys are not sorted, unique and in range."""
        first, rows, cursor = self.locate(keys, cursor, prev)
        self.undo.save(self.values, self.state, first, rows, keys.size)
        if rows is None:
            self.rule.apply_run(self.values, self.state, first, grads)
            return cursor
        self.rule.apply(self.values, self.state, rows, grads)
        if self.spec.kind == "sparse":
            new = rows < 0
            if new.any():
                self._pending.append((keys[new], grads[new]))
        return cursor

    def push_whole(self, keys, grads) -> None:
        """Apply a whole push at once (keys validated here, new keys inserted)."""
        self.push_chunk(keys, grads, 0, None)
        self.finish_push()

    def begin_undoable_push(self, num_keys: int) -> None:
        """Log the rows the next ``num_keys`` pushed keys change, until ``keep_push``."""
        self.undo.begin(num_keys)

    def keep_push(self) -> None:
        """The push stands: stop logging (finish_push still inserts its new keys)."""
        self.undo.stop()

    def roll_back_push(self) -> None:
        """Undo every chunk of the current push and forget its new keys."""
        self.undo.rollback(self.values, self.state)
        self._pending.clear()

    def abandon_pending(self) -> None:
        """Forget the new keys of a push that will not finish (its worker died)."""
        self._pending.clear()

    def finish_push(self) -> bool:
        """Insert the keys of this push that were not stored (sparse slices only); returns
        whether any were, which moves stored rows and so invalidates cursors."""
        if not self._pending:
            return False
        new_keys = np.concatenate([k for k, _ in self._pending])
        new_grads = np.concatenate([g for _, g in self._pending])
        self._pending.clear()
        self.insert(new_keys, new_grads)
        return True

    def gather(self, rows, out) -> None:
        """out[i] = row rows[i] (the table's init value where rows[i] == -1)."""
        row_kernels.gather_rows(self.values, rows, np.float32(self.spec.init), out)

    @property
    def arrays(self) -> int:
        """Arrays per row in a replica batch (mpips.replica_wire): values, then state."""
        return 1 + len(self.rule.state_names)

    def read_rows(self, keys: np.ndarray) -> np.ndarray:
        """Values and optimizer state of stored ``keys`` (sorted, all stored), packed as
        float32[n, width x arrays] for a replica batch."""
        rows = self._stored_rows(keys)
        return np.concatenate([self.values[rows]]
                              + [self.state[name][rows] for name in self.rule.state_names], axis=1)

    def put_rows(self, keys: np.ndarray, packed: np.ndarray) -> None:
        """Set the rows of ``keys`` (validated here; a sparse slice adds the keys it lacks)
        to a replica batch's packed values and state (the layout of ``read_rows``)."""
        check_key_chunk(keys, self.key_range.begin, self.key_range.end, None)
        rows = self._rows_to_put(keys)
        width = self.spec.width
        self.values[rows] = packed[:, :width]
        for i, name in enumerate(self.rule.state_names, start=1):
            self.state[name][rows] = packed[:, i * width:(i + 1) * width]


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
        self.win = None  # comm None: a replica's copy, in plain memory (mpips.replication)
        if comm is not None:
            self.win = allocate(n * spec.width * itemsize, itemsize, comm, rma)
        memory = np.frombuffer(self.win.tomemory(), FLOAT) if n and self.win is not None \
            else np.empty(n * spec.width, FLOAT)
        self.values = memory[: n * spec.width].reshape(n, spec.width)
        self.values.fill(spec.init)
        self.state = self._zero_state(n)
        self.begin = self.key_range.begin if self.key_range else 0

    def locate(self, keys, cursor: int, prev: int | None):
        """(first row, None) for consecutive keys, else (None, rows); validates first."""
        check_key_chunk(keys, self.key_range.begin, self.key_range.end, prev)
        first = int(keys[0]) - self.begin
        if int(keys[-1]) - int(keys[0]) == keys.size - 1:
            return first, None, cursor
        rows = self.rows_buffer(keys.size)
        key_kernels.offset_rows(keys, np.uint64(self.begin), rows)
        return None, rows, cursor

    def _stored_rows(self, keys: np.ndarray) -> np.ndarray:
        rows = np.empty(keys.size, np.int64)
        key_kernels.offset_rows(keys, np.uint64(self.begin), rows)
        return rows

    _rows_to_put = _stored_rows  # every key of the range has its row

    def stored_keys(self) -> np.ndarray:
        return np.arange(self.key_range.begin, self.key_range.end, dtype=np.uint64)

    def free(self) -> None:
        """Free the window; collective over the launch; safe to call twice."""
        if self.win is not None:
            self.values = None
            self.win.Free()
            self.win = None


class SparseSlice(Slice):
    """Sorted unique uint64 keys with their rows; keys appear when first pushed.

    Keys new to the slice are collected during a push and inserted by ``finish_push`` in
    one merge (init rows, then the rule applied to them).
    """

    def __init__(self, spec: TableSpec, server_index: int):
        super().__init__(spec, server_index)
        self.keys = np.empty(0, np.uint64)
        self.values = np.empty((0, spec.width), FLOAT)
        self.state = self._zero_state(0)

    def locate(self, keys, cursor: int, prev: int | None):
        """(first row, None) when keys equal the stored run at ``cursor`` (valid by
        construction: stored keys are sorted, unique and in range), else validate and
        (None, rows) with -1 for keys not stored."""
        if matches_run(self.keys, keys, cursor):
            return cursor, None, cursor + keys.size
        check_key_chunk(keys, self.key_range.begin, self.key_range.end, prev)
        rows = self.rows_buffer(keys.size)
        _, cursor = key_kernels.locate_sorted(self.keys, keys, cursor, rows)
        return None, rows, cursor

    def insert(self, new_keys: np.ndarray, new_grads: np.ndarray) -> None:
        """Add keys not stored yet (sorted, unique, absent), init rows, then apply the rule."""
        rows = self._make_room(new_keys)  # replaces self.values and self.state
        self.rule.apply(self.values, self.state, rows, new_grads)

    def _make_room(self, new_keys: np.ndarray) -> np.ndarray:
        """Merge keys not stored yet (sorted, unique, absent) in with init rows and zero
        state; returns their rows."""
        n_old, n_new = self.keys.size, new_keys.size
        merged = np.empty(n_old + n_new, np.uint64)
        pos_old = np.empty(n_old, np.int64)
        pos_new = np.empty(n_new, np.int64)
        key_kernels.merge_disjoint(self.keys, new_keys, merged, pos_old, pos_new)
        values = np.full((merged.size, self.spec.width), self.spec.init, FLOAT)
        row_kernels.copy_rows(self.values, values, pos_old)
        state = self._zero_state(merged.size)
        for name, array in state.items():
            row_kernels.copy_rows(self.state[name], array, pos_old)
        self.keys, self.values, self.state = merged, values, state
        return pos_new

    def _stored_rows(self, keys: np.ndarray) -> np.ndarray:
        rows = np.empty(keys.size, np.int64)
        key_kernels.locate_sorted(self.keys, keys, 0, rows)
        if keys.size and int(rows.min()) < 0:
            raise KeyError("read_rows: a key is not stored")
        return rows

    def stored_keys(self) -> np.ndarray:
        return self.keys

    def _rows_to_put(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys``, the ones not stored yet merged in first."""
        rows = np.empty(keys.size, np.int64)
        missing, _ = key_kernels.locate_sorted(self.keys, keys, 0, rows)
        if missing:
            self._make_room(keys[rows < 0])
            key_kernels.locate_sorted(self.keys, keys, 0, rows)
        return rows

    def free(self) -> None:
        """Nothing collective to release; present so every slice frees alike."""


def make_slice(spec: TableSpec, server_index: int, comm: MPI.Intracomm | None,
               rma: str = "get") -> Slice:
    """The slice of ``spec`` this rank holds (empty on workers). Collective over ``comm``
    for dense tables (window creation; ``rma`` "shared" or "get", see mpips.onesided);
    ``comm`` None makes a local slice in plain memory (a replica's copy of a segment)."""
    if spec.kind == "dense":
        return DenseSlice(spec, server_index, comm, rma)
    return SparseSlice(spec, server_index)
