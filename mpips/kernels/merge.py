"""Merge-sum kernels: sorted unique key lists with their value rows merged into one sorted
unique list, rows of equal keys summed. Unchecked: preconditions in each docstring.
References: mpips.kernels.codec_reference.

Rows of a key present in several lists are summed in list order starting from -0.0 (the
identity of float addition, so a lone -0.0 row stays -0.0).
"""
import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)

U0, U1 = np.uint64(0), np.uint64(1)
NEG0 = np.float32(-0.0)


@_jit
def merge_sum2(ak, av, bk, bv, out_k, out_v):
    """Merge two sorted unique key lists with their rows; rows of a key in both are summed
    (a + b). Returns the number of output keys m (out_k[:m], out_v[:m]). Branch-free step.

    ak, bk: uint64 sorted unique; av, bv: float32 (len, width), same width;
    out_k: uint64, len(ak) + len(bk); out_v: float32 (len(ak) + len(bk), width).
    """
    na, nb = ak.size, bk.size
    width = av.shape[1]
    i = j = m = 0
    while i < na and j < nb:
        x, y = ak[i], bk[j]
        take_a, take_b = x <= y, y <= x
        out_k[m] = x if take_a else y
        for c in range(width):
            out_v[m, c] = (av[i, c] if take_a else NEG0) + (bv[j, c] if take_b else NEG0)
        i += take_a
        j += take_b
        m += 1
    for i in range(i, na):
        out_k[m] = ak[i]
        out_v[m] = av[i]
        m += 1
    for j in range(j, nb):
        out_k[m] = bk[j]
        out_v[m] = bv[j]
        m += 1
    return m


@_jit
def _heads(keys, offsets):
    """(pos, end, head key, count) of the non-empty lists, in list order."""
    k = offsets.size - 1
    pos, end, head = np.empty(k, np.uint64), np.empty(k, np.uint64), np.empty(k, np.uint64)
    active = 0
    for j in range(k):
        if offsets[j] < offsets[j + 1]:
            pos[active], end[active] = offsets[j], offsets[j + 1]
            head[active] = keys[offsets[j]]
            active += 1
    return pos, end, head, active


@_jit
def merge_sum_k(keys, vals, offsets, out_k, out_v):
    """Merge k sorted unique key lists keys[offsets[j]:offsets[j+1]] (j < k) with their rows
    into out_k[:m], out_v[:m]; rows of equal keys are summed in list order. Returns m.
    One pass: a branch-free min scan over the heads of the lists not yet exhausted (an
    exhausted list leaves the scan, the others keep their order): meant for small k.

    keys: uint64; vals: float32 (len(keys), width) C-contiguous; offsets: int64, k+1 values
    non-decreasing from 0 to len(keys), every list sorted unique; out_k: uint64, out_v:
    float32 C-contiguous, len(keys) rows.
    """
    pos, end, head, active = _heads(keys, offsets)
    w = np.uint64(vals.shape[1])
    src, dst = vals.reshape(-1), out_v.reshape(-1)
    m = last = U0
    for _ in range(keys.size):
        best, bk = 0, head[0]
        for j in range(1, active):
            better = head[j] < bk  # strict: equal keys go in list order
            best, bk = j if better else best, head[j] if better else bk
        p = pos[best]
        same = np.uint64((m > U0) & (bk == last))
        m += U1 - same
        out_k[m - U1] = bk
        for c in range(w):
            dst[(m - U1) * w + c] = (dst[(m - U1) * w + c] if same else NEG0) + src[p * w + c]
        last = bk
        p += U1
        if p < end[best]:
            pos[best], head[best] = p, keys[p]
        else:  # exhausted: later lists move down a slot, keeping list order
            for j in range(best, active - 1):
                pos[j], end[j], head[j] = pos[j + 1], end[j + 1], head[j + 1]
            active -= 1
    return m
