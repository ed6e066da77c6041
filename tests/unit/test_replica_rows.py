"""Slices read and overwrite packed rows (values, then optimizer state) for replica batches."""
import numpy as np
import pytest

from mpips.errors import MessageError
from mpips.spec import TableSpec
from mpips.store import DenseSlice, SparseSlice


def adagrad(kind, **kw):
    return TableSpec("t", kind, 0, 2, width=2, rule="adagrad", rule_params={"lr": 0.1}, **kw)


def test_sparse_rows_round_trip_into_an_empty_copy_and_over_stored_rows():
    primary, copy = SparseSlice(adagrad("sparse"), 0), SparseSlice(adagrad("sparse"), 0)
    keys = np.array([3, 10, 2**40], np.uint64)
    primary.push_whole(keys, np.arange(6, dtype=np.float32).reshape(3, 2))
    packed = primary.read_rows(keys)
    assert packed.shape == (3, 4)  # width 2 x (values, accum)
    copy.put_rows(keys, packed)
    copy.put_rows(keys, packed)  # applying a batch twice changes nothing
    assert np.array_equal(copy.keys, primary.keys)
    assert np.array_equal(copy.values, primary.values)
    assert np.array_equal(copy.state["accum"], primary.state["accum"])
    primary.push_whole(keys[1:], np.ones((2, 2), np.float32))
    newer = np.array([7, 10], np.uint64)  # one new key, one stored
    primary.push_whole(newer[:1], np.ones((1, 2), np.float32))
    copy.put_rows(np.array([7, 10, 2**40], np.uint64),
                  primary.read_rows(np.array([7, 10, 2**40], np.uint64)))
    assert np.array_equal(copy.keys, primary.keys)
    assert np.array_equal(copy.values, primary.values)
    assert np.array_equal(copy.state["accum"], primary.state["accum"])


def test_dense_copy_lives_in_plain_memory_and_takes_rows_by_key():
    spec = adagrad("dense", size=10)
    copy = DenseSlice(spec, 1, None)  # keys [5, 10)
    assert copy.win is None and copy.values.shape == (5, 2)
    copy.put_rows(np.array([6, 9], np.uint64), np.full((2, 4), 2.0, np.float32))
    assert copy.values[[1, 4]].tolist() == [[2.0, 2.0]] * 2
    assert np.array_equal(copy.read_rows(np.array([6], np.uint64)), np.full((1, 4), 2.0))
    assert copy.stored_keys().tolist() == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("keys", [[4], [6, 6], [8, 7], [10]])
def test_rows_of_keys_outside_the_segment_or_unsorted_are_refused(keys):
    copy = DenseSlice(adagrad("dense", size=10), 1, None)
    with pytest.raises(MessageError):
        copy.put_rows(np.array(keys, np.uint64), np.zeros((len(keys), 4), np.float32))
