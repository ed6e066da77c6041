"""Kernels of feature admission (mpips.core.admission): a count-min sketch of how often keys
that have no row yet were pushed, and the decision to give them one.

``counts`` is uint32 (depth, width), width a power of two; row d of the sketch counts key k
in cell ``mix64(k ^ SEEDS[d]) & (width - 1)``. A key's estimate is the minimum of its cells,
never below its true count. Conservative update (Estan and Varghese 2002): a push raises
only the cells below the new estimate, which keeps over-counting low. Counts saturate at
2**32 - 1.

Shared preconditions: ``keys`` uint64 1-D; ``rows`` int64 len(keys) (a key with rows[i] >= 0
is stored already and not counted); ``admit`` bool len(keys); ``changed`` int64 and ``old``
uint32, each at least depth * len(keys) long (the cells a call changes and their values
before, for an undo).
"""
import numba
import numpy as np

from .placement import mix64

_jit = numba.njit(cache=True, nogil=True)

SEEDS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                  0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
                  0x27D4EB2F165667C5, 0x94D049BB133111EB], np.uint64)
"""Per-row hash seeds (up to 8 rows)."""

COUNT, PROB = 0, 1
"""Admission kinds: at the threshold-th push, or with a probability at each push."""

_MAX = np.uint32(0xFFFFFFFF)
_ONE = np.uint32(1)


@_jit
def count_and_admit(counts, keys, rows, kind, threshold, chance, admit, changed, old):
    """Count one push of every key not stored (rows[i] < 0) and decide whether it gets a row
    now: ``admit[i]`` True when its estimate, this push included, reaches ``threshold``
    (kind COUNT), or when a hash of the key and its estimate falls below ``chance`` of the
    uint64 range (kind PROB: each push admits with that probability, the same draw for the
    same key and count on every run). Stored keys get admit[i] False. Returns how many cells
    changed; changed[:n] are their flat indices and old[:n] their values before."""
    depth, width = counts.shape
    mask = np.uint64(width - 1)
    flat = counts.reshape(-1)
    n = 0
    for i in range(keys.size):
        admit[i] = False
        if rows[i] >= 0:
            continue
        key = keys[i]
        estimate = _MAX
        for d in range(depth):
            cell = d * width + np.int64(mix64(key ^ SEEDS[d]) & mask)
            if flat[cell] < estimate:
                estimate = flat[cell]
        if estimate < _MAX:
            estimate += _ONE
        for d in range(depth):
            cell = d * width + np.int64(mix64(key ^ SEEDS[d]) & mask)
            if flat[cell] < estimate:
                changed[n] = cell
                old[n] = flat[cell]
                n += 1
                flat[cell] = estimate
        if kind == COUNT:
            admit[i] = estimate >= threshold
        else:
            admit[i] = mix64(key ^ mix64(np.uint64(estimate))) < chance
    return n


@_jit
def restore_cells(counts, changed, old, n):
    """Undo count_and_admit: counts.flat[changed[j]] = old[j], newest first."""
    flat = counts.reshape(-1)
    for j in range(n - 1, -1, -1):
        flat[changed[j]] = old[j]


@_jit
def estimates(counts, keys, out):
    """out[i] = the sketch's estimate of how often keys[i] was pushed without a row."""
    depth, width = counts.shape
    mask = np.uint64(width - 1)
    for i in range(keys.size):
        estimate = _MAX
        for d in range(depth):
            c = counts[d, np.int64(mix64(keys[i] ^ SEEDS[d]) & mask)]
            if c < estimate:
                estimate = c
        out[i] = estimate


@_jit
def add_saturating(into, other):
    """into += other, cell by cell, saturating at 2**32 - 1 (merging sketches)."""
    a, b = into.reshape(-1), other.reshape(-1)
    for j in range(a.size):
        total = np.uint64(a[j]) + np.uint64(b[j])
        a[j] = _MAX if total > np.uint64(_MAX) else np.uint32(total)
