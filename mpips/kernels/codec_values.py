"""Codec kernels for value rows: zero-row dropping, fp16, and stochastic fixed point.

Float32 values travel as their uint32 bit patterns through the zero-drop and fp16 kernels, so
those are bit-exact (-0.0 and NaN count as non-zero rows). Unchecked loops: preconditions are
in each docstring, mpips.wire.codec validates. References: mpips.kernels.codec_reference.
"""
import numba
import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros

from .codec import GOLDEN, _mix

_jit = numba.njit(cache=True, nogil=True)

U0, U1, U3, U7 = (np.uint64(x) for x in (0, 1, 3, 7))


@_jit
def _drop_flat(src, mask, dst):
    """drop_zero_rows for width 1 (src, dst: uint32 1-D): no inner loop, ~4x faster."""
    m = U0
    byte = U0
    for i in range(np.uint64(src.size)):
        v = src[i]
        dst[m] = v
        keep = np.uint64(v != 0)
        byte |= keep << (i & U7)
        if i & U7 == U7:
            mask[i >> U3] = byte
            byte = U0
        m += keep
    return m, byte


@_jit
def drop_zero_rows(bits, mask, out):
    """Copy the rows of bits with any non-zero bit to out[:m], in order, and set their bit
    (bit i % 8 of byte i // 8) in mask; returns m. Branch-free: every row is written.

    bits: uint32 (n, width) C-contiguous (float32 values viewed as uint32); mask: uint8,
    ceil(n / 8) bytes; out: uint32 (n, width) C-contiguous.
    """
    n, width = bits.shape
    src, dst = bits.reshape(-1), out.reshape(-1)
    if width == 1:
        m, byte = _drop_flat(src, mask, dst)
    else:
        w = np.uint64(width)
        m = byte = U0
        for i in range(np.uint64(n)):
            nz = np.uint32(0)
            for c in range(w):
                v = src[i * w + c]
                dst[m * w + c] = v
                nz |= v
            keep = np.uint64(nz != 0)
            byte |= keep << (i & U7)
            if i & U7 == U7:
                mask[i >> U3] = byte
                byte = U0
            m += keep
    if n & 7:
        mask[n >> 3] = byte
    return m


@_jit
def expand_rows(mask, packed, out):
    """out[i] = the next row of packed where bit i of mask is set, else zeros (the inverse of
    drop_zero_rows). mask: uint8, ceil(n / 8) bytes, no bit set at or past n; packed: uint32
    (m, width) C-contiguous, m = the set bits of mask; out: uint32 (n, width) C-contiguous."""
    n, width = out.shape
    b = mask.size - 1
    while b >= 0 and mask[b] == 0:
        b -= 1
    stop = 0 if b < 0 else 8 * b + 64 - np.int64(leading_zeros(np.uint64(mask[b])))
    out[stop:, :] = 0  # past the last set bit; before it, j never passes the last row
    src, dst = packed.reshape(-1), out.reshape(-1)
    w = np.uint64(width)
    j = U0
    for i in range(np.uint64(stop)):
        keep = np.uint64(mask[i >> U3] >> (i & U7)) & U1
        sel = np.uint32(np.uint64(0xFFFFFFFF) * keep)  # a zero row reads a real row, masked
        if width == 1:  # loop-invariant: LLVM hoists it; no inner loop for width 1
            dst[i] = src[j] & sel
        else:
            for c in range(w):
                dst[i * w + c] = src[j * w + c] & sel
        j += keep


@_jit
def f16_encode(bits, out):
    """float32 -> IEEE half, round to nearest even, as numpy's astype(float16); overflow
    gives inf, NaN stays NaN (quiet, payload truncated). bits: uint32 1-D (float32 viewed
    as uint32); out: uint16, same size."""
    for i in range(bits.size):
        f = np.int64(bits[i])
        a = f & 0x7FFFFFFF
        normal = (a - (112 << 23) + 0xFFF + ((a >> 13) & 1)) >> 13
        s = min(max(126 - (a >> 23), 1), 31)  # |x| < 2**-14: half subnormal = round(m / 2**s)
        m = (a & 0x7FFFFF) | 0x800000
        q = m >> s
        rem = m & ((1 << s) - 1)
        half = 1 << (s - 1)
        sub = q + np.int64((rem > half) | ((rem == half) & ((q & 1) == 1)))
        special = 0x7C00 | (0x200 | ((a & 0x7FFFFF) >> 13) if a > 0x7F800000 else 0)
        h = normal if a >= (113 << 23) else sub
        h = special if a >= 0x47800000 else h
        out[i] = np.uint16(((f >> 16) & 0x8000) | h)


@_jit
def f16_decode(halves, out):
    """IEEE half -> float32 bits, exact. halves: uint16 1-D; out: uint32, same size (a
    float32 array viewed as uint32)."""
    for i in range(halves.size):
        x = np.int64(halves[i])
        e = (x >> 10) & 0x1F
        m = x & 0x3FF
        top = 63 - np.int64(leading_zeros(np.uint64(m)))  # bit index of m's leading 1
        sub = ((top + 103) << 23) | ((m << (23 - top)) & 0x7FFFFF) if m != 0 else 0
        body = (0xFF << 23 if e == 31 else (e + 112) << 23) | (m << 13)
        body = sub if e == 0 else body
        out[i] = np.uint32(((x & 0x8000) << 16) | body)


@_jit
def fixed_encode(vals, inv_scale, qmax, seed, out):
    """out[i] = clip(floor(vals[i] * inv_scale + u_i), -qmax, qmax) with u_i in [0, 1) the
    top 24 bits of mix(seed + (i+1)*GOLDEN) / 2**24: stochastic rounding, unbiased while
    unclipped. vals: float32 1-D, finite; inv_scale, qmax: float32; seed: uint64;
    out: int8 or int16, same size, qmax within its range."""
    lo = -qmax
    unit = np.float32(2.0 ** -24)
    z = seed
    for i in range(vals.size):
        z += GOLDEN
        u = np.float32(np.int64(_mix(z) >> np.uint64(40))) * unit
        t = np.floor(vals[i] * inv_scale + u)
        out[i] = min(max(t, lo), qmax)


@_jit
def fixed_decode(q, scale, out):
    """out[i] = float32(q[i]) * scale. q: int8 or int16 1-D; scale: float32; out: float32."""
    for i in range(q.size):
        out[i] = np.float32(q[i]) * scale
