"""Validation of user keys, values and output buffers (mpips.core.checks) before anything is sent."""
import warnings

import numpy as np
import pytest

from mpips.core.checks import as_keys, as_output, as_values
from mpips.errors import KeyOrderError, KeyRangeError, NonFiniteError, ValueShapeError
from mpips.core.partition import KEY_SPACE
from mpips.core.spec import TableSpec

MAX = KEY_SPACE - 1


def dense(size=100, width=1):
    return TableSpec("w", "dense", 0, 2, size=size, width=width)


def sparse(width=1):
    return TableSpec("emb", "sparse", 1, 2, width=width)


# ====================================================================================== as_keys

GOOD_KEYS = {
    "list": ([1, 5, 99], dense()),
    "empty_list": ([], dense()),
    "int64": (np.array([0, 7, 42], np.int64), dense()),
    "int32": (np.array([0, 7, 42], np.int32), dense()),
    "uint8": (np.array([3, 4], np.uint8), dense()),
    "uint64": (np.array([0, 99], np.uint64), dense()),
    "last_dense_key": ([99], dense()),
    "sparse_max_key": (np.array([0, 2**63, MAX], np.uint64), sparse()),
    "list_of_top_half_keys": ([2**63, MAX], sparse()),
    "strided_view": (np.arange(0, 20, dtype=np.uint64)[::2], dense()),
}


@pytest.mark.parametrize("case", GOOD_KEYS.values(), ids=GOOD_KEYS.keys())
def test_as_keys_accepts(case):
    keys, spec = case
    arr = as_keys(keys, spec)
    assert arr.dtype == np.uint64 and arr.ndim == 1 and arr.flags.c_contiguous
    assert arr.tolist() == [int(k) for k in np.asarray(keys).tolist()]


@pytest.mark.parametrize("keys", [[0, 2**63], [1, 2, MAX]])
def test_as_keys_accepts_python_ints_on_both_sides_of_2_to_63(keys):
    # np.asarray turns such a list into float64 (no integer dtype holds both 0 and 2**63 in
    # numpy's view); valid sparse keys must not be rejected as "not integers" nor rounded.
    assert as_keys(keys, sparse()).tolist() == keys


def test_as_keys_does_not_copy_good_uint64():
    keys = np.array([1, 2, 3], np.uint64)
    assert as_keys(keys, dense()) is keys


# (keys, spec, error type, message fragment)
BAD_KEYS = {
    "negative_list": ([3, -1, 5], dense(), KeyRangeError, "key -1 at position 1 is negative"),
    "negative_int64": (np.array([-5], np.int64), sparse(), KeyRangeError, "key -5 at position 0"),
    "float": (np.array([1.0, 2.0]), dense(), KeyRangeError, "must be integers.*float64"),
    "float_list": ([0.5], dense(), KeyRangeError, "must be integers"),
    "bool": (np.array([True]), dense(), KeyRangeError, "must be integers"),
    "two_d": (np.arange(6).reshape(2, 3), dense(), ValueShapeError, r"1-D, got shape \(2, 3\)"),
    "scalar": (5, dense(), ValueShapeError, "1-D"),
    "unsorted": ([1, 9, 4], dense(), KeyOrderError,
                 "key 4 at position 2 is smaller than the key before it"),
    "duplicate": ([1, 4, 4, 6], dense(), KeyOrderError, "key 4 at position 2 is duplicated"),
    "duplicate_max": (np.array([MAX, MAX], np.uint64), sparse(), KeyOrderError,
                      f"key {MAX} at position 1 is duplicated"),
    "dense_out_of_range": ([5, 100], dense(), KeyRangeError,
                           "key 100 at position 1 is out of range.*0..99"),
    "dense_far_out_of_range": (np.array([MAX], np.uint64), dense(), KeyRangeError,
                               f"key {MAX} at position 0 is out of range"),
}


@pytest.mark.parametrize("case", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_as_keys_rejects(case):
    keys, spec, error, pattern = case
    with pytest.raises(error, match=pattern) as info:
        as_keys(keys, spec)
    assert repr(spec.name) in str(info.value)  # errors name the table
    assert isinstance(info.value, ValueError)


def test_as_keys_reports_the_first_bad_position_in_a_long_list():
    keys = np.arange(10_000, dtype=np.uint64)
    keys[6543] = keys[6542]
    with pytest.raises(KeyOrderError, match="position 6543"):
        as_keys(keys, sparse())


def test_as_keys_without_order_check():
    arr = as_keys([5, 1, 1], dense(), check_order=False)
    assert arr.dtype == np.uint64 and arr.tolist() == [5, 1, 1]
    with pytest.raises(KeyRangeError):  # type checks still apply
        as_keys([-1], dense(), check_order=False)
    with pytest.raises(ValueShapeError):
        as_keys([[1]], dense(), check_order=False)


# ==================================================================================== as_values

@pytest.mark.parametrize("vals, num_keys, width", [
    ([1.0, 2.0, 3.0], 3, 1),                        # (n,) for width 1
    (np.ones((3, 1)), 3, 1),                        # (n, 1) for width 1
    (np.arange(12, dtype=np.float64).reshape(4, 3), 4, 3),
    (np.arange(6, dtype=np.int32).reshape(2, 3), 2, 3),
    ([], 0, 1),
    (np.empty((0, 4)), 0, 4),
    (np.full((2, 2), np.finfo(np.float32).max), 2, 2),
])
def test_as_values_accepts(vals, num_keys, width):
    arr = as_values(vals, num_keys, dense(width=width))
    assert arr.dtype == np.float32 and arr.shape == (num_keys, width) and arr.flags.c_contiguous
    np.testing.assert_array_equal(arr.reshape(-1), np.asarray(vals, np.float32).reshape(-1))


def test_as_values_accepts_fortran_order():
    vals = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(3, 2))
    arr = as_values(vals, 3, dense(width=2))
    assert arr.flags.c_contiguous
    np.testing.assert_array_equal(arr, vals)


BAD_SHAPES = {
    "too_few_rows": (np.zeros(2), 3, 1),
    "too_many_rows": (np.zeros((4, 1)), 3, 1),
    "flat_for_width_2": (np.zeros(6), 3, 2),
    "wrong_width": (np.zeros((3, 3)), 3, 2),
    "transposed": (np.zeros((2, 3)), 3, 2),
    "three_d": (np.zeros((3, 2, 1)), 3, 2),
    "scalar": (1.0, 1, 1),
}


@pytest.mark.parametrize("case", BAD_SHAPES.values(), ids=BAD_SHAPES.keys())
def test_as_values_rejects_shapes(case):
    vals, num_keys, width = case
    with pytest.raises(ValueShapeError, match=rf"expected \({num_keys}, {width}\)"):
        as_values(vals, num_keys, dense(width=width))


@pytest.mark.parametrize("vals", [np.array(["a"]), np.array([1 + 2j]), np.array([True])],
                         ids=["str", "complex", "bool"])
def test_as_values_rejects_non_numbers(vals):
    with pytest.raises(ValueShapeError, match="must be numbers"):
        as_values(vals, 1, dense())


@pytest.mark.parametrize("bad, index", [(np.nan, 0), (np.inf, 5), (-np.inf, 3)])
def test_as_values_rejects_non_finite(bad, index):
    vals = np.ones((3, 2), np.float32)
    vals.reshape(-1)[index] = bad
    with pytest.raises(NonFiniteError, match=f"key position {index // 2}; nothing was applied"):
        as_values(vals, 3, dense(width=2))


@pytest.mark.parametrize("big", [1e39, -1e300, np.finfo(np.float64).max])
def test_as_values_rejects_float64_that_overflows_float32(big):
    vals = np.array([1.0, big, 2.0])  # finite in float64, inf once stored as float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "overflow in cast"
        with pytest.raises(NonFiniteError, match="key position 1"):
            as_values(vals, 3, dense())


# ==================================================================================== as_output

def test_as_output_allocates_when_none():
    out = as_output(None, 4, dense(width=3))
    assert out.dtype == np.float32 and out.shape == (4, 3) and out.flags.c_contiguous


@pytest.mark.parametrize("shape", [(4, 3), (12,), (3, 4)])
def test_as_output_reuses_a_buffer_of_the_right_size(shape):
    buf = np.zeros(shape, np.float32)
    out = as_output(buf, 4, dense(width=3))
    assert out.shape == (4, 3) and np.shares_memory(out, buf)
    out[:] = 7.0
    assert (buf == 7.0).all()  # pulled values land in the caller's buffer


BAD_OUTPUTS = {
    "float64": np.zeros((4, 3)),
    "wrong_size": np.zeros((4, 2), np.float32),
    "non_contiguous": np.zeros((4, 6), np.float32)[:, ::2],
    "fortran": np.asfortranarray(np.zeros((4, 3), np.float32)),
    "list": [[0.0] * 3] * 4,
}


@pytest.mark.parametrize("out", BAD_OUTPUTS.values(), ids=BAD_OUTPUTS.keys())
def test_as_output_rejects(out):
    with pytest.raises(ValueShapeError, match="C-contiguous float32 array of 12 values"):
        as_output(out, 4, dense(width=3))
