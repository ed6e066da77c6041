"""Kernels of the open-addressing hash index of sparse slices (mpips.store.sparse_rows).

The index is an array of ``SLOT`` records (key, row) of a power-of-two length; ``mask`` is
that length minus one, a uint64. A key lives in the first slot of its probe sequence
``mix64(key) & mask, +1, +2, ...`` (linear probing) that is empty (``row < 0``) or holds it,
so every key stays reachable; ``remove_keys`` shifts later entries back instead of leaving
tombstones. Rows are int32 indices into a row array ``data`` (float32, one row per stored key:
its ``width`` values, then ``width`` floats per optimizer-state array, side by side).

Tables bigger than the caches cost a memory round trip per slot and per row; the loops run a
software pipeline (prefetch the slot of key i + 2*AHEAD with the line after it, resolve key
i + AHEAD and prefetch its row, use the row of key i), so that many round trips are in flight
at once.

Shared preconditions: ``keys`` uint64 1-D, unique; ``slots`` SLOT[mask + 1]; ``rows`` int64
len(keys); ``data`` float32 2-D with at least ``next_row`` + (keys inserted) rows; every insert
has room (the index at most 3/4 full after it: the caller reserves); grads/out float32
(len(keys), width). Rule codes (mpips.core.rules): 0 sum, 1 sgd(p0=lr), 2 adagrad(p0=lr, p1=eps).
"""
import numba
import numpy as np

from .placement import mix64
from .prefetch import prefetch, prefetch_row

_jit = numba.njit(cache=True, nogil=True)

SLOT = np.dtype([("key", np.uint64), ("row", np.int32)], align=False)
"""One slot of the index: 12 bytes, packed (row < 0: empty)."""

AHEAD = 16
"""Keys between a slot's prefetch and its use, and between a row's prefetch and its use."""

RULE_SUM, RULE_SGD, RULE_ADAGRAD = 0, 1, 2

_ONE = np.uint64(1)
_TWO = np.uint64(2)


@numba.njit(inline="always", nogil=True)
def _prefetch_slot(slots, mask, key):
    """Prefetch the line of ``key``'s home slot and the line two slots on: a probe often goes
    on past its home (1.75 slots on average at load 0.6) or the 12-byte slot straddles a line,
    and a line not prefetched is a stall in the middle of the pipeline. Two slots on is the
    next line only when the run may reach it (a push kernel on its own, 10M keys: 34 -> 44 M
    keys/s with rows in key order, 50 -> 57 in arrival order)."""
    home = mix64(key) & mask
    prefetch(slots, home)
    prefetch(slots, (home + _TWO) & mask)


@numba.njit(inline="always", nogil=True)
def _probe(slots, mask, key):
    """Slot holding ``key``, or the empty slot where it would go."""
    s = mix64(key) & mask
    while slots[s].row >= 0 and slots[s].key != key:
        s = (s + _ONE) & mask
    return s


@numba.njit(inline="always", nogil=True)
def _apply(data, r, grads, i, width, rule, p0, p1):
    """The update rule on row ``r`` of ``data`` with gradient row ``i`` (same float32 arithmetic
    as mpips.kernels.rows)."""
    if rule == RULE_SUM:
        for c in range(width):
            data[r, c] += grads[i, c]
    elif rule == RULE_SGD:
        for c in range(width):
            data[r, c] -= p0 * grads[i, c]
    else:
        for c in range(width):
            g = grads[i, c]
            a = data[r, width + c] + g * g
            data[r, width + c] = a
            data[r, c] -= p0 * g / (np.sqrt(a) + p1)


@numba.njit(inline="always", nogil=True)
def _init_row(data, r, width, init):
    for c in range(width):
        data[r, c] = init
    for c in range(width, data.shape[1]):
        data[r, c] = 0.0


@_jit
def find_rows(slots, mask, keys, rows):
    """rows[i] = the row of keys[i], -1 when absent; returns how many are absent."""
    n = keys.size
    missing = 0
    for i in range(min(AHEAD, n)):
        _prefetch_slot(slots, mask, keys[i])
    for i in range(n):
        if i + AHEAD < n:
            _prefetch_slot(slots, mask, keys[i + AHEAD])
        s = _probe(slots, mask, keys[i])
        r = slots[s].row
        rows[i] = r
        if r < 0:
            missing += 1
    return missing


@_jit
def insert_missing(slots, mask, keys, rows, next_row):
    """Give every key with rows[i] < 0 (absent from the index) the next row, in order; returns
    the next free row. The new rows of ``data`` are the caller's to fill."""
    for i in range(keys.size):
        if rows[i] < 0:
            s = _probe(slots, mask, keys[i])
            slots[s].key = keys[i]
            slots[s].row = next_row
            rows[i] = next_row
            next_row += 1
    return next_row


@_jit
def insert_at(slots, mask, keys, rows):
    """Insert keys[i] with row rows[i] (rows >= 0); returns how many keys were stored
    already (left as they were)."""
    present = 0
    for i in range(keys.size):
        s = _probe(slots, mask, keys[i])
        if slots[s].row >= 0:
            present += 1
        else:
            slots[s].key = keys[i]
            slots[s].row = rows[i]
    return present


@_jit
def scatter_at_rows(data, rows, packed):
    """data[rows[i]] = packed[i] (whole rows; every rows[i] valid)."""
    n = rows.size
    cols = packed.shape[1]
    for i in range(n):
        if i + AHEAD < n:
            prefetch_row(data, rows[i + AHEAD])
        r = rows[i]
        for c in range(cols):
            data[r, c] = packed[i, c]


@_jit
def push_rows(slots, mask, keys, grads, data, rows, next_row, init, rule, p0, p1):
    """Apply a push: each key found (or inserted with the next free row, values ``init`` and
    zero state), then the rule applied to its row; rows[i] gets the row of keys[i]. Returns
    the next free row."""
    n = keys.size
    width = grads.shape[1]
    for i in range(-2 * AHEAD, n):
        a = i + 2 * AHEAD
        if 0 <= a < n:
            _prefetch_slot(slots, mask, keys[a])
        b = i + AHEAD
        if 0 <= b < n:
            s = _probe(slots, mask, keys[b])
            r = slots[s].row
            if r < 0:
                r = next_row
                next_row += 1
                slots[s].key = keys[b]
                slots[s].row = r
                _init_row(data, r, width, init)
            else:
                prefetch_row(data, r)
            rows[b] = r
        if i >= 0:
            _apply(data, rows[i], grads, i, width, rule, p0, p1)
    return next_row


@_jit
def pull_rows(slots, mask, keys, data, init, out, rows):
    """out[i] = the values of keys[i] (``init`` when absent); rows[i] its row or -1. Returns
    how many keys are absent."""
    n = keys.size
    width = out.shape[1]
    missing = 0
    for i in range(-2 * AHEAD, n):
        a = i + 2 * AHEAD
        if 0 <= a < n:
            _prefetch_slot(slots, mask, keys[a])
        b = i + AHEAD
        if 0 <= b < n:
            r = slots[_probe(slots, mask, keys[b])].row
            if r >= 0:
                prefetch_row(data, r)
            rows[b] = r
        if i >= 0:
            r = rows[i]
            if r < 0:
                missing += 1
                for c in range(width):
                    out[i, c] = init
            else:
                for c in range(width):
                    out[i, c] = data[r, c]
    return missing


@_jit
def apply_at_rows(data, rows, grads, rule, p0, p1):
    """The rule applied to rows ``rows`` (all >= 0) of ``data``."""
    n = rows.size
    width = grads.shape[1]
    for i in range(n):
        if i + AHEAD < n:
            prefetch_row(data, rows[i + AHEAD])
        _apply(data, rows[i], grads, i, width, rule, p0, p1)


@_jit
def gather_at_rows(data, rows, init, out):
    """out[i] = the values of row rows[i] (``init`` where rows[i] < 0)."""
    n = rows.size
    width = out.shape[1]
    for i in range(n):
        if i + AHEAD < n and rows[i + AHEAD] >= 0:
            prefetch_row(data, rows[i + AHEAD])
        r = rows[i]
        for c in range(width):
            out[i, c] = data[r, c] if r >= 0 else init


@_jit
def rehash(old, new, mask):
    """Insert every entry of the slot array ``old`` into the empty slot array ``new``
    (length mask + 1)."""
    for j in range(old.size):
        if old[j].row >= 0:
            s = _probe(new, mask, old[j].key)
            new[s].key = old[j].key
            new[s].row = old[j].row


@numba.njit(inline="always", nogil=True)
def _remove(slots, mask, key):
    """Remove ``key`` from the index, shifting later entries of its probe run back so every
    key stays reachable (no tombstones); returns whether it was there."""
    s = _probe(slots, mask, key)
    if slots[s].row < 0:
        return False
    j = s
    while True:
        j = (j + _ONE) & mask
        if slots[j].row < 0:
            break
        home = mix64(slots[j].key) & mask
        # entry j may move to the hole s unless its home lies cyclically in (s, j]
        if (s < j and (home <= s or home > j)) or (s > j and home <= s and home > j):
            slots[s].key = slots[j].key
            slots[s].row = slots[j].row
            s = j
    slots[s].row = -1
    return True


@_jit
def remove_keys(slots, mask, keys):
    """Remove ``keys`` from the index (absent ones are skipped); returns how many were
    removed."""
    removed = 0
    for i in range(keys.size):
        if _remove(slots, mask, keys[i]):
            removed += 1
    return removed


@_jit
def evict_rows(slots, mask, data, row_keys, stamps, changed, victims, size):
    """Remove the rows ``victims`` (unique, sorted in decreasing order, each < ``size``; the
    key of row r is row_keys[r]): each one's key leaves the index and the last row takes its
    place (data, row_keys, stamps, its changed flag when ``changed`` is not empty, and its
    index slot follow it), so rows stay 0..size-1. Returns the new size."""
    width = data.shape[1]
    flags = changed.size > 0
    for i in range(victims.size):
        r = victims[i]
        _remove(slots, mask, row_keys[r])
        last = size - 1
        if r != last:
            for c in range(width):
                data[r, c] = data[last, c]
            row_keys[r] = row_keys[last]
            stamps[r] = stamps[last]
            if flags:
                changed[r] = changed[last]
            slots[_probe(slots, mask, row_keys[r])].row = r
        if flags:
            changed[last] = 0
        size -= 1
    return size


@_jit
def collect_flagged(slots, flags, keys, rows):
    """Every stored (key, row) whose flags[row] is set, in slot order, into ``keys`` and
    ``rows`` (each at least as long as the flags set); returns how many."""
    n = 0
    for j in range(slots.size):
        r = slots[j].row
        if r >= 0 and flags[r]:
            keys[n] = slots[j].key
            rows[n] = r
            n += 1
    return n


@_jit
def collect(slots, keys, rows):
    """Every stored (key, row) in slot order into ``keys`` and ``rows`` (each at least as long
    as the number stored); returns how many."""
    n = 0
    for j in range(slots.size):
        if slots[j].row >= 0:
            keys[n] = slots[j].key
            rows[n] = slots[j].row
            n += 1
    return n


@_jit
def run_start(rows):
    """rows[0] when ``rows`` is the run rows[0], rows[0]+1, ... (all >= 0), else -1."""
    if rows.size == 0 or rows[0] < 0:
        return -1
    first = rows[0]
    for i in range(1, rows.size):
        if rows[i] != first + i:
            return -1
    return first
