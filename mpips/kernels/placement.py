"""Kernels of key placement: the bijective 64-bit mix that places sparse keys on servers (and
hashes them into slot tables), validation of a server's keys by placement, and the split of
a sorted key list by owning server.

A key's *position* is ``mix64(key)`` for a hashed table and the key itself for a range table;
a server owns a contiguous range of positions (mpips.core.partition). ``mix64`` is SplitMix64's
finalizer (Steele, Lea, Flood 2014): invertible, so distinct keys have distinct positions,
and any key distribution, small integer ids included, spreads evenly over the servers.
"""
import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


@numba.njit(inline="always", nogil=True)
def mix64(x):
    """SplitMix64's finalizer of uint64 ``x`` (a bijection of uint64)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@_jit
def mix_keys(keys, out):
    """out[i] = mix64(keys[i]). keys, out: uint64, same length."""
    for i in range(keys.size):
        out[i] = mix64(keys[i])


@_jit
def count_bad_placed(keys, lo, hi, prev, has_prev, hashed):
    """Number of keys whose position (mix64(key) if ``hashed``, else the key) is outside
    ``[lo, hi]`` or that are not greater than the key before them (``prev`` before keys[0]
    when ``has_prev``). keys uint64 1-D; lo, hi, prev uint64 (hi inclusive)."""
    n = keys.size
    if n == 0:
        return 0
    bad = 0
    last = prev
    check = has_prev
    for i in range(n):
        k = keys[i]
        p = mix64(k) if hashed else k
        bad += (check and k <= last) | (p < lo) | (p > hi)
        last = k
        check = True
    return bad


@_jit
def first_bad_placed(keys, lo, hi, prev, has_prev, hashed):
    """Index of the first key count_bad_placed counts, or -1."""
    last = prev
    check = has_prev
    for i in range(keys.size):
        k = keys[i]
        p = mix64(k) if hashed else k
        if (check and k <= last) or p < lo or p > hi:
            return i
        last = k
        check = True
    return -1


FEW_CUTS = 16
"""Up to this many cuts, split_by_owner counts the cuts below each key instead of a binary
search: hashed keys fall on either side at random, and the mispredicted branches of the
search cost more than the compares (10M keys: 42 ms instead of 84 with one cut, 53 instead
of 165 with seven)."""


@_jit
def split_by_owner(keys, cuts, hashed, order, counts):
    """Stable split of ``keys`` by owning server: server s owns the positions from cuts[s-1]
    (0 for s=0) up to cuts[s] (exclusive; the last server to the end). Fills ``counts[s]``
    (keys of server s) and ``order`` (indices of keys, server 0's first, each server's in
    their original order). keys uint64; cuts uint64 sorted, len S-1; order int64 len(keys);
    counts int64 len S, zeroed."""
    n = keys.size
    owner = np.empty(n, np.int32)
    few = cuts.size <= FEW_CUTS
    for i in range(n):
        p = mix64(keys[i]) if hashed else keys[i]
        lo = 0
        if few:  # count the cuts at or below p, without a branch to mispredict
            for c in range(cuts.size):
                lo += cuts[c] <= p
        else:
            hi = cuts.size
            while lo < hi:  # first cut above p
                mid = (lo + hi) >> 1
                if cuts[mid] <= p:
                    lo = mid + 1
                else:
                    hi = mid
        owner[i] = lo
        counts[lo] += 1
    start = np.empty(counts.size, np.int64)
    total = 0
    for s in range(counts.size):
        start[s] = total
        total += counts[s]
    for i in range(n):
        s = owner[i]
        order[start[s]] = i
        start[s] += 1
