"""Kernels that read or update table rows: gather for pulls, update rules for pushes.

Shared preconditions: values/state float32 (n_rows, width); grads/out float32 (n, width);
rows int64 (n,), each either -1 (skip / absent) or in [0, n_rows); lr/eps float32 (so that
the arithmetic matches the NumPy path of mpips.core.rules bit for bit).
"""
import math

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)


@_jit
def gather_rows(values, rows, init, out):
    """out[i] = values[rows[i]], or ``init`` where rows[i] == -1."""
    width = values.shape[1]
    for i in range(rows.size):
        r = rows[i]
        if r < 0:
            for c in range(width):
                out[i, c] = init
        else:
            for c in range(width):
                out[i, c] = values[r, c]


@_jit
def apply_sum(values, rows, grads):
    """values[rows[i]] += grads[i] for rows[i] >= 0."""
    width = values.shape[1]
    for i in range(rows.size):
        r = rows[i]
        if r >= 0:
            for c in range(width):
                values[r, c] += grads[i, c]


@_jit
def apply_sgd(values, rows, grads, lr):
    """values[rows[i]] -= lr * grads[i] for rows[i] >= 0."""
    width = values.shape[1]
    for i in range(rows.size):
        r = rows[i]
        if r >= 0:
            for c in range(width):
                values[r, c] -= lr * grads[i, c]


@_jit
def apply_adagrad(values, accum, rows, grads, lr, eps):
    """AdaGrad: accum += g*g; values -= lr * g / (sqrt(accum) + eps), for rows[i] >= 0."""
    width = values.shape[1]
    for i in range(rows.size):
        r = rows[i]
        if r >= 0:
            for c in range(width):
                g = grads[i, c]
                a = accum[r, c] + g * g
                accum[r, c] = a
                values[r, c] -= lr * g / (np.sqrt(a) + eps)


@_jit
def apply_ftrl(values, z, n, rows, grads, alpha, beta, l1, l2):
    """FTRL-proximal (McMahan et al., KDD 2013), per coordinate, for rows[i] >= 0:
    sigma = (sqrt(n + g*g) - sqrt(n)) / alpha; z += g - sigma * w; n += g*g;
    w = 0 where |z| <= l1, else -(z - sign(z) * l1) / ((beta + sqrt(n)) / alpha + l2)."""
    width = values.shape[1]
    zero = np.float32(0.0)
    for i in range(rows.size):
        r = rows[i]
        if r >= 0:
            for c in range(width):
                g = grads[i, c]
                n_old = n[r, c]
                n_new = n_old + g * g
                root = np.sqrt(n_new)
                sigma = (root - np.sqrt(n_old)) / alpha
                zz = z[r, c] + (g - sigma * values[r, c])
                z[r, c] = zz
                n[r, c] = n_new
                if abs(zz) <= l1:
                    values[r, c] = zero
                else:
                    shrunk = zz - l1 if zz > zero else zz + l1
                    values[r, c] = -shrunk / ((beta + root) / alpha + l2)


@_jit
def mark_rows(flags, rows):
    """flags[rows[i]] = 1 for rows[i] >= 0 (rows that a push changed)."""
    for i in range(rows.size):
        r = rows[i]
        if r >= 0:
            flags[r] = 1


@_jit
def scatter_rows(src, dst, rows):
    """dst[rows[i]] = src[i] for rows[i] >= 0 (the inverse of gather_rows)."""
    width = src.shape[1]
    for i in range(rows.size):
        r = rows[i]
        if r >= 0:
            for c in range(width):
                dst[r, c] = src[i, c]


@_jit
def count_nonfinite(flat):
    """Number of NaN/inf in a contiguous 1-D float32 array (exponent bits all ones).
    Branch-free so it vectorises; first_nonfinite finds where."""
    bits = flat.view(np.uint32)
    bad = 0
    for i in range(bits.size):
        bad += (bits[i] & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
    return bad


@_jit
def first_nonfinite(flat):
    """Index of the first NaN/inf in a 1-D float array, or -1."""
    for i in range(flat.size):
        if not math.isfinite(flat[i]):
            return i
    return -1
