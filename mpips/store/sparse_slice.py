"""The slice of a sparse table: rows of any uint64 keys in a hash index (mpips.store.sparse_rows),
a key getting its row at its first push (or its admission: mpips.core.admission), rows
dropped by the table's eviction policy between requests (mpips.core.eviction), and a
request cache that lets a repeated chunk reuse its rows (mpips.store.request_cache). Plain
memory: no MPI.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ..errors import MessageError
from ..core.admission import Admission
from .request_cache import RequestCache
from .slice import Slice
from .sparse_rows import SparseRows
from ..core.spec import TableSpec

SIZE_HISTORY = 100_000
"""Clocks of row counts a sparse slice remembers (SparseSlice.sizes, PS.size_history)."""


class SparseSlice(Slice):
    """Rows of any uint64 keys (mpips.store.sparse_rows); a key gets its row at its first push."""

    caches_requests = True

    def __init__(self, spec: TableSpec, server_index: int):
        super().__init__(spec, server_index)
        self.store = SparseRows(spec.width, len(self.rule.state_names), spec.init, spec.name)
        policy = spec.admission
        self.admission = Admission(policy) if policy is not None else None
        self.eviction = spec.eviction
        self.now = 0  # the table's clock as of the last settle (stamps pushed rows)
        self.evicted = 0  # rows dropped by eviction since the slice was made
        self._stamp_loaded = False  # rows loaded: stamp them at the next settle
        self._scanned_at = 0  # the clock of the last scan for unseen rows
        # (table clock, rows) at each settle's new clock, the newest SIZE_HISTORY of them (a
        # job that runs for months must not grow a list per clock)
        self.sizes: deque[tuple[int, int]] = deque(maxlen=SIZE_HISTORY)
        self._recorded = -1
        if self.eviction is not None:
            self.store.track_ages()
        self.cache = RequestCache()
        self._lent: tuple[np.ndarray, np.ndarray] | None = None  # receive_buffer's loan
        self._inserted: list[np.ndarray] = []  # keys the current undoable push inserted

    @property
    def values(self) -> np.ndarray:
        return self.store.values

    @property
    def state(self) -> dict[str, np.ndarray]:
        return {name: self.store.state(i) for i, name in enumerate(self.rule.state_names)}

    @property
    def num_stored(self) -> int:
        return self.store.size

    def memory_bytes(self) -> int:
        return self.store.memory_bytes()

    # -- pushes -----------------------------------------------------------------------------
    def push_chunk(self, keys, grads, prev, source=None) -> np.ndarray:
        """Validate and apply one chunk of a push (new keys get their rows); returns the
        rows of ``keys`` (a buffer that the next chunk may reuse: copy it to keep it). ``source``
        (worker, chunk index; chunk -1 for a coded push) lets a chunk equal to that worker's
        last one there reuse its rows; with it, the slice may keep ``keys`` (best received
        into ``receive_buffer``), so the caller must not reuse that array. Raises
        MessageError, changing nothing, for bad keys."""
        entry = self._checked_match(source, keys, prev)
        store = self.store
        kernel = self.rule.kernel
        if entry is not None and entry.complete:  # rows known: no lookup
            self._served_by(entry, keys)
            rows = entry.rows
            if entry.first >= 0:
                self.undo.save(self.values, self.state, entry.first, None, keys.size)
                self.rule.apply_run(self.values, self.state, entry.first, grads)
            else:
                self.undo.save(self.values, self.state, None, rows, keys.size)
                if kernel is not None:
                    store.apply_at(rows, grads, kernel)
                else:
                    self.rule.apply(self.values, self.state, rows, grads)
            if self.eviction is not None:
                store.touch(rows, self.now)
            store.mark(rows)
            return rows
        rows, lent = self._rows_for(source, keys)
        if self.admission is not None:
            self._push_admitting(keys, grads, rows)
        elif self.undo.active or kernel is None or self.eviction is not None:
            inserted = store.find_or_insert(keys, rows)
            if self.undo.active and inserted.size:
                self._inserted.append(inserted)
            self.undo.save(self.values, self.state, None, rows, keys.size)
            if kernel is not None:
                store.apply_at(rows, grads, kernel)
            else:
                self.rule.apply(self.values, self.state, rows, grads)
        else:
            store.push(keys, grads, rows, kernel)
        if self.eviction is not None:
            store.touch(rows, self.now)
        store.mark(rows)
        self._keep(source, keys, rows, lent)
        return rows

    def _push_admitting(self, keys, grads, rows) -> None:
        """A push to a table with admission: keys not stored are counted, the admitted ones
        get their rows, and the rule updates the rows that exist (rows[i] -1: not admitted)."""
        store = self.store
        if store.find(keys, rows):
            admit = self.admission.admit(keys, rows)
            if admit.any():
                new = np.flatnonzero(admit)
                fresh = np.empty(new.size, np.int64)
                inserted = store.find_or_insert(keys[new], fresh)
                rows[new] = fresh
                if self.undo.active and inserted.size:
                    self._inserted.append(inserted)
        self.undo.save(self.values, self.state, None, rows, keys.size)
        kernel = self.rule.kernel
        if kernel is None:
            self.rule.apply(self.values, self.state, rows, grads)
        else:
            stored = rows >= 0
            if stored.all():
                store.apply_at(rows, grads, kernel)
            elif stored.any():
                store.apply_at(rows[stored], grads[stored], kernel)

    def settle(self, clock: int) -> int:
        """Between requests (nothing of a push in flight): the table's clock is ``clock``;
        drop the rows the eviction policy says (mpips.core.eviction), age the admission
        sketch (mpips.core.admission), and record the number of rows at each new clock in
        ``sizes``. Returns how many rows were dropped."""
        evicted = self._evict(clock) if self.eviction is not None else 0
        if self.admission is not None:
            self.admission.age()
        if clock != self._recorded:
            self._recorded = clock
            self.sizes.append((clock, self.store.size))
        return evicted

    def _evict(self, clock: int) -> int:
        store, policy = self.store, self.eviction
        self.now = clock
        if self._stamp_loaded:  # rows from a checkpoint count as pushed now
            store.stamp_all(clock)
            self._stamp_loaded = False
        evicted = 0
        if policy.steps is not None and clock != self._scanned_at:
            self._scanned_at = clock
            evicted += store.evict(store.unseen_since(clock - policy.steps))
        if policy.capacity is not None and store.size > policy.capacity:
            evicted += store.evict(store.least_recent(store.size - policy.capacity))
        if evicted:
            self.cache.forget()  # rows moved (the generation changed): free the entries too
            self.evicted += evicted
        return evicted

    def begin_undoable_push(self, num_keys: int) -> None:
        super().begin_undoable_push(num_keys)
        if self.admission is not None:
            self.admission.begin_undoable()

    def keep_push(self) -> None:
        super().keep_push()
        self._inserted.clear()
        if self.admission is not None:
            self.admission.keep()

    def roll_back_push(self) -> None:
        super().roll_back_push()
        if self._inserted:
            self.store.remove_newest(np.concatenate(self._inserted))
            self._inserted.clear()
        if self.admission is not None:
            self.admission.roll_back()

    def abandon_pending(self) -> None:
        self._inserted.clear()
        if self.admission is not None:
            self.admission.keep()

    # -- pulls ------------------------------------------------------------------------------
    def read_chunk(self, keys, prev, out_buffer, source=None) -> tuple[np.ndarray, bool]:
        """Validate one chunk of a pull; returns (values to send, whether that array is a
        reusable buffer rather than a view of the table)."""
        entry = self._checked_match(source, keys, prev)
        if entry is not None:
            self._served_by(entry, keys)
            if entry.first >= 0 and not self.rule.state_names:  # a run of rows, contiguous
                return self.values[entry.first:entry.first + keys.size], False
            out = self._out(out_buffer, keys.size)
            self.store.gather_at(entry.rows, out)
            return out, True
        out = self._out(out_buffer, keys.size)
        rows, lent = self._rows_for(source, keys)
        self.store.pull(keys, out, rows)
        self._keep(source, keys, rows, lent)
        return out, True

    # -- the request cache ------------------------------------------------------------------
    def receive_buffer(self, n: int) -> np.ndarray:
        """A uint64 buffer to receive a chunk of ``n`` keys into, for a ``push_chunk`` or
        ``read_chunk`` with a ``source``: lent by the request cache (with a rows buffer),
        which keeps both with the chunk's rows."""
        self._lent = self.cache.buffers(n)
        return self._lent[0]

    def _rows_lent_with(self, keys: np.ndarray) -> np.ndarray | None:
        """The rows buffer lent with ``keys`` by ``receive_buffer`` (None if ``keys`` is not
        that buffer); the loan ends."""
        lent, self._lent = self._lent, None
        return lent[1] if lent is not None and lent[0] is keys else None

    def _checked_match(self, source, keys, prev):
        """The request-cache entry of ``source`` if it holds exactly ``keys`` (validated when
        kept), else None after validating ``keys``. MessageError for bad keys."""
        entry = None if source is None else \
            self.cache.match(source, keys, self.store.generation, self.store.inserts)
        if entry is None or (prev is not None and keys.size and int(keys[0]) <= prev):
            self.check(keys, prev)
        return entry

    def _served_by(self, entry, keys) -> None:
        """The chunk is served from ``entry``: the buffers lent with ``keys`` go back (the
        entry has its own)."""
        rows = self._rows_lent_with(keys)
        if rows is not None:
            self.cache.give_back(keys, rows)

    def _rows_for(self, source, keys: np.ndarray) -> tuple[np.ndarray, bool]:
        """A rows buffer for a chunk, and whether the chunk and its rows go to the request
        cache (with a ``source``: the caller does not reuse the keys array)."""
        rows = self._rows_lent_with(keys)
        if source is None:
            return self.rows_buffer(keys.size), False
        return (rows if rows is not None else np.empty(keys.size, np.int64)), True

    def _keep(self, source, keys, rows, lent: bool) -> None:
        if lent:
            self.cache.keep(source, keys, rows, self.store.generation, self.store.inserts)

    # -- whole rows: replicas, checkpoints ----------------------------------------------------
    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """The rows of stored ``keys`` (KeyError if one is not stored)."""
        rows = np.empty(keys.size, np.int64)
        if self.store.find(keys, rows):
            raise KeyError(f"table {self.spec.name!r}: rows of a key that is not stored")
        return rows

    def packed_at(self, rows: np.ndarray) -> np.ndarray:
        """Values and state of ``rows``, packed float32[n, width x arrays] as in a replica
        batch (mpips.wire.replica)."""
        return self.store.packed_at(rows)

    def put_rows_at(self, keys: np.ndarray, rows: np.ndarray, packed: np.ndarray) -> None:
        """A replica batch: set ``keys`` (validated here), at the rows their host gave them
        (this slice keeps the host's row numbers), to its packed values and state. Raises
        MessageError for keys or rows that do not fit."""
        self.check(keys, None)
        try:
            self.store.mirror(keys, rows, packed)
        except ValueError as exc:
            raise MessageError(str(exc)) from None
        self.cache.forget()

    def stored(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, rows) of everything stored, keys sorted."""
        return self.store.items()

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(keys sorted, values, state) copies of everything stored (for a checkpoint)."""
        keys, rows = self.store.items()
        packed = self.store.data[rows]
        width = self.spec.width
        state = {name: np.ascontiguousarray(packed[:, width * (i + 1):width * (i + 2)])
                 for i, name in enumerate(self.rule.state_names)}
        return keys, np.ascontiguousarray(packed[:, :width]), state

    def track_changes(self, since: dict | None) -> None:
        self.store.track_changes()
        self.since = since

    def changes(self) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
        keys, rows, removed = self.store.changes()
        packed = self.store.packed_at(rows)
        width = self.spec.width
        state = {name: np.ascontiguousarray(packed[:, width * (i + 1):width * (i + 2)])
                 for i, name in enumerate(self.rule.state_names)}
        return keys, np.ascontiguousarray(packed[:, :width]), state, removed

    def load(self, keys: np.ndarray, values: np.ndarray, state: dict[str, np.ndarray]) -> None:
        """Replace everything by ``keys`` (unique, placed here) and their values and state
        (changes tracked start afresh: nothing changed since what was loaded).

        Rows are numbered in the order keys are inserted, and the rows of keys that requests
        name often share cache lines only when they are numbered close together: loaded in
        key order (as checkpoints hold them), a 10M-key table served minibatches a third
        slower than the table the traffic had built. So with a rule that keeps a sum of
        squared gradients (``heat_state``: how often and how hard a key was pushed), the
        keys are inserted hottest first, by powers of two of that sum (a radix sort of the
        float exponents: a full sort took longer than the load itself); within a power of
        two, and for rules without such a sum, in the order given."""
        packed = np.concatenate([values] + [state[n] for n in self.rule.state_names], axis=1) \
            if self.rule.state_names else values
        heat = self.rule.heat_state
        if heat is not None and keys.size > 1:
            order = np.argsort(_hotter_first(state[heat]), kind="stable")
            keys, packed = keys[order], packed[order]
        self.store.load(keys, packed)
        self.cache.forget()
        self._stamp_loaded = self.eviction is not None

    def free(self) -> None:
        """Nothing collective to release; present so every slice frees alike."""


def _hotter_first(heat: np.ndarray) -> np.ndarray:
    """A sort key per row of ``heat`` (float32 rows of sums of squares, >= 0): minus the
    binary exponent of the row's sum, so that a stable sort puts larger powers of two first.
    int16, which numpy sorts stably by radix."""
    total = heat.sum(axis=1, dtype=np.float32)
    return -(total.view(np.uint32) >> np.uint32(23)).astype(np.int16)
