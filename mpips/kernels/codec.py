"""Codec kernels for keys: delta+varint encoding of sorted key lists, its validation on
untrusted bytes, and 64-bit key-list signatures (value kernels: .codec_values; merge: .merge).

Unchecked loops: each docstring states its preconditions; mpips.wire.codec validates untrusted
bytes (varint_check before varint_decode, counts and section lengths before everything else).
Every kernel has a plain-NumPy reference in mpips.kernels.codec_reference.

Varint format: LEB128 (7 bits per byte, low group first, top bit = "more bytes follow") of
the first key, then of each gap key[i] - key[i-1]. Canonical only: a varint of more than one
byte never ends in a zero byte. Varints of up to 8 bytes are encoded and decoded a word at a
time (bit tricks on one 8-byte load/store); longer ones and the last 7 bytes byte by byte.
"""
import numba
import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

_jit = numba.njit(cache=True, nogil=True)

# varint_check results below zero (the byte offset of the offending varint comes with them)
VARINT_TRUNCATED = -1     # the stream ends inside a varint
VARINT_OVERFLOW = -2      # a varint longer than 10 bytes or past 64 bits
VARINT_NONCANONICAL = -3  # a varint of several bytes ending in a zero byte
KEY_DUPLICATE = -4        # a gap of 0: the key repeats the one before it
KEY_OVERFLOW = -5         # the sum of the gaps passes 2**64 - 1
KEY_OUT_OF_RANGE = -6     # a key outside [lo, hi]
ERRORS = {VARINT_TRUNCATED: "truncated varint", VARINT_OVERFLOW: "varint longer than 64 bits",
          VARINT_NONCANONICAL: "non-canonical varint (ends in a zero byte)",
          KEY_DUPLICATE: "gap of 0 (duplicate key)", KEY_OVERFLOW: "key sum past 2**64-1",
          KEY_OUT_OF_RANGE: "key outside the allowed range"}

U0, U1 = np.uint64(0), np.uint64(1)
B7F, B80 = np.uint64(0x7F), np.uint64(0x80)
LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
HIGH1 = np.uint64(0x8080808080808080)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1, M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
SIG_SEED = np.uint64(0x6D70697073636F64)  # "mpipscod"
# CONT[L]: the continuation bits of an L-byte varint (bytes 0..L-2), L = 1..8
CONT = np.array([0] + [0x8080808080808080 & ((1 << 8 * (n - 1)) - 1) for n in range(1, 9)],
                np.uint64)
_S = [np.uint64(x) for x in (0x000000000FFFFFFF, 0x00FFFFFFF0000000, 0x00003FFF00003FFF,
                             0x0FFFC0000FFFC000, 0x007F007F007F007F, 0x3F803F803F803F80)]
S28, S28H, S14, S14H, S7, S7H = _S
C7H, C14H, C28H = (np.uint64(0x7F007F007F007F00), np.uint64(0x3FFF00003FFF0000),
                   np.uint64(0x0FFFFFFF00000000))
SH1, SH2, SH4, SH7 = (np.uint64(x) for x in (1, 2, 4, 7))


# ------------------------------------------------------------------------------ varint keys

@_jit
def _varint_len(g):
    """Bytes of the varint of uint64 g (1..10)."""
    nbits = 64 - np.int64(leading_zeros(g))
    n = (nbits + 6) // 7
    return n + (n == 0)


@_jit
def _spread(g):
    """7-bit groups of g < 2**56 into the low 7 bits of 8 bytes."""
    x = (g & S28) | ((g & S28H) << SH4)
    x = (x & S14) | ((x & S14H) << SH2)
    return (x & S7) | ((x & S7H) << SH1)


@_jit
def _compact(x):
    """Inverse of _spread: 8 bytes of 7 bits each into one value < 2**56."""
    x = (x & S7) | ((x & C7H) >> SH1)
    x = (x & S14) | ((x & C14H) >> SH2)
    return (x & S28) | ((x & C28H) >> SH4)


@_jit
def _load8(buf, pos):
    """Little-endian uint64 from buf[pos:pos+8] (pos + 8 <= buf.size). The unsigned index
    spares numba's negative-index check, so LLVM turns this into one load."""
    w = U0
    p = np.uint64(pos)
    for j in range(8):
        w |= np.uint64(buf[p + np.uint64(j)]) << np.uint64(8 * j)
    return w


@_jit
def _store8(out, pos, w):
    """out[pos:pos+8] = little-endian bytes of uint64 w (pos + 8 <= out.size)."""
    for j in range(8):
        out[pos + j] = np.uint8((w >> np.uint64(8 * j)) & np.uint64(0xFF))


@_jit
def _write_slow(out, pos, g):
    while g >= B80:
        out[pos] = np.uint8((g & B7F) | B80)
        g >>= SH7
        pos += 1
    out[pos] = np.uint8(g)


@_jit
def _read_slow(buf, pos):
    """(value, length, error) of the varint at buf[pos:], byte by byte; bounds-checked."""
    v = U0
    for j in range(10):
        if pos + j >= buf.size:
            return U0, j, VARINT_TRUNCATED
        b = np.uint64(buf[pos + j])
        if j == 9 and b > U1:
            return U0, 10, VARINT_OVERFLOW
        v |= (b & B7F) << np.uint64(7 * j)
        if b < B80:
            return v, j + 1, VARINT_NONCANONICAL if (j > 0 and b == U0) else 0
    return U0, 10, VARINT_OVERFLOW  # not reached: a 10th byte <= 1 ends the varint


@_jit
def _ends(buf, pos, room):
    """(8 bytes at pos or 0, their varint-end bits): the bits are 0 when the varint at pos
    needs _read_slow (more than 8 bytes, or fewer than 8 bytes left: pos > room)."""
    w = _load8(buf, pos) if pos <= room else U0
    return w, (~w & HIGH1) if pos <= room else U0


@_jit
def varint_size(keys):
    """Bytes varint_encode writes for keys (uint64, sorted, unique)."""
    total = 0
    prev = U0
    for i in range(keys.size):
        total += _varint_len(keys[i] - prev)
        prev = keys[i]
    return total


@_jit
def varint_encode(keys, out):
    """Write the first key and then each gap as varints into out; returns the bytes written.

    keys: uint64, sorted, unique. out: uint8, at least varint_size(keys) bytes (spare bytes
    after them may be overwritten with zeros).
    """
    pos = 0
    prev = U0
    room = out.size - 8
    for i in range(keys.size):
        g = keys[i] - prev
        prev = keys[i]
        length = _varint_len(g)
        if length <= 8 and pos <= room:
            _store8(out, pos, _spread(g) | CONT[length])
        else:
            _write_slow(out, pos, g)
        pos += length
    return pos


@_jit
def varint_check(buf, lo, hi):
    """Validate a varint key stream without writing anything: returns (count, buf.size) when
    it decodes to strictly increasing keys within [lo, hi], else (error code < 0, byte offset
    of the offending varint). buf: uint8 1-D, any bytes; lo, hi: uint64."""
    pos = 0
    count = 0
    key = U0
    room = buf.size - 8
    while pos < buf.size:
        w, ends = _ends(buf, pos, room)
        if ends != U0:  # the common case, inline: <= 8 bytes decoded from one word
            length = np.int64(trailing_zeros(ends)) // 8 + 1
            gap = _compact(w & (ends ^ (ends - U1)) & LOW7)
            zero_end = length > 1 and gap >> np.uint64(7 * length - 7) == U0  # last byte 0
            err = VARINT_NONCANONICAL if zero_end else 0
        else:
            gap, length, err = _read_slow(buf, pos)
        if err != 0:
            return err, pos
        if count > 0 and gap == U0:
            return KEY_DUPLICATE, pos
        if key + gap < key:
            return KEY_OVERFLOW, pos
        key += gap
        if key < lo or key > hi:
            return KEY_OUT_OF_RANGE, pos
        pos += length
        count += 1
    return count, pos


@_jit
def varint_decode(buf, out):
    """Decode a varint key stream into out. buf: uint8 for which varint_check returned
    (out.size, buf.size); out: uint64."""
    pos = 0
    key = U0
    room = buf.size - 8
    for i in range(out.size):
        w, ends = _ends(buf, pos, room)
        if ends != U0:
            length = np.int64(trailing_zeros(ends)) // 8 + 1
            gap = _compact(w & (ends ^ (ends - U1)) & LOW7)
        else:
            gap, length, err = _read_slow(buf, pos)
        key += gap
        out[i] = key
        pos += length


# -------------------------------------------------------------------------------- signature

@_jit
def _mix(z):
    """splitmix64 finaliser of uint64 z."""
    z = (z ^ (z >> np.uint64(30))) * M1
    z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))


@_jit
def key_signature(keys):
    """64-bit signature of a key list: mix(sum_i mix(keys[i] + (i+1)*GOLDEN) ^ mix(n + SEED)),
    all mod 2**64. Order- and length-sensitive. keys: uint64 1-D."""
    acc = U0
    step = U0
    for i in range(keys.size):
        step += GOLDEN
        acc += _mix(keys[i] + step)
    return _mix(acc ^ _mix(np.uint64(keys.size) + SIG_SEED))
