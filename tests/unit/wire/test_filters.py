"""mpips.wire.filters: what each push filter sends, the no-loss property of the residual filter,
stats, input checks and the registry."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpips.errors import KeyOrderError, KeyRangeError, NonFiniteError, ValueShapeError
from mpips.wire.filters import (FILTERS, KKTFilter, PushFilter, RandomSkip, SignificantlyModified,
                                make_filter, register_filter)
from tests.helpers.keys import MAX, f32, u64


def accumulate(total, keys, vals):
    vals = np.asarray(vals, np.float64)
    for k, v in zip(keys.tolist(), vals.reshape(len(keys), -1) if keys.size else []):
        total[k] = total[k] + v


# ===================================================================== significantly modified

def test_significantly_modified_sends_once_the_sum_exceeds_delta():
    f = SignificantlyModified(delta=1.0)
    keys, sent = f.apply(u64([1, 2, MAX]), f32([0.6, 2.0, -0.4]))
    assert keys.tolist() == [2] and sent.tolist() == [2.0]
    keys, sent = f.apply(u64([1, MAX]), f32([0.6, -0.4]))  # 1 reaches 1.2; MAX only -0.8
    assert keys.tolist() == [1] and sent.tolist() == [pytest.approx(1.2)]
    res_keys, res = f.residual()
    assert res_keys.tolist() == [MAX] and res[:, 0].tolist() == [pytest.approx(-0.8)]
    assert f.stats == {"seen": 5, "sent": 2, "bytes_saved": 3 * 12}
    keys, rows = f.flush()
    assert keys.tolist() == [MAX] and f.residual()[0].size == 0


def test_significantly_modified_cancelling_pushes_leave_no_residual():
    f = SignificantlyModified(delta=5)
    f.apply(u64([7]), f32([[1, -2]]))
    keys, rows = f.apply(u64([7]), f32([[-1, 2]]))
    assert keys.size == 0 and rows.shape == (0, 2) and f.residual()[0].size == 0


def test_significantly_modified_delta_zero_sends_every_change():
    f = SignificantlyModified()
    keys, rows = f.apply(u64([0, 1, 2]), f32([[0, 0], [0, 1e-30], [-3, 0]]))
    assert keys.tolist() == [1, 2] and rows.shape == (2, 2)


def test_significantly_modified_edge_inputs():
    f = SignificantlyModified(delta=0.5)
    keys, rows = f.apply(u64([]), f32([]))
    assert keys.size == 0 and rows.shape == (0,)
    keys, rows = f.apply(u64([MAX]), f32([[1.0, 0.0, 0.0]]))  # single max key, width 3
    assert keys.tolist() == [MAX] and rows.shape == (1, 3)
    f.apply(u64([5]), f32([[0.1, 0.0, 0.0]]))  # leaves a residual of width 3
    with pytest.raises(ValueShapeError, match="width 3"):
        f.apply(u64([1]), f32([[1.0]]))
    with pytest.raises(KeyOrderError):
        f.apply(u64([4, 4]), f32([[1, 0, 0], [1, 0, 0]]))  # duplicate key


@settings(deadline=None, max_examples=100)
@given(st.floats(0, 3), st.integers(1, 3), st.integers(0, 2**32),
       st.lists(st.integers(0, 40), min_size=1, max_size=12))
def test_significantly_modified_loses_nothing(delta, width, seed, sizes):
    """Everything sent plus the final residual equals everything pushed, key by key."""
    rng = np.random.default_rng(seed)
    f = SignificantlyModified(delta=delta)
    pushed, sent = defaultdict(lambda: np.zeros(width)), defaultdict(lambda: np.zeros(width))
    for size in sizes:
        keys = np.unique(rng.integers(0, 60, size)).astype(np.uint64)
        vals = rng.integers(-8, 9, (keys.size, width)).astype(np.float32) / 4  # exact sums
        accumulate(pushed, keys, vals)
        out_keys, out_vals = f.apply(keys, vals)
        assert (np.abs(out_vals).max(axis=1) > delta).all()
        accumulate(sent, out_keys, out_vals)
    res_keys, res = f.residual()
    assert (np.abs(res).max(axis=1, initial=0) <= delta).all()
    accumulate(sent, *f.flush())
    for key, total in pushed.items():
        np.testing.assert_array_equal(sent[key], total)
    assert f.stats["seen"] >= f.stats["sent"]


def test_significantly_modified_float_sums_within_tolerance():
    rng = np.random.default_rng(5)
    f = SignificantlyModified(delta=0.7)
    pushed, sent = defaultdict(lambda: np.zeros(1)), defaultdict(lambda: np.zeros(1))
    for _ in range(200):
        keys = np.unique(rng.integers(0, 2**64 - 1, 50, dtype=np.uint64, endpoint=True)
                         % np.uint64(97))
        vals = rng.standard_normal(keys.size).astype(np.float32) * 0.2
        accumulate(pushed, keys, vals)
        accumulate(sent, *f.apply(keys, vals))
    accumulate(sent, *f.flush())
    for key, total in pushed.items():
        np.testing.assert_allclose(sent[key], total, atol=1e-4)
    assert f.stats["sent"] < f.stats["seen"] / 2


# ========================================================================================= kkt

def test_kkt_skips_zero_weights_with_small_gradients():
    f = KKTFilter(lam=0.5)
    keys = u64([0, 1, 2, 3, MAX])
    grads = f32([0.2, 0.2, 0.9, -0.5, -0.6])
    weights = f32([0.0, 0.1, 0.0, 0.0, 0.0])
    out_keys, out_grads = f.apply(keys, grads, weights=weights)
    # 0: w=0, |g| <= lam: skip; 1: w != 0: keep; 2: |g| > lam: keep; 3: |g| == lam: skip
    assert out_keys.tolist() == [1, 2, MAX]
    assert out_grads.tolist() == pytest.approx([0.2, 0.9, -0.6])
    assert f.stats == {"seen": 5, "sent": 3, "bytes_saved": 24}


def test_kkt_rows_skipped_only_when_every_coordinate_is():
    f = KKTFilter(lam=1.0)
    out_keys, out = f.apply(u64([1, 2]), f32([[0.5, 0.5], [0.5, 3.0]]),
                            weights=f32([[0, 0], [0, 0]]))
    assert out_keys.tolist() == [2] and out.shape == (1, 2)


def test_kkt_needs_matching_weights():
    f = KKTFilter(lam=1.0)
    with pytest.raises(ValueError, match="weights"):
        f.apply(u64([1]), f32([1.0]))
    with pytest.raises(ValueShapeError):
        f.apply(u64([1, 2]), f32([1.0, 2.0]), weights=f32([0.0]))
    keys, vals = f.apply(u64([]), f32([]), weights=f32([]))
    assert keys.size == 0


# ================================================================================= random skip

def test_random_skip_drops_about_p_and_is_seeded():
    keys = np.arange(20_000, dtype=np.uint64)
    vals = np.ones(keys.size, np.float32)
    a = RandomSkip(p=0.3, seed=4).apply(keys, vals)
    b = RandomSkip(p=0.3, seed=4).apply(keys, vals)
    np.testing.assert_array_equal(a[0], b[0])
    assert abs(a[0].size / keys.size - 0.7) < 0.02
    assert (a[1] == 1).all() and np.isin(a[0], keys).all()


def test_random_skip_rescale_keeps_the_expectation():
    keys = np.arange(50_000, dtype=np.uint64)
    vals = np.full((keys.size, 2), 2.0, np.float32)
    f = RandomSkip(p=0.75, seed=1, rescale=True)
    out_keys, out = f.apply(keys, vals)
    assert np.allclose(out, 8.0)
    assert abs(out.sum() / vals.sum() - 1) < 0.03
    assert f.stats["seen"] == keys.size and f.stats["sent"] == out_keys.size
    assert f.stats["bytes_saved"] == (keys.size - out_keys.size) * 16


def test_random_skip_edges():
    assert RandomSkip(p=0.0).apply(u64([MAX]), f32([1.0]))[0].tolist() == [MAX]
    assert RandomSkip(p=0.5).apply(u64([]), f32([]))[0].size == 0
    for p in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="p must be"):
            RandomSkip(p=p)


# ======================================================================== input and registry

@pytest.mark.parametrize("keys, vals, error", [
    ([3, 2], [1.0, 1.0], KeyOrderError), ([2, 2], [1.0, 1.0], KeyOrderError),
    ([-1], [1.0], KeyRangeError), ([0.5], [1.0], KeyRangeError),
    ([1, 2], [1.0], ValueShapeError), ([1], [[[1.0]]], ValueShapeError),
    ([1], [1], ValueShapeError), ([1], [np.nan], NonFiniteError),
])
@pytest.mark.parametrize("name", ["significantly_modified", "random_skip"])
def test_filters_reject_bad_pushes(name, keys, vals, error):
    with pytest.raises(error):
        make_filter(name).apply(np.array(keys), np.array(vals))


def test_registry():
    assert set(FILTERS) == {"significantly_modified", "kkt", "random_skip"}
    f = make_filter("kkt", lam=0.1)
    assert isinstance(f, KKTFilter) and f.describe() == {"filter": "kkt", "lam": 0.1}
    assert make_filter("random_skip", p=0.2, rescale=True).describe()["rescale"] is True
    with pytest.raises(ValueError, match="unknown push filter 'nope'; known: kkt"):
        make_filter("nope")
    with pytest.raises(ValueError, match="random_skip"):
        make_filter("random_skip", q=1)
    with pytest.raises(ValueError, match="delta"):
        make_filter("significantly_modified", delta=-1)


def test_register_user_filter():
    class EveryOther(PushFilter):
        name = "every_other_test"

        def _keep(self, keys, rows):
            return np.arange(keys.size) % 2 == 0

    try:
        register_filter(EveryOther)
        keys, vals = make_filter("every_other_test").apply(u64([1, 2, 3]), f32([1, 2, 3]))
        assert keys.tolist() == [1, 3]
        with pytest.raises(ValueError, match="taken"):
            register_filter(EveryOther)
    finally:
        FILTERS.pop("every_other_test", None)
