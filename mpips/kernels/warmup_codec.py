"""Compile every codec and merge kernel once for the dtypes mpips uses (numba's on-disk
cache), like mpips.kernels.warmup.warm_all: call before a parallel launch."""
import numpy as np

from . import codec, codec_values, merge


def warm_codec() -> list[str]:
    """Call each kernel on tiny inputs; returns the names compiled."""
    keys = np.array([1, 5, 2**40], np.uint64)
    lo, hi = np.uint64(0), np.uint64(2**64 - 1)
    buf = np.zeros(codec.varint_size(keys), np.uint8)
    codec.varint_encode(keys, buf)
    codec.varint_check(buf, lo, hi)
    codec.varint_decode(buf, np.empty(keys.size, np.uint64))
    codec.key_signature(keys)
    vals = np.array([[1.0], [0.0], [-2.5]], np.float32)
    mask, packed = np.empty(1, np.uint8), np.empty((3, 1), np.uint32)
    kept = codec_values.drop_zero_rows(vals.view(np.uint32), mask, packed)
    codec_values.expand_rows(mask, packed[:kept], np.empty((3, 1), np.uint32))
    flat = vals.reshape(-1)
    halves = np.empty(3, np.uint16)
    codec_values.f16_encode(flat.view(np.uint32), halves)
    codec_values.f16_decode(halves, np.empty(3, np.uint32))
    for dtype in (np.int8, np.int16):
        q = np.empty(3, dtype)
        codec_values.fixed_encode(flat, np.float32(1.0), np.float32(np.iinfo(dtype).max),
                                  np.uint64(1), q)
        codec_values.fixed_decode(q, np.float32(1.0), np.empty(3, np.float32))
    out_k, out_v = np.empty(6, np.uint64), np.empty((6, 1), np.float32)
    merge.merge_sum2(keys, vals, keys, vals, out_k, out_v)
    merge.merge_sum_k(np.concatenate([keys, keys]), np.concatenate([vals, vals]),
                      np.array([0, 3, 6], np.int64), out_k, out_v)
    return ["varint_size", "varint_encode", "varint_check", "varint_decode", "key_signature",
            "drop_zero_rows", "expand_rows", "f16_encode", "f16_decode", "fixed_encode",
            "fixed_decode", "merge_sum2", "merge_sum_k"]
