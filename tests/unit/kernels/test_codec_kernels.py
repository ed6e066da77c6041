"""The codec and merge kernels (mpips.kernels.codec, .codec_values, .merge) against their
plain-NumPy references (mpips.kernels.codec_reference), plus hand-written expectations so the
references are checked too."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpips.kernels import codec as K
from mpips.kernels import codec_reference as ref
from mpips.kernels import codec_values as V
from mpips.kernels import merge as M
from tests.helpers.keys import MAX, sorted_unique_u64, u64

LO, HI = np.uint64(0), np.uint64(MAX)

any_key = st.one_of(st.integers(0, 300), st.integers(MAX - 300, MAX), st.integers(0, MAX),
                    st.integers(0, 2**60).map(lambda x: 1 << (x % 64)))


def spread_keys(n: int, seed: int = 1) -> np.ndarray:
    """n sorted unique keys over the whole key space with heavy-tailed gaps."""
    gaps = np.random.default_rng(seed).pareto(1.2, n) + 1
    gaps = np.maximum(gaps / gaps.sum() * 0.9 * 2.0**64, 1).astype(np.uint64)
    return np.cumsum(gaps, dtype=np.uint64)


# ====================================================================================== varint

BOUNDARIES = sorted({0, 1, 2**64 - 1} | {(1 << 7 * j) + d for j in range(1, 10) for d in (-1, 0)})
KEY_CASES = {
    "empty": [],
    "single_zero": [0],
    "single": [300],
    "single_max": [MAX],
    "zero_and_max": [0, MAX],
    "max_gap_minus_one": [1, MAX],
    "consecutive": list(range(50)),
    "near_max": list(range(MAX - 20, MAX + 1)),
    "gap_boundaries": BOUNDARIES,
    "pow2": [1 << j for j in range(64)],
}


def encode(fn, keys):
    out = np.zeros(max(K.varint_size(keys), 1) + 16, np.uint8)  # spare bytes must stay 0
    n = fn(keys, out)
    assert not out[n:].any()
    return out[:n]


@pytest.mark.parametrize("keys", KEY_CASES.values(), ids=KEY_CASES.keys())
def test_varint_round_trip_fixed(keys):
    keys = u64(keys)
    assert K.varint_size(keys) == ref.varint_size(keys)
    got = encode(K.varint_encode, keys)
    np.testing.assert_array_equal(got, encode(ref.varint_encode, keys))
    exact = got.copy()  # no spare bytes: the kernel's tail path, byte by byte
    assert K.varint_encode(keys, exact) == exact.size and np.array_equal(exact, got)
    assert K.varint_check(got, LO, HI) == ref.varint_check(got, LO, HI) == (keys.size, got.size)
    for decode in (K.varint_decode, ref.varint_decode):
        out = np.empty(keys.size, np.uint64)
        decode(got, out)
        np.testing.assert_array_equal(out, keys)


def test_varint_known_bytes():
    # LEB128 by hand: 300 = 0b10_0101100 -> 0xAC 0x02; then a gap of 1; then 2**64-1-301
    got = encode(K.varint_encode, u64([300, 301]))
    assert got.tolist() == [0xAC, 0x02, 0x01]
    assert encode(K.varint_encode, u64([MAX])).tolist() == [0xFF] * 9 + [0x01]
    assert encode(K.varint_encode, u64([0])).tolist() == [0x00]


def test_varint_round_trip_many_spread_keys():
    keys = spread_keys(20_000)
    got = encode(K.varint_encode, keys)
    np.testing.assert_array_equal(got, encode(ref.varint_encode, keys))
    assert K.varint_check(got, LO, HI) == (keys.size, got.size)
    out = np.empty(keys.size, np.uint64)
    K.varint_decode(got, out)
    np.testing.assert_array_equal(out, keys)


# (bytes, lo, hi, expected (code or count, byte offset))
CHECK_CASES = {
    "empty": ([], 0, MAX, (0, 0)),
    "duplicate_key": ([5, 0], 0, MAX, (K.KEY_DUPLICATE, 1)),
    "duplicate_zero": ([0, 0], 0, MAX, (K.KEY_DUPLICATE, 1)),
    "duplicate_max": ([0xFF] * 9 + [0x01, 0x00], 0, MAX, (K.KEY_DUPLICATE, 10)),
    "truncated_one": ([0x80], 0, MAX, (K.VARINT_TRUNCATED, 0)),
    "truncated_after_key": ([7, 0xFF, 0xFF], 0, MAX, (K.VARINT_TRUNCATED, 1)),
    "truncated_nine": ([0xFF] * 9, 0, MAX, (K.VARINT_TRUNCATED, 0)),
    "ten_continuations": ([0xFF] * 10, 0, MAX, (K.VARINT_OVERFLOW, 0)),
    "eleven_bytes": ([0x80] * 10 + [0x00], 0, MAX, (K.VARINT_OVERFLOW, 0)),
    "tenth_byte_two": ([0xFF] * 9 + [0x02], 0, MAX, (K.VARINT_OVERFLOW, 0)),
    "max_key": ([0xFF] * 9 + [0x01], 0, MAX, (1, 10)),
    "noncanonical_two": ([0x80, 0x00], 0, MAX, (K.VARINT_NONCANONICAL, 0)),
    "noncanonical_ten": ([0x80] * 9 + [0x00], 0, MAX, (K.VARINT_NONCANONICAL, 0)),
    "noncanonical_long_fast": ([1] + [0x81] * 7 + [0x00] + [0] * 8, 0, MAX,
                               (K.VARINT_NONCANONICAL, 1)),
    "key_overflow": ([0xFF] * 9 + [0x01, 0x01], 0, MAX, (K.KEY_OVERFLOW, 10)),
    "below_lo": ([3, 1], 4, MAX, (K.KEY_OUT_OF_RANGE, 0)),
    "above_hi": ([3, 1, 1], 0, 4, (K.KEY_OUT_OF_RANGE, 2)),
    "bounds_inclusive": ([3, 1], 3, 4, (2, 2)),
}


@pytest.mark.parametrize("case", CHECK_CASES.values(), ids=CHECK_CASES.keys())
def test_varint_check_fixed(case):
    data, lo, hi, want = case
    buf = np.array(data, np.uint8)
    args = (buf, np.uint64(lo), np.uint64(hi))
    assert K.varint_check(*args) == ref.varint_check(*args) == want


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=40), any_key, any_key)
def test_varint_check_matches_reference_on_any_bytes(data, lo, hi):
    buf = np.frombuffer(data, np.uint8).copy()
    args = (buf, np.uint64(min(lo, hi)), np.uint64(max(lo, hi)))
    got = K.varint_check(*args)
    assert got == ref.varint_check(*args)
    if got[0] >= 0:  # valid: decodes like the reference and re-encodes to the same bytes
        out, want = np.empty(got[0], np.uint64), np.empty(got[0], np.uint64)
        K.varint_decode(buf, out)
        ref.varint_decode(buf, want)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(encode(K.varint_encode, out), buf)


@settings(deadline=None, max_examples=200)
@given(sorted_unique_u64(any_key))
def test_varint_round_trip_property(keys):
    got = encode(K.varint_encode, keys)
    np.testing.assert_array_equal(got, encode(ref.varint_encode, keys))
    assert K.varint_check(got, LO, HI) == (keys.size, got.size)
    out = np.empty(keys.size, np.uint64)
    K.varint_decode(got, out)
    np.testing.assert_array_equal(out, keys)


# =================================================================================== signature

SIG_CASES = {"empty": [], "single_zero": [0], "single_max": [MAX], "zero_and_max": [0, MAX],
             "duplicates": [7, 7, 7], "unsorted": [3, 1, 2], "spread": spread_keys(1000)}


@pytest.mark.parametrize("keys", SIG_CASES.values(), ids=SIG_CASES.keys())
def test_key_signature_matches_reference(keys):
    keys = u64(keys)
    assert K.key_signature(keys) == ref.key_signature(keys)


def test_key_signature_tells_lists_apart():
    base = spread_keys(500)
    variants = [base, base[:-1], base[1:], base[::-1].copy(), np.concatenate([base, base[-1:]]),
                u64([]), u64([0]), u64([0, 0]), u64([MAX]), u64([1]), base ^ np.uint64(1)]
    for bit in (0, 17, 63):
        flipped = base.copy()
        flipped[250] ^= np.uint64(1 << bit)
        variants.append(flipped)
    sigs = [int(K.key_signature(v)) for v in variants]
    assert len(set(sigs)) == len(sigs)


@settings(deadline=None, max_examples=100)
@given(st.lists(any_key, max_size=50))
def test_key_signature_property(keys):
    keys = u64(keys)
    assert K.key_signature(keys) == ref.key_signature(keys)


# =================================================================================== zero rows

def zero_drop_both(vals):
    bits = np.ascontiguousarray(vals, np.float32).view(np.uint32)
    n = bits.shape[0]
    results = []
    for fn in (V.drop_zero_rows, ref.drop_zero_rows):
        mask = np.full(-(-n // 8), 0xAA, np.uint8)
        out = np.zeros_like(bits)
        m = fn(bits, mask, out)
        results.append((m, mask, out[:m]))
    (m, mask, packed), (m2, mask2, packed2) = results
    assert m == m2
    np.testing.assert_array_equal(mask, mask2)
    np.testing.assert_array_equal(packed, packed2)
    for fn in (V.expand_rows, ref.expand_rows):
        back = np.full_like(bits, 0xDEAD)
        fn(mask, np.ascontiguousarray(packed), back)
        np.testing.assert_array_equal(back, bits)  # bit-exact, -0.0 included
    return m, mask


ZERO_CASES = {
    "empty": np.zeros((0, 1), np.float32),
    "single_zero": np.zeros((1, 1), np.float32),
    "single_value": np.ones((1, 3), np.float32),
    "all_zero": np.zeros((17, 2), np.float32),
    "negative_zero_kept": np.array([[0.0], [-0.0], [0.0]], np.float32),
    "row_with_one_value": np.array([[0, 0, 0], [0, 5, 0], [0, 0, 0]], np.float32),
    "nan_kept": np.array([[np.nan], [0], [np.inf]], np.float32),
    "eight_rows": np.array([[1], [0]] * 4, np.float32),
    "nine_rows": np.array([[0]] * 8 + [[1]], np.float32),
}


@pytest.mark.parametrize("vals", ZERO_CASES.values(), ids=ZERO_CASES.keys())
def test_zero_rows_fixed(vals):
    zero_drop_both(vals)


def test_zero_rows_known_mask():
    m, mask = zero_drop_both(np.array([[1], [0], [0], [2], [0], [0], [0], [0], [3]], np.float32))
    assert m == 3 and mask.tolist() == [0b1001, 0b1]


@settings(deadline=None, max_examples=150)
@given(st.integers(0, 40), st.integers(1, 4), st.floats(0, 1), st.integers(0, 2**32))
def test_zero_rows_property(n, width, density, seed):
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal((n, width)).astype(np.float32)
    vals[rng.random(n) >= density] = 0
    vals[rng.random((n, width)) < 0.3] = 0
    m, _ = zero_drop_both(vals)
    assert m == int((vals != 0).any(axis=1).sum())


# ======================================================================================== fp16

def f16_both(vals):
    bits = np.ascontiguousarray(vals, np.float32).view(np.uint32)
    got = np.empty(bits.size, np.uint16)
    V.f16_encode(bits, got)
    want = np.empty_like(got)
    ref.f16_encode(bits, want)
    nan = np.isnan(want.view(np.float16))
    np.testing.assert_array_equal(np.isnan(got.view(np.float16)), nan)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    return got


def test_f16_decode_every_half_exactly():
    halves = np.arange(2**16, dtype=np.uint16)
    got, want = np.empty(halves.size, np.uint32), np.empty(halves.size, np.uint32)
    V.f16_decode(halves, got)
    ref.f16_decode(halves, want)
    nan = np.isnan(want.view(np.float32))
    np.testing.assert_array_equal(np.isnan(got.view(np.float32)), nan)
    np.testing.assert_array_equal(got[~nan], want[~nan])


def test_f16_encode_special_values():
    f32 = np.finfo(np.float32)
    special = [0.0, -0.0, 1.0, -1.0, 65504, 65519.99, 65520, -65520, 1e9, np.inf, -np.inf,
               np.nan, -np.nan, 2**-14, 2**-24, 2**-25, 1.5 * 2**-25, 2**-26, 3 * 2**-25,
               2**-14 - 2**-25, f32.tiny, f32.smallest_subnormal, f32.max, 0.1, 1 / 3]
    vals = np.array(special + [-x for x in special], np.float32)
    got = f16_both(vals)
    assert got[0] == 0 and got[1] == 0x8000 and got[6] == 0x7C00 and got[7] == 0xFC00


def test_f16_encode_random_bit_patterns_and_round_trip():
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    f16_both(bits.view(np.float32))
    vals = rng.standard_normal(10_000).astype(np.float32) * 100
    halves = f16_both(vals)
    back = np.empty(vals.size, np.float32)
    V.f16_decode(halves, back.view(np.uint32))
    np.testing.assert_allclose(back, vals, rtol=2**-11)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.floats(width=32, allow_nan=True), max_size=20))
def test_f16_encode_property(values):
    f16_both(np.array(values, np.float32))


# ================================================================================ fixed point

@pytest.mark.parametrize("dtype", [np.int8, np.int16])
@pytest.mark.parametrize("n", [0, 1, 1000])
def test_fixed_encode_matches_reference(dtype, n):
    vals = np.random.default_rng(n).uniform(-2, 2, n).astype(np.float32)
    qmax = np.float32(np.iinfo(dtype).max)
    for seed in (0, 1, MAX):
        got, want = np.empty(n, dtype), np.empty(n, dtype)
        V.fixed_encode(vals, np.float32(qmax / 2), qmax, np.uint64(seed), got)
        ref.fixed_encode(vals, np.float32(qmax / 2), qmax, np.uint64(seed), want)
        np.testing.assert_array_equal(got, want)
        # stochastic rounding lands on one of the two neighbouring levels
        assert (np.abs(got.astype(np.float64) - vals * (qmax / 2)) < 1).all()
        out, want_out = np.empty(n, np.float32), np.empty(n, np.float32)
        V.fixed_decode(got, np.float32(2 / qmax), out)
        ref.fixed_decode(got, np.float32(2 / qmax), want_out)
        np.testing.assert_array_equal(out, want_out)


@pytest.mark.parametrize("value", [0.3, -0.3, 0.5, 0.01, -126.99, 0.0, 3.0])
def test_fixed_stochastic_rounding_is_unbiased(value):
    n = 200_000
    vals = np.full(n, value, np.float32)
    q = np.empty(n, np.int8)
    V.fixed_encode(vals, np.float32(1.0), np.float32(127), np.uint64(12345), q)
    assert set(np.unique(q)) <= {np.floor(value), np.ceil(value)}
    # the mean of Bernoulli roundings: standard error <= 0.5 / sqrt(n) ~ 0.0011
    assert abs(q.mean() - float(np.float32(value))) < 0.006


def test_fixed_clips_at_qmax():
    vals = np.array([1e6, -1e6, 127.5, -127.5], np.float32)
    q = np.empty(4, np.int8)
    V.fixed_encode(vals, np.float32(1.0), np.float32(127), np.uint64(0), q)
    assert q.tolist() == [127, -127, 127, -127]


# ================================================================================= merge-sum

def run_merge_k(fn, lists, width=1, seed=0):
    rng = np.random.default_rng(seed)
    keys = np.concatenate([u64(x) for x in lists]) if lists else u64([])
    vals = rng.integers(-50, 50, (keys.size, width)).astype(np.float32)
    offsets = np.cumsum([0] + [len(x) for x in lists]).astype(np.int64)
    out_k = np.empty(keys.size, np.uint64)
    out_v = np.empty((keys.size, width), np.float32)
    m = fn(keys, vals, offsets, out_k, out_v)
    return out_k[:m], out_v[:m], keys, vals


def expected_merge(keys, vals):
    """Hand version: dict of key -> summed row, sorted."""
    acc = {}
    for k, v in zip(keys.tolist(), vals):
        acc[k] = acc.get(k, 0) + v.astype(np.float64)
    order = sorted(acc)
    return u64(order), np.array([acc[k] for k in order]).reshape(len(order), vals.shape[1])


MERGE_CASES = {
    "no_lists": [],
    "all_empty": [[], [], []],
    "one_empty": [[]],
    "single_key": [[5]],
    "same_single_key": [[5], [5], [5]],
    "max_key_everywhere": [[MAX], [0, MAX], [MAX]],
    "zero_and_max": [[0], [MAX]],
    "disjoint": [[1, 3, 5], [2, 4, 6]],
    "identical": [[1, 2, 3]] * 4,
    "interleaved_dups": [[1, 4, 9, MAX], [], [2, 4, 8], [4, 9, 10]],
    "one_long": [list(range(100)), [50], [99, MAX]],
}


@pytest.mark.parametrize("width", [1, 3])
@pytest.mark.parametrize("lists", MERGE_CASES.values(), ids=MERGE_CASES.keys())
def test_merge_sum_k_fixed(lists, width):
    got_k, got_v, keys, vals = run_merge_k(M.merge_sum_k, lists, width)
    want_k, want_v, _, _ = run_merge_k(ref.merge_sum_k, lists, width)
    np.testing.assert_array_equal(got_k, want_k)
    np.testing.assert_array_equal(got_v, want_v)  # integer values: sums are exact
    hand_k, hand_v = expected_merge(keys, vals)
    np.testing.assert_array_equal(got_k, hand_k)
    np.testing.assert_array_equal(got_v, hand_v)


def run_merge2(fn, a, b, width=1, seed=0):
    rng = np.random.default_rng(seed)
    ak, bk = u64(a), u64(b)
    av = rng.standard_normal((ak.size, width)).astype(np.float32)
    bv = rng.standard_normal((bk.size, width)).astype(np.float32)
    out_k = np.empty(ak.size + bk.size, np.uint64)
    out_v = np.empty((ak.size + bk.size, width), np.float32)
    m = fn(ak, av, bk, bv, out_k, out_v)
    return out_k[:m], out_v[:m]


@pytest.mark.parametrize("width", [1, 4])
@pytest.mark.parametrize("a, b", [([], []), ([1], []), ([], [MAX]), ([MAX], [MAX]), ([0], [0]),
                                  ([1, 2, 3], [2, 3, 4]), ([0, MAX], [1, 2, 3]),
                                  (list(range(0, 60, 2)), list(range(0, 60, 3)))])
def test_merge_sum2_fixed(a, b, width):
    got_k, got_v = run_merge2(M.merge_sum2, a, b, width)
    want_k, want_v = run_merge2(ref.merge_sum2, a, b, width)
    np.testing.assert_array_equal(got_k, want_k)
    np.testing.assert_array_equal(got_v, want_v)  # one addition per key: bit-exact
    np.testing.assert_array_equal(got_k, sorted(set(a) | set(b)))


def test_merge_keeps_negative_zero():
    for fn in (M.merge_sum2, ref.merge_sum2):
        out_k, out_v = np.empty(2, np.uint64), np.empty((2, 1), np.float32)
        m = fn(u64([1]), np.array([[-0.0]], np.float32), u64([2]),
               np.array([[-0.0]], np.float32), out_k, out_v)
        assert m == 2 and np.signbit(out_v).all()


@settings(deadline=None, max_examples=150)
@given(st.lists(sorted_unique_u64(any_key, 25), max_size=6), st.integers(1, 3))
def test_merge_sum_k_property(lists, width):
    got_k, got_v, keys, vals = run_merge_k(M.merge_sum_k, lists, width)
    want_k, want_v, _, _ = run_merge_k(ref.merge_sum_k, lists, width)
    np.testing.assert_array_equal(got_k, want_k)
    np.testing.assert_array_equal(got_v, want_v)
    if len(lists) == 2:
        k2, v2 = run_merge2(M.merge_sum2, lists[0], lists[1], width)
        np.testing.assert_array_equal(k2, got_k)


@settings(deadline=None, max_examples=150)
@given(sorted_unique_u64(any_key, 40), sorted_unique_u64(any_key, 40), st.integers(1, 3))
def test_merge_sum2_property(a, b, width):
    got_k, got_v = run_merge2(M.merge_sum2, a, b, width)
    want_k, want_v = run_merge2(ref.merge_sum2, a, b, width)
    np.testing.assert_array_equal(got_k, want_k)
    np.testing.assert_array_equal(got_v, want_v)
