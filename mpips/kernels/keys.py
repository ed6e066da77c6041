"""Kernels over sorted uint64 key lists: validation scan, run comparison, dense row offsets."""
import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)


@_jit
def first_bad_key(keys, lo, hi, prev, has_prev):
    """Index of the first key that is out of ``[lo, hi]`` or not greater than its predecessor
    (``prev`` stands before ``keys[0]`` when ``has_prev``); -1 when all are good.

    keys: uint64 1-D; lo, hi: uint64 inclusive bounds. Reads only ``keys``.
    """
    last = prev
    check_prev = has_prev
    for i in range(keys.size):
        k = keys[i]
        if k < lo or k > hi or (check_prev and k <= last):
            return i
        last = k
        check_prev = True
    return -1


@_jit
def count_bad_keys(keys, lo, hi, prev, has_prev):
    """Number of keys out of ``[lo, hi]`` or not greater than their predecessor (``prev``
    before ``keys[0]`` when ``has_prev``). Branch-free so it vectorises; use first_bad_key to
    find where. keys: uint64 1-D; lo, hi, prev: uint64."""
    n = keys.size
    if n == 0:
        return 0
    bad = 0
    if (has_prev and keys[0] <= prev) or keys[0] < lo or keys[0] > hi:
        bad += 1
    for i in range(1, n):
        k = keys[i]
        bad += (k <= keys[i - 1]) | (k < lo) | (k > hi)
    return bad


@_jit
def matches_run(table, keys, start):
    """True when keys equal ``table[start:start+len(keys)]``. Branch-free comparison.

    table, keys: uint64; 0 <= start.
    """
    m = keys.size
    if start + m > table.size:
        return False
    run = table[start:start + m]  # slicing first keeps the loop free of index checks
    diff = np.uint64(0)
    for i in range(m):
        diff |= run[i] ^ keys[i]
    return diff == 0


@_jit
def offset_rows(keys, begin, rows):
    """rows[i] = keys[i] - begin (the row of a dense-table key in a slice starting at begin).

    keys: uint64, every key >= begin and key - begin < 2**63. rows: int64, len(keys).
    """
    for i in range(keys.size):
        rows[i] = np.int64(keys[i] - begin)
