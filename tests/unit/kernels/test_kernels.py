"""Every numba kernel (mpips.kernels.keys / .rows) against its plain-NumPy reference
(mpips.kernels.reference), plus hand-written expectations so the references are checked too."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpips.kernels import keys as K
from mpips.kernels import placement as P
from mpips.kernels import reference as ref
from mpips.kernels import rows as R
from tests.helpers.keys import MAX, sorted_unique_u64, u64

RNG_SEED = 20240611


def random_sorted_keys(n: int, seed: int = RNG_SEED) -> np.ndarray:
    """``n`` sorted unique uint64 keys drawn uniformly from the whole key space."""
    keys = np.unique(np.random.default_rng(seed).integers(0, MAX, size=n, dtype=np.uint64,
                                                          endpoint=True))
    assert keys.size == n  # a collision among n random 64-bit keys would be astonishing
    return keys


RANDOM_KEYS = random_sorted_keys(1000)


# ----------------------------------------------------------------------- hypothesis strategies

# Mix tiny keys (so lists collide and interleave), the top of the range, and everything else.
any_key = st.one_of(st.integers(0, 40), st.integers(MAX - 40, MAX), st.integers(0, MAX))


def as_sorted_u64(xs) -> np.ndarray:
    return u64(sorted(set(xs)))


# =================================================================== first_bad_key, count_bad_keys

LO, HI = np.uint64(0), np.uint64(MAX)

# (keys, lo, hi, prev, has_prev, expected first bad index, expected number of bad keys)
BAD_KEY_CASES = {
    "empty": ([], 0, MAX, 0, False, -1, 0),
    "empty_with_prev": ([], 0, MAX, 5, True, -1, 0),
    "single_good": ([7], 0, MAX, 0, False, -1, 0),
    "key_zero_no_prev": ([0], 0, MAX, 0, False, -1, 0),
    "key_zero_equals_prev": ([0], 0, MAX, 0, True, 0, 1),
    "max_key": ([MAX], 0, MAX, 0, False, -1, 0),
    "max_key_after_prev": ([MAX], 0, MAX, MAX - 1, True, -1, 0),
    "max_key_equals_prev": ([MAX], 0, MAX, MAX, True, 0, 1),
    "zero_and_max": ([0, MAX], 0, MAX, 0, False, -1, 0),
    "duplicate": ([1, 2, 2, 3], 0, MAX, 0, False, 2, 1),
    "duplicate_at_top": ([MAX - 1, MAX, MAX], 0, MAX, 0, False, 2, 1),
    "unsorted": ([3, 1, 2], 0, MAX, 0, False, 1, 1),
    "below_lo": ([4, 5, 6], 5, 10, 0, False, 0, 1),
    "above_hi": ([5, 10, 11], 5, 10, 0, False, 2, 1),
    "hi_inclusive": ([5, 10], 5, 10, 0, False, -1, 0),
    "not_after_prev": ([5, 6], 0, MAX, 5, True, 0, 1),
    "prev_ignored_without_flag": ([5, 6], 0, MAX, 9, False, -1, 0),
    "several_bad": ([1, 1, 50, 2, 3], 0, 40, 0, False, 1, 3),
}


@pytest.mark.parametrize("case", BAD_KEY_CASES.values(), ids=BAD_KEY_CASES.keys())
def test_first_and_count_bad_keys_fixed(case):
    keys, lo, hi, prev, has_prev, want_first, want_count = case
    args = (u64(keys), np.uint64(lo), np.uint64(hi), np.uint64(prev), has_prev)
    assert K.first_bad_key(*args) == ref.first_bad_key(*args) == want_first
    assert K.count_bad_keys(*args) == ref.count_bad_keys(*args) == want_count


@pytest.mark.parametrize("position", [0, 1, 500, 999])
def test_bad_keys_find_a_duplicate_in_random_keys(position):
    keys = RANDOM_KEYS.copy()
    keys[position] = keys[position - 1] if position else keys[0]
    args = (keys, LO, HI, keys[0], position == 0)  # at 0: a duplicate of prev
    assert K.first_bad_key(*args) == ref.first_bad_key(*args) == position
    assert K.count_bad_keys(*args) == ref.count_bad_keys(*args) == 1


def test_bad_keys_accept_random_sorted_keys():
    args = (RANDOM_KEYS, LO, HI, np.uint64(0), False)
    assert K.first_bad_key(*args) == ref.first_bad_key(*args) == -1
    assert K.count_bad_keys(*args) == ref.count_bad_keys(*args) == 0


@settings(deadline=None, max_examples=200)
@given(keys=st.lists(any_key, max_size=40), lo=any_key, hi=any_key, prev=any_key,
       has_prev=st.booleans())
def test_bad_keys_match_reference_on_arbitrary_lists(keys, lo, hi, prev, has_prev):
    args = (u64(keys), np.uint64(lo), np.uint64(hi), np.uint64(prev), has_prev)
    first = K.first_bad_key(*args)
    assert first == ref.first_bad_key(*args)
    assert K.count_bad_keys(*args) == ref.count_bad_keys(*args)
    assert (first == -1) == (K.count_bad_keys(*args) == 0)


# ================================================================================= matches_run

TABLE = u64([0, 3, 9, 10, 11, MAX])

# (table, keys, start, expected)
MATCHES_RUN_CASES = {
    "empty_everything": ([], [], 0, True),
    "empty_keys_at_start": (TABLE, [], 0, True),
    "empty_keys_at_end": (TABLE, [], TABLE.size, True),
    "empty_keys_past_end": (TABLE, [], TABLE.size + 1, False),
    "whole_table": (TABLE, TABLE, 0, True),
    "middle_run": (TABLE, [9, 10, 11], 2, True),
    "run_with_max": (TABLE, [11, MAX], 4, True),
    "key_zero": (TABLE, [0], 0, True),
    "one_differs": (TABLE, [9, 10, 12], 2, False),
    "max_differs_in_low_bit": (TABLE, [MAX - 1], 5, False),
    "wrong_start": (TABLE, [9, 10, 11], 1, False),
    "runs_off_end": (TABLE, [11, MAX, 0], 4, False),
    "keys_into_empty_table": ([], [1], 0, False),
}


@pytest.mark.parametrize("case", MATCHES_RUN_CASES.values(), ids=MATCHES_RUN_CASES.keys())
def test_matches_run(case):
    table, keys, start, want = case
    table, keys = u64(table), u64(keys)
    assert K.matches_run(table, keys, start) == ref.matches_run(table, keys, start) == want


def test_matches_run_random_slices():
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(50):
        start = int(rng.integers(0, RANDOM_KEYS.size))
        stop = int(rng.integers(start, RANDOM_KEYS.size + 1))
        run = RANDOM_KEYS[start:stop].copy()
        assert K.matches_run(RANDOM_KEYS, run, start)
        if run.size:
            run[-1] ^= np.uint64(1)
            assert not K.matches_run(RANDOM_KEYS, run, start)
            assert not ref.matches_run(RANDOM_KEYS, run, start)


# ================================================================================= offset_rows

OFFSET_CASES = {
    "empty": ([], 0),
    "begin_zero": ([0, 1, 2**63 - 1], 0),
    "single": ([12], 5),
    "top_of_range": ([MAX - 5, MAX - 1, MAX], MAX - 5),
    "random": (RANDOM_KEYS[RANDOM_KEYS - RANDOM_KEYS[0] < np.uint64(2**63)], int(RANDOM_KEYS[0])),
}


@pytest.mark.parametrize("case", OFFSET_CASES.values(), ids=OFFSET_CASES.keys())
def test_offset_rows(case):
    keys, begin = u64(case[0]), case[1]  # precondition: 0 <= key - begin < 2**63
    got = np.full(keys.size, -7, np.int64)
    want = np.full(keys.size, -7, np.int64)
    K.offset_rows(keys, np.uint64(begin), got)
    ref.offset_rows(keys, np.uint64(begin), want)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, [int(k) - begin for k in keys])


# ================================================================================ row kernels

WIDTHS = [1, 5]
N_ROWS = 12

# Row index patterns for a table of N_ROWS rows: -1 means "skip" (or "absent" for gather).
ROW_PATTERNS = {
    "empty": [],
    "single": [4],
    "first_and_last": [0, N_ROWS - 1],
    "all_absent": [-1, -1, -1],
    "with_absent": [3, -1, 0, -1, 11, 7],
    "permutation": list(np.random.default_rng(RNG_SEED).permutation(N_ROWS)),
}
UNIQUE_ROWS = pytest.mark.parametrize("rows", ROW_PATTERNS.values(), ids=ROW_PATTERNS.keys())
WIDTH = pytest.mark.parametrize("width", WIDTHS)


def table_and_grads(rows, width, seed=RNG_SEED):
    rng = np.random.default_rng(seed)
    rows = np.array(rows, np.int64)
    values = rng.standard_normal((N_ROWS, width)).astype(np.float32)
    grads = rng.standard_normal((rows.size, width)).astype(np.float32)
    return values, rows, grads


@UNIQUE_ROWS
@WIDTH
def test_gather_rows(rows, width):
    values, rows, _ = table_and_grads(rows, width)
    init = np.float32(0.25)
    got = np.full((rows.size, width), np.nan, np.float32)
    want = np.full((rows.size, width), np.nan, np.float32)
    R.gather_rows(values, rows, init, got)
    ref.gather_rows(values, rows, init, want)
    np.testing.assert_array_equal(got, want)
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(got[i], values[r] if r >= 0 else np.full(width, init))


@WIDTH
def test_gather_rows_from_a_table_with_no_rows(width):
    # A sparse slice before its first push stores (0, width) values; every pull row is -1.
    values = np.empty((0, width), np.float32)
    out = np.zeros((3, width), np.float32)
    R.gather_rows(values, np.full(3, -1, np.int64), np.float32(-1.5), out)
    np.testing.assert_array_equal(out, np.full((3, width), -1.5, np.float32))


# apply_sum and apply_sgd add row by row, so repeated rows accumulate (like np.add.at).
SUM_ROWS = {**ROW_PATTERNS, "repeated": [2, 2, -1, 5, 2]}


@pytest.mark.parametrize("rows", SUM_ROWS.values(), ids=SUM_ROWS.keys())
@WIDTH
def test_apply_sum(rows, width):
    values, rows, grads = table_and_grads(rows, width)
    expected = values.copy()
    for i, r in enumerate(rows):
        if r >= 0:
            expected[r] += grads[i]
    want = values.copy()
    R.apply_sum(values, rows, grads)
    ref.apply_sum(want, rows, grads)
    np.testing.assert_array_equal(values, want)
    np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize("rows", SUM_ROWS.values(), ids=SUM_ROWS.keys())
@WIDTH
def test_apply_sgd(rows, width):
    values, rows, grads = table_and_grads(rows, width)
    lr = np.float32(0.3)
    expected = values.copy()
    for i, r in enumerate(rows):
        if r >= 0:
            expected[r] -= lr * grads[i]
    want = values.copy()
    R.apply_sgd(values, rows, grads, lr)
    ref.apply_sgd(want, rows, grads, lr)
    np.testing.assert_array_equal(values, want)
    np.testing.assert_array_equal(values, expected)


@UNIQUE_ROWS
@WIDTH
def test_apply_adagrad(rows, width):
    values, rows, grads = table_and_grads(rows, width)
    accum = np.abs(np.random.default_rng(1).standard_normal(values.shape)).astype(np.float32)
    lr, eps = np.float32(0.1), np.float32(1e-8)
    want_values, want_accum = values.copy(), accum.copy()
    untouched = np.setdiff1d(np.arange(N_ROWS), rows)
    before = values[untouched].copy(), accum[untouched].copy()
    R.apply_adagrad(values, accum, rows, grads, lr, eps)
    ref.apply_adagrad(want_values, want_accum, rows, grads, lr, eps)
    np.testing.assert_allclose(accum, want_accum, rtol=1e-6)
    np.testing.assert_allclose(values, want_values, rtol=1e-6)
    np.testing.assert_array_equal(values[untouched], before[0])
    np.testing.assert_array_equal(accum[untouched], before[1])


def test_apply_adagrad_by_hand():
    values = np.array([[1.0, 2.0]], np.float32)
    accum = np.array([[3.0, 0.0]], np.float32)
    grads = np.array([[1.0, -2.0]], np.float32)
    R.apply_adagrad(values, accum, np.array([0]), grads, np.float32(0.5), np.float32(1e-8))
    np.testing.assert_allclose(accum, [[4.0, 4.0]], rtol=1e-6)
    # 1 - 0.5*1/2 = 0.75 ; 2 - 0.5*(-2)/2 = 2.5
    np.testing.assert_allclose(values, [[0.75, 2.5]], rtol=1e-6)


@pytest.mark.parametrize("rows", [[], [0], [5, -1, 11, -1, 3], [-1, -1], list(range(N_ROWS))[::-1]],
                         ids=["empty", "single", "with_absent", "all_absent", "all_reversed"])
@WIDTH
def test_scatter_rows_skips_absent_rows(rows, width):
    rows = np.array(rows, np.int64)
    src = np.arange(rows.size * width, dtype=np.float32).reshape(rows.size, width) + 1
    dst = np.full((N_ROWS, width), 9.0, np.float32)
    want = dst.copy()
    R.scatter_rows(src, dst, rows)
    ref.scatter_rows(src, want, rows)
    np.testing.assert_array_equal(dst, want)
    present = rows >= 0
    np.testing.assert_array_equal(dst[rows[present]], src[present])
    untouched = np.setdiff1d(np.arange(N_ROWS), rows[present])
    assert (dst[untouched] == 9.0).all()


# ====================================================================== non-finite detection

BIG = np.finfo(np.float32).max
TINY = np.finfo(np.float32).smallest_subnormal
# (values, expected first non-finite index, expected count)
NONFINITE_CASES = {
    "empty": ([], -1, 0),
    "finite_extremes": ([0.0, -0.0, BIG, -BIG, TINY, -TINY], -1, 0),
    "nan_first": ([np.nan, 1.0], 0, 1),
    "pos_inf_last": ([1.0, 2.0, np.inf], 2, 1),
    "neg_inf": ([1.0, -np.inf, 3.0], 1, 1),
    "several": ([1.0, np.inf, np.nan, 4.0, -np.inf], 1, 3),
}


@pytest.mark.parametrize("case", NONFINITE_CASES.values(), ids=NONFINITE_CASES.keys())
def test_nonfinite_detection(case):
    values, want_first, want_count = case
    flat = np.array(values, np.float32)
    assert R.first_nonfinite(flat) == ref.first_nonfinite(flat) == want_first
    assert R.count_nonfinite(flat) == ref.count_nonfinite(flat) == want_count
    wide = flat.astype(np.float64)  # first_nonfinite also takes float64
    assert R.first_nonfinite(wide) == want_first


def test_nonfinite_detection_random():
    flat = np.random.default_rng(RNG_SEED).standard_normal(10_000).astype(np.float32)
    assert R.count_nonfinite(flat) == 0 and R.first_nonfinite(flat) == -1
    flat[[4321, 9999]] = [np.nan, np.inf]
    assert R.first_nonfinite(flat) == ref.first_nonfinite(flat) == 4321
    assert R.count_nonfinite(flat) == ref.count_nonfinite(flat) == 2


# ================================================================================ placement

@settings(max_examples=200, deadline=None)
@given(keys=sorted_unique_u64(any_key), lo=any_key, hi=any_key, prev=any_key,
       has_prev=st.booleans(), hashed=st.booleans())
def test_placed_key_checks_match_the_reference(keys, lo, hi, prev, has_prev, hashed):
    args = (keys, np.uint64(min(lo, hi)), np.uint64(max(lo, hi)), np.uint64(prev), has_prev,
            hashed)
    want = ref.first_bad_placed(*args)
    assert P.first_bad_placed(*args) == want
    assert (P.count_bad_placed(*args) == 0) == (want == -1)


@settings(max_examples=100, deadline=None)
@given(keys=sorted_unique_u64(any_key), servers=st.sampled_from([1, 2, 3, 5, 7, 17, 18, 40]),
       hashed=st.booleans())
def test_split_by_owner_matches_the_reference(keys, servers, hashed):
    """Both ways of finding the owner: counting the cuts (up to P.FEW_CUTS) and searching."""
    cuts = np.array([(i * 2**64) // servers for i in range(1, servers)], np.uint64)
    order, counts = np.empty(keys.size, np.int64), np.zeros(servers, np.int64)
    P.split_by_owner(keys, cuts, hashed, order, counts)
    want_order, want_counts = ref.split_by_owner(keys, cuts, hashed)
    assert order.tolist() == want_order.tolist() and counts.tolist() == want_counts.tolist()


def test_mix_keys_matches_the_reference():
    out = np.empty(RANDOM_KEYS.size, np.uint64)
    P.mix_keys(RANDOM_KEYS, out)
    assert np.array_equal(out, ref.mix_keys(RANDOM_KEYS))
    assert np.unique(out).size == RANDOM_KEYS.size


@UNIQUE_ROWS
@WIDTH
def test_apply_ftrl_is_the_float32_reference_bit_for_bit(rows, width):
    values, rows, grads = table_and_grads(rows, width)
    rng = np.random.default_rng(2)
    z = rng.standard_normal(values.shape).astype(np.float32)
    n = np.abs(rng.standard_normal(values.shape)).astype(np.float32)
    params = [np.float32(p) for p in (0.1, 1.0, 0.5, 0.2)]
    want = values.copy(), z.copy(), n.copy()
    untouched = np.setdiff1d(np.arange(N_ROWS), rows)
    before = values[untouched].copy()
    R.apply_ftrl(values, z, n, rows, grads, *params)
    ref.apply_ftrl(*want, rows, grads, *params)
    for got, expected in zip((values, z, n), want):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(values[untouched], before)


def test_apply_ftrl_by_hand_keeps_small_z_at_exactly_zero():
    """alpha 1, beta 0, l1 1, l2 0, from w = z = n = 0: a gradient of 0.5 gives
    z = 0.5 <= l1 (w stays 0); a gradient of 3 gives z = 3, n = 9,
    w = -(3 - 1) / (sqrt(9) / 1) = -2/3."""
    values, z, n = (np.zeros((2, 1), np.float32) for _ in range(3))
    grads = np.array([[0.5], [3.0]], np.float32)
    f = np.float32
    R.apply_ftrl(values, z, n, np.array([0, 1]), grads, f(1), f(0), f(1), f(0))
    np.testing.assert_array_equal(z, [[0.5], [3.0]])
    np.testing.assert_array_equal(n, [[0.25], [9.0]])
    assert values[0, 0] == 0.0 and np.signbit(values[0, 0]) == np.False_
    np.testing.assert_allclose(values[1], [-2 / 3], rtol=1e-6)
