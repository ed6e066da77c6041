"""The rows of one sparse slice: a hash index from uint64 key to row, and row arrays that
grow by doubling. Pure module: no MPI.

A push or pull costs time in proportion to the keys it names, whatever the number stored:
each key is looked up in an open-addressing index (mpips.kernels.hashindex; linear probing,
at most 3/4 full) that gives its row in ``data``, a float32 array of one row per stored key
holding the key's ``width`` values and then each optimizer-state array's ``width`` floats, side
by side, so an update touches one row. New keys get the next free row; ``data`` and the index
double when full, so inserting costs O(new keys) amortized and rows never move: a row number
stays valid until ``generation`` changes (keys removed, or everything replaced by ``load``),
which is what lets a cached key list keep its rows (mpips.store.request_cache).

With changes tracked (``track_changes``: from a slice's first checkpoint on), a flag per row
says whether a push changed it since, and the keys evicted since are kept, which is what an
incremental checkpoint writes (``changes``); the flags move with the rows.

Keys are unchecked here (the server validates them first, mpips.wire.message): unique uint64.
"""
from __future__ import annotations

import numpy as np

from ..errors import TableError
from ..kernels import hashindex as hx
from ..kernels import rows as row_kernels

MAX_LOAD = 0.75
"""Largest share of index slots in use; past it the index doubles."""
MIN_SLOTS = 1 << 10
_NO_FLAGS = np.zeros(0, np.uint8)  # evict_rows' changed flags when changes are not tracked
MAX_ROWS = (1 << 31) - 1
"""Rows one slice can hold (rows are int32 in the index)."""


class SparseRows:
    """Rows of ``width`` values, ``num_state`` optimizer-state arrays each, by uint64 key;
    a key never stored reads as ``init``."""

    def __init__(self, width: int, num_state: int, init: float, name: str = "?"):
        self.width, self.num_state, self.init, self.name = width, num_state, np.float32(init), name
        self.slots = _empty_slots(MIN_SLOTS)
        self.data = np.empty((MIN_SLOTS // 2, width * (1 + num_state)), np.float32)
        self.size = 0
        self.generation = 0  # bumped whenever rows are removed or replaced
        self.inserts = 0  # bumped whenever keys are inserted
        # With ages (track_ages: tables that evict), the key of every row and the clock it
        # was last pushed at; None otherwise (they cost 16 bytes per row).
        self.row_keys: np.ndarray | None = None
        self.stamps: np.ndarray | None = None
        # With changes tracked, a uint8 flag per row (set: changed since the last save) and
        # the keys evicted since; None otherwise.
        self.changed: np.ndarray | None = None
        self.evicted_keys: list[np.ndarray] = []

    def track_ages(self) -> None:
        """Keep each row's key and last-push clock from now on (the slice must be empty)."""
        assert self.size == 0, "track_ages on a slice that holds rows"
        self.row_keys = np.empty(self.data.shape[0], np.uint64)
        self.stamps = np.zeros(self.data.shape[0], np.int64)

    def track_changes(self) -> None:
        """From now on, flag the rows pushes change and keep the keys evicted; forgets what
        was flagged and kept before (a checkpoint holds it now)."""
        if self.changed is None or self.changed.size != self.data.shape[0]:
            self.changed = np.zeros(self.data.shape[0], np.uint8)
        else:
            self.changed.fill(0)
        self.evicted_keys = []

    def mark(self, rows: np.ndarray) -> None:
        """Rows ``rows`` (-1: skipped) changed."""
        if self.changed is not None:
            row_kernels.mark_rows(self.changed, rows)

    def changes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys sorted, their rows, keys evicted sorted) of the rows changed and the keys
        removed since ``track_changes``. A key evicted and stored again is in both."""
        count = int(np.count_nonzero(self.changed[:self.size]))
        keys = np.empty(count, np.uint64)
        rows = np.empty(count, np.int64)
        n = hx.collect_flagged(self.slots, self.changed, keys, rows)
        assert n == count, (n, count)
        order = np.argsort(keys, kind="stable")
        evicted = np.unique(np.concatenate(self.evicted_keys)) if self.evicted_keys else \
            np.empty(0, np.uint64)
        return keys[order], rows[order], evicted

    @property
    def mask(self) -> np.uint64:
        return np.uint64(self.slots.size - 1)

    @property
    def values(self) -> np.ndarray:
        """Values of every row (a strided view of ``data``; rows past ``size`` unused)."""
        return self.data[:, :self.width]

    def state(self, index: int) -> np.ndarray:
        """Optimizer-state array ``index`` of every row (a view of ``data``)."""
        lo = self.width * (1 + index)
        return self.data[:, lo:lo + self.width]

    def memory_bytes(self) -> int:
        """Bytes of the index and the row arrays."""
        return self.slots.nbytes + self.data.nbytes

    # -- finding and inserting ----------------------------------------------------------------
    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more keys (the index and the rows double as needed)."""
        need = self.size + extra
        if need > MAX_ROWS:
            raise TableError(f"table {self.name!r}: a server's slice cannot hold {need} rows "
                             f"(at most {MAX_ROWS}); use more servers")
        if need > MAX_LOAD * self.slots.size:
            slots = self.slots.size
            while need > MAX_LOAD * slots:
                slots *= 2
            bigger = _empty_slots(slots)
            hx.rehash(self.slots, bigger, np.uint64(slots - 1))
            self.slots = bigger
        if need > self.data.shape[0]:
            rows = self.data.shape[0]
            while need > rows:
                rows *= 2
            bigger = np.empty((rows, self.data.shape[1]), np.float32)
            bigger[:self.size] = self.data[:self.size]
            self.data = bigger
            if self.row_keys is not None:
                self.row_keys = _grown(self.row_keys, rows, self.size)
                self.stamps = _grown(self.stamps, rows, self.size)
            if self.changed is not None:
                changed = np.zeros(rows, np.uint8)
                changed[:self.size] = self.changed[:self.size]
                self.changed = changed

    def find(self, keys: np.ndarray, rows: np.ndarray) -> int:
        """rows[i] = the row of keys[i] or -1; returns how many are absent."""
        return hx.find_rows(self.slots, self.mask, keys, rows)

    def find_or_insert(self, keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """rows[i] = the row of keys[i], inserting absent keys (values ``init``, state zero);
        returns the keys inserted."""
        missing = hx.find_rows(self.slots, self.mask, keys, rows)
        if not missing:
            return keys[:0]
        new = rows < 0
        self.reserve(missing)
        start = self.size
        self.size = hx.insert_missing(self.slots, self.mask, keys, rows, self.size)
        self._init_rows(start, self.size)
        self.inserts += 1
        inserted = keys[new]
        if self.row_keys is not None:
            self.row_keys[start:self.size] = inserted
        return inserted

    def _init_rows(self, start: int, stop: int) -> None:
        self.data[start:stop, :self.width] = self.init
        self.data[start:stop, self.width:] = 0.0

    # -- pushes and pulls ---------------------------------------------------------------------
    def push(self, keys: np.ndarray, grads: np.ndarray, rows: np.ndarray, kernel) -> int:
        """Apply a push with a built-in rule (``kernel`` = (code, p0, p1) of
        mpips.core.rules); rows[i] gets the row of keys[i]. Returns how many keys were new.
        Not with track_ages (its kernel inserts without recording keys): find_or_insert."""
        assert self.row_keys is None, "push() of a slice that tracks ages"
        self.reserve(keys.size)
        before = self.size
        code, p0, p1 = kernel
        self.size = hx.push_rows(self.slots, self.mask, keys, grads, self.data, rows, self.size,
                                 self.init, code, p0, p1)
        if self.size != before:
            self.inserts += 1
        return self.size - before

    def pull(self, keys: np.ndarray, out: np.ndarray, rows: np.ndarray) -> int:
        """out[i] = values of keys[i] (``init`` when absent), rows[i] its row or -1; returns
        how many were absent."""
        return hx.pull_rows(self.slots, self.mask, keys, self.data, self.init, out, rows)

    def apply_at(self, rows: np.ndarray, grads: np.ndarray, kernel) -> None:
        """A built-in rule applied to known rows (all stored)."""
        code, p0, p1 = kernel
        hx.apply_at_rows(self.data, rows, grads, code, p0, p1)

    def gather_at(self, rows: np.ndarray, out: np.ndarray) -> None:
        """out[i] = values of row rows[i] (``init`` where rows[i] < 0)."""
        hx.gather_at_rows(self.data, rows, self.init, out)

    # -- ages and eviction (with track_ages) ---------------------------------------------------
    def touch(self, rows: np.ndarray, clock: int) -> None:
        """Rows ``rows`` (-1: skipped) were pushed at ``clock``."""
        self.stamps[rows[rows >= 0] if rows.size and rows.min() < 0 else rows] = clock

    def stamp_all(self, clock: int) -> None:
        """Every stored row counts as pushed at ``clock`` (rows loaded from a checkpoint)."""
        self.stamps[:self.size] = clock

    def unseen_since(self, clock: int) -> np.ndarray:
        """The rows last pushed before ``clock``."""
        return np.flatnonzero(self.stamps[:self.size] < clock)

    def least_recent(self, count: int) -> np.ndarray:
        """``count`` rows with the oldest last-push clocks (ties: any of them)."""
        if count >= self.size:
            return np.arange(self.size)
        return np.argpartition(self.stamps[:self.size], count)[:count]

    def evict(self, rows: np.ndarray) -> int:
        """Remove the rows ``rows`` (unique) and their keys; the rows left are renumbered
        (``generation`` changes). Returns how many were removed."""
        if not rows.size:
            return 0
        victims = np.sort(np.asarray(rows, np.int64))[::-1].copy()
        if self.changed is not None:
            self.evicted_keys.append(self.row_keys[victims])
        self.size = hx.evict_rows(self.slots, self.mask, self.data, self.row_keys,
                                  self.stamps, _NO_FLAGS if self.changed is None
                                  else self.changed, victims, self.size)
        self.generation += 1
        return int(victims.size)

    # -- removing, listing, replacing ---------------------------------------------------------
    def remove_newest(self, keys: np.ndarray) -> None:
        """Forget ``keys``, which must be the keys of the newest rows (inserted last, as by a
        push being rolled back): their rows are freed from the end."""
        removed = hx.remove_keys(self.slots, self.mask, keys)
        if self.changed is not None:  # the freed rows: new ones when used again
            self.changed[self.size - removed:self.size] = 0
        self.size -= removed
        self.generation += 1

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, rows) of everything stored, keys sorted."""
        keys = np.empty(self.size, np.uint64)
        rows = np.empty(self.size, np.int64)
        n = hx.collect(self.slots, keys, rows)
        assert n == self.size, (n, self.size)
        order = np.argsort(keys, kind="stable")
        return keys[order], rows[order]

    def load(self, keys: np.ndarray, packed: np.ndarray) -> None:
        """Replace everything by ``keys`` (unique) with rows ``packed`` (the layout of ``data``)."""
        self.slots = _empty_slots(MIN_SLOTS)
        self.data = np.empty((max(MIN_SLOTS // 2, keys.size), self.data.shape[1]), np.float32)
        self.size = 0
        if self.row_keys is not None:
            self.row_keys = np.empty(self.data.shape[0], np.uint64)
            self.stamps = np.zeros(self.data.shape[0], np.int64)
        if self.changed is not None:  # nothing changed since what was loaded
            self.changed = np.zeros(self.data.shape[0], np.uint8)
            self.evicted_keys = []
        self.generation += 1
        self.put(keys, packed)  # inserts flag nothing: changes start afresh

    def put(self, keys: np.ndarray, packed: np.ndarray) -> None:
        """Set the rows of ``keys`` (inserted if absent) to ``packed``."""
        rows = np.empty(keys.size, np.int64)
        self.find_or_insert(keys, rows)
        self.data[rows] = packed

    def packed_at(self, rows: np.ndarray) -> np.ndarray:
        """The whole rows ``rows`` (``data`` layout, all stored), a copy (a prefetching
        kernel: numpy's ``data[rows]`` took as long as the push that changed them)."""
        out = np.empty((rows.size, self.data.shape[1]), np.float32)
        hx.gather_at_rows(self.data, np.ascontiguousarray(rows, np.int64), self.init, out)
        return out

    def mirror(self, keys: np.ndarray, rows: np.ndarray, packed: np.ndarray) -> None:
        """Set rows as another SparseRows numbered them (a replica keeps its host's row
        numbers, so a host's batch needs no lookup here): keys whose row is past ``size``
        are new and must take exactly the next rows; then data[rows] = packed. Raises
        ValueError, changing nothing, when the rows do not fit that."""
        if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= MAX_ROWS):
            raise ValueError(f"table {self.name!r}: row numbers outside [0, {MAX_ROWS})")
        new = rows >= self.size
        count = int(np.count_nonzero(new))
        if count:
            fresh = np.sort(rows[new])
            if fresh[0] != self.size or fresh[-1] != self.size + count - 1 \
                    or np.unique(fresh).size != count:
                raise ValueError(f"table {self.name!r}: new rows {fresh[0]}..{fresh[-1]} do "
                                 f"not follow the {self.size} stored")
            self.reserve(count)
            if hx.insert_at(self.slots, self.mask, keys[new], rows[new]):
                raise ValueError(f"table {self.name!r}: a new row for a key stored already")
            self.size += count
            self.inserts += 1
        hx.scatter_at_rows(self.data, rows, packed)
        self.mark(rows)

    def read(self, keys: np.ndarray) -> np.ndarray:
        """The rows (``data`` layout) of ``keys``, which must all be stored."""
        rows = np.empty(keys.size, np.int64)
        if self.find(keys, rows):
            raise KeyError(f"table {self.name!r}: read of a key that is not stored")
        return self.data[rows]


def _grown(array: np.ndarray, n: int, used: int) -> np.ndarray:
    bigger = np.empty(n, array.dtype)
    bigger[:used] = array[:used]
    return bigger


def _empty_slots(n: int) -> np.ndarray:
    slots = np.empty(n, hx.SLOT)
    slots["row"] = -1
    return slots
