"""Single-core throughput of the codec and merge kernels next to their NumPy references.

    python benchmarks/codec.py --n 10000000

Data: N sorted uint64 keys spread over the whole key space with power-law (Pareto) gaps, and
N float32 values of which about half are zero (width 1). Each kernel runs on preallocated
(already touched) output buffers; each reference (mpips.kernels.codec_reference) runs as
written, allocating its outputs. Both are checked to give the same result, then timed (best
of --repeat). Prints one JSON object per kernel and implementation on stdout:
kernel, impl ("numba" | "numpy"), n, bytes_in, bytes_out, seconds, gb_per_s, where gb_per_s
counts the larger of bytes_in and bytes_out (the uncompressed side) per second. The lines are
appended to --out as well.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpips.kernels import codec as K  # noqa: E402
from mpips.kernels import codec_reference as ref  # noqa: E402
from mpips.kernels import codec_values as V  # noqa: E402
from mpips.kernels import merge as M  # noqa: E402

from jsonlines import emit  # noqa: E402  (benchmarks/jsonlines.py, next to this script)

LO, HI = np.uint64(0), np.uint64(2**64 - 1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000_000, help="keys / values per kernel call")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (best)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "codec.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    return p.parse_args(argv)


def make_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    gaps = rng.pareto(1.2, n) + 1
    gaps = np.maximum(gaps / gaps.sum() * 0.9 * 2.0**64, 1).astype(np.uint64)
    keys = np.cumsum(gaps, dtype=np.uint64)
    vals = rng.standard_normal((n, 1)).astype(np.float32)
    vals[rng.random(n) < 0.5] = 0
    return rng, keys, vals


def varint_cases(keys):
    n = keys.size
    enc = np.empty(K.varint_size(keys), np.uint8)
    dec = np.empty(n, np.uint64)

    def numba_encode():
        out = enc[: K.varint_size(keys)]
        return out[: K.varint_encode(keys, out)]

    def numpy_encode():
        out = np.empty(ref.varint_size(keys), np.uint8)
        return out[: ref.varint_encode(keys, out)]

    def numba_decode():
        count, _ = K.varint_check(enc, LO, HI)
        K.varint_decode(enc, dec[:count])
        return dec[:count]

    def numpy_decode():
        count, _ = ref.varint_check(enc, LO, HI)
        out = np.empty(count, np.uint64)
        ref.varint_decode(enc, out)
        return out

    numba_encode()
    yield "varint_encode", keys.nbytes, enc.nbytes, numba_encode, numpy_encode
    yield "varint_decode", enc.nbytes, keys.nbytes, numba_decode, numpy_decode
    yield "key_signature", keys.nbytes, 8, lambda: K.key_signature(keys), \
        lambda: ref.key_signature(keys)


def value_cases(vals):
    n = vals.shape[0]
    bits, flat = vals.view(np.uint32), vals.reshape(-1)
    mask, packed = np.empty(-(-n // 8), np.uint8), np.empty_like(bits)
    m = V.drop_zero_rows(bits, mask, packed)
    kept, back = packed[:m].copy(), np.empty_like(bits)

    def drop(fn):
        return lambda: (fn(bits, mask, packed), mask)[1]

    def numpy_drop():
        own_mask, out = np.empty_like(mask), np.empty_like(bits)
        return (ref.drop_zero_rows(bits, own_mask, out), own_mask)[1]

    yield "zero_drop", vals.nbytes, mask.nbytes + kept.nbytes, drop(V.drop_zero_rows), numpy_drop
    yield "zero_expand", mask.nbytes + kept.nbytes, vals.nbytes, \
        lambda: (V.expand_rows(mask, kept, back), back)[1], \
        lambda: (ref.expand_rows(mask, kept, out := np.empty_like(bits)), out)[1]
    halves = np.empty(n, np.uint16)
    V.f16_encode(flat.view(np.uint32), halves)
    yield "fp16_encode", vals.nbytes, halves.nbytes, \
        lambda: (V.f16_encode(flat.view(np.uint32), halves), halves)[1], \
        lambda: (ref.f16_encode(flat.view(np.uint32), out := np.empty(n, np.uint16)), out)[1]
    yield "fp16_decode", halves.nbytes, vals.nbytes, \
        lambda: (V.f16_decode(halves, back.reshape(-1)), back.reshape(-1))[1], \
        lambda: (ref.f16_decode(halves, out := np.empty(n, np.uint32)), out)[1]
    qmax = np.float32(127)
    inv = np.float32(qmax / np.abs(flat).max())
    q = np.empty(n, np.int8)
    V.fixed_encode(flat, inv, qmax, np.uint64(1), q)
    yield "fixed8_encode", vals.nbytes, q.nbytes, \
        lambda: (V.fixed_encode(flat, inv, qmax, np.uint64(1), q), q)[1], \
        lambda: (ref.fixed_encode(flat, inv, qmax, np.uint64(1), o := np.empty(n, np.int8)), o)[1]
    out32 = np.empty(n, np.float32)
    yield "fixed8_decode", q.nbytes, vals.nbytes, \
        lambda: (V.fixed_decode(q, np.float32(1 / inv), out32), out32)[1], \
        lambda: (ref.fixed_decode(q, np.float32(1 / inv), out := np.empty(n, np.float32)), out)[1]


def merge_cases(rng, keys, vals):
    """Two pushes that each hold half of the keys, and four that each hold a quarter."""
    for name, k in (("merge2", 2), ("merge_k4", 4)):
        lists = [np.flatnonzero(rng.random(keys.size) < 1 / k) for _ in range(k)]
        all_keys = np.concatenate([keys[i] for i in lists])
        all_vals = np.concatenate([vals[i] for i in lists])
        offsets = np.cumsum([0] + [i.size for i in lists]).astype(np.int64)
        out_k, out_v = np.empty(all_keys.size, np.uint64), np.empty_like(all_vals)
        parts = [(all_keys[a:b], all_vals[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
        if k == 2:
            (ak, av), (bk, bv) = parts
            kernel, reference = M.merge_sum2, ref.merge_sum2
            args = (ak, av, bk, bv)
        else:
            kernel, reference = M.merge_sum_k, ref.merge_sum_k
            args = (all_keys, all_vals, offsets)
        m = kernel(*args, out_k, out_v)

        def run_numba(kernel=kernel, args=args, out_k=out_k, out_v=out_v):
            got = kernel(*args, out_k, out_v)
            return out_k[:got], out_v[:got]

        def run_numpy(reference=reference, args=args, out_k=out_k, out_v=out_v):
            ok, ov = np.empty_like(out_k), np.empty_like(out_v)
            got = reference(*args, ok, ov)
            return ok[:got], ov[:got]

        yield name, all_keys.nbytes + all_vals.nbytes, m * 12, run_numba, run_numpy


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(same(x, y) for x, y in zip(a, b))
    return np.array_equal(np.asarray(a), np.asarray(b))


def main(argv=None) -> int:
    args = parse_args(argv)
    from mpips.kernels.warmup_codec import warm_codec

    warm_codec()
    rng, keys, vals = make_data(args.n, args.seed)
    cases = [*varint_cases(keys), *value_cases(vals), *merge_cases(rng, keys, vals)]
    rows = []
    for kernel, bytes_in, bytes_out, numba_fn, numpy_fn in cases:
        if not same(numba_fn(), numpy_fn()):
            raise SystemExit(f"{kernel}: the numba kernel and the NumPy reference disagree")
        for impl, fn in (("numba", numba_fn), ("numpy", numpy_fn)):
            seconds = best_time(fn, args.repeat)
            row = {"kernel": kernel, "impl": impl, "n": args.n, "bytes_in": int(bytes_in),
                   "bytes_out": int(bytes_out), "seconds": round(seconds, 6),
                   "gb_per_s": round(max(bytes_in, bytes_out) / seconds / 1e9, 3)}
            emit([row], None)
            rows.append(row)
    emit(rows, args.out, stamp=False, echo=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
