"""Plain-NumPy references of the codec and merge kernels (mpips.kernels.codec,
.codec_values, .merge): vectorised, obviously right, used by the tests and as the baseline of
benchmarks/codec.py. Same signatures and results as the kernels."""
import numpy as np

from .codec import (GOLDEN, KEY_DUPLICATE, KEY_OUT_OF_RANGE, KEY_OVERFLOW, M1, M2, SIG_SEED,
                    VARINT_NONCANONICAL, VARINT_OVERFLOW, VARINT_TRUNCATED)

U64 = np.uint64


def _gaps(keys):
    return np.diff(np.asarray(keys, U64), prepend=U64(0))


def _lengths(gaps):
    """Bytes of each gap's varint: 1 + the number of 7-bit boundaries it reaches."""
    return 1 + sum((gaps >= U64(1 << 7 * j)).astype(np.int64) for j in range(1, 10))


def varint_size(keys):
    return int(_lengths(_gaps(keys)).sum())


def varint_encode(keys, out):
    gaps = _gaps(keys)
    lengths = _lengths(gaps)
    total = int(lengths.sum())
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    groups = (np.repeat(gaps, lengths) >> (7 * within).astype(U64)) & U64(0x7F)
    more = within < np.repeat(lengths - 1, lengths)
    out[:total] = (groups | (more.astype(U64) << U64(7))).astype(np.uint8)
    return total


def _parse(buf):
    """(starts, lengths, gap values, bytes of an unterminated tail) of a varint stream;
    values of varints longer than 10 bytes are garbage."""
    buf = np.asarray(buf, np.uint8)
    ends = np.flatnonzero(buf < 0x80)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)[: ends.size]
    lengths = ends - starts + 1
    within = np.arange(ends[-1] + 1 if ends.size else 0) - np.repeat(starts, lengths)
    groups = (buf[: within.size] & 0x7F).astype(U64) << np.minimum(7 * within, 63).astype(U64)
    values = np.bitwise_or.reduceat(groups, starts) if starts.size else np.zeros(0, U64)
    return starts, lengths, values, buf.size - within.size


def varint_check(buf, lo, hi):
    buf = np.asarray(buf, np.uint8)
    starts, lengths, gaps, tail = _parse(buf)
    last = buf[starts + lengths - 1] if starts.size else np.zeros(0, np.uint8)
    keys = np.cumsum(gaps, dtype=U64)
    overflow = (lengths > 10) | ((lengths == 10) & (last > 1))
    after = np.arange(keys.size) > 0
    codes = np.select(
        [overflow, (lengths > 1) & (last == 0), after & (gaps == 0),
         after & (keys < np.concatenate([[U64(0)], keys[:-1]])), (keys < lo) | (keys > hi)],
        [VARINT_OVERFLOW, VARINT_NONCANONICAL, KEY_DUPLICATE, KEY_OVERFLOW, KEY_OUT_OF_RANGE], 0)
    bad = np.flatnonzero(codes)
    if bad.size:
        return int(codes[bad[0]]), int(starts[bad[0]])
    if tail:
        return (VARINT_OVERFLOW if tail >= 10 else VARINT_TRUNCATED), buf.size - tail
    return keys.size, buf.size


def varint_decode(buf, out):
    out[:] = np.cumsum(_parse(buf)[2], dtype=U64)


def _mix(z):
    z = (z ^ (z >> U64(30))) * M1
    z = (z ^ (z >> U64(27))) * M2
    return z ^ (z >> U64(31))


def key_signature(keys):
    keys = np.asarray(keys, U64)
    steps = np.arange(1, keys.size + 1, dtype=U64) * GOLDEN
    acc = _mix(keys + steps).sum(dtype=U64)
    length = _mix(np.array([keys.size], U64) + SIG_SEED)
    return U64(_mix(np.array([acc], U64) ^ length)[0])


def drop_zero_rows(bits, mask, out):
    keep = (bits != 0).any(axis=1)
    mask[:] = np.packbits(keep, bitorder="little")
    out[: keep.sum()] = bits[keep]
    return int(keep.sum())


def expand_rows(mask, packed, out):
    keep = np.unpackbits(mask, count=out.shape[0], bitorder="little").astype(bool)
    out[:] = 0
    out[keep] = packed


def f16_encode(bits, out):
    with np.errstate(over="ignore"):  # overflow to inf is the expected result
        out[:] = bits.view(np.float32).astype(np.float16).view(np.uint16)


def f16_decode(halves, out):
    out[:] = halves.view(np.float16).astype(np.float32).view(np.uint32)


def fixed_encode(vals, inv_scale, qmax, seed, out):
    z = U64(seed) + np.arange(1, vals.size + 1, dtype=U64) * GOLDEN
    u = (_mix(z) >> U64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    t = np.floor(vals * np.float32(inv_scale) + u)
    out[:] = np.clip(t, -np.float32(qmax), np.float32(qmax)).astype(out.dtype)


def fixed_decode(q, scale, out):
    out[:] = q.astype(np.float32) * np.float32(scale)


def merge_sum_k(keys, vals, offsets, out_k, out_v):
    if keys.size == 0:
        return 0
    order = np.argsort(keys, kind="stable")  # lists are concatenated in order: ties by list
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    out_k[: starts.size] = ordered[starts]
    out_v[: starts.size] = np.add.reduceat(vals[order], starts, axis=0)
    return int(starts.size)


def merge_sum2(ak, av, bk, bv, out_k, out_v):
    offsets = np.array([0, ak.size, ak.size + bk.size], np.int64)
    return merge_sum_k(np.concatenate([ak, bk]), np.concatenate([av, bv]), offsets, out_k, out_v)
