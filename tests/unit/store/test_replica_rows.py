"""Slices read and overwrite packed rows (values, then optimizer state) for replica batches."""
import numpy as np
import pytest

from mpips.errors import MessageError
from mpips.core.partition import positions
from mpips.core.spec import TableSpec
from mpips.store.dense_slice import DenseSlice
from mpips.store.sparse_slice import SparseSlice


def adagrad(kind, **kw):
    return TableSpec("t", kind, 0, 2, width=2, rule="adagrad", rule_params={"lr": 0.1}, **kw)


def segment_0(candidates) -> np.ndarray:
    """The candidate keys whose hashed position lies in segment 0 of 2 (the lower half)."""
    keys = np.array(candidates, np.uint64)
    return keys[positions(keys, True) < np.uint64(2**63)]


def same_rows(a: SparseSlice, b: SparseSlice) -> bool:
    keys, rows = a.stored()
    other_keys, other_rows = b.stored()
    return np.array_equal(keys, other_keys) and np.array_equal(rows, other_rows) and \
        np.array_equal(a.packed_at(rows), b.packed_at(other_rows))


def batch(table, keys):
    """A replica batch of ``keys``: (keys, their rows on ``table``, packed rows)."""
    rows = table.rows_of(keys)
    return keys, rows, table.packed_at(rows)


def test_sparse_rows_round_trip_into_an_empty_copy_and_over_stored_rows():
    primary, copy = SparseSlice(adagrad("sparse"), 0), SparseSlice(adagrad("sparse"), 0)
    mine = segment_0(range(3, 400))
    keys = mine[[0, 3, -1]]
    primary.push_whole(keys, np.arange(6, dtype=np.float32).reshape(3, 2))
    whole = batch(primary, keys)
    assert whole[2].shape == (3, 4)  # width 2 x (values, accum)
    copy.put_rows_at(*whole)
    copy.put_rows_at(*whole)  # applying a batch twice changes nothing
    assert same_rows(copy, primary)
    primary.push_whole(keys[1:], np.ones((2, 2), np.float32))
    newer = np.array([mine[1], keys[1]], np.uint64)  # one new key, one stored
    primary.push_whole(newer[:1], np.ones((1, 2), np.float32))
    changed = np.sort(np.array([mine[1], keys[1], keys[2]], np.uint64))
    copy.put_rows_at(*batch(primary, changed))
    assert same_rows(copy, primary) and copy.num_stored == 4


def test_a_sparse_copy_refuses_rows_that_skip_or_reuse_row_numbers():
    primary, copy = SparseSlice(adagrad("sparse"), 0), SparseSlice(adagrad("sparse"), 0)
    keys = segment_0(range(3, 400))[:4]
    primary.push_whole(keys, np.ones((4, 2), np.float32))
    k, rows, packed = batch(primary, keys)
    with pytest.raises(MessageError, match="new rows 1..3 do not follow the 0 stored"):
        copy.put_rows_at(k[1:], rows[1:], packed[1:])  # row 0 never arrived
    copy.put_rows_at(k[:2], rows[:2], packed[:2])
    with pytest.raises(MessageError, match="a new row for a key stored already"):
        copy.put_rows_at(k[1:2], np.array([2]), packed[1:2])


def test_sparse_rows_of_keys_placed_on_another_server_are_refused():
    copy = SparseSlice(adagrad("sparse"), 0)
    elsewhere = np.setdiff1d(np.arange(3, 60, dtype=np.uint64), segment_0(range(3, 60)))[:2]
    with pytest.raises(MessageError, match="hashed position"):
        copy.put_rows_at(elsewhere, np.arange(2), np.zeros((2, 4), np.float32))


def test_dense_copy_lives_in_plain_memory_and_takes_rows_by_key():
    spec = adagrad("dense", size=10)
    copy = DenseSlice(spec, 1, None)  # keys [5, 10)
    assert copy.win is None and copy.values.shape == (5, 2)
    copy.put_rows_at(np.array([6, 9], np.uint64), np.array([1, 4]), np.full((2, 4), 2.0,
                                                                             np.float32))
    assert copy.values[[1, 4]].tolist() == [[2.0, 2.0]] * 2
    assert np.array_equal(copy.packed_at(copy.rows_of(np.array([6], np.uint64))),
                          np.full((1, 4), 2.0))
    assert copy.stored()[0].tolist() == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("keys", [[4], [6, 6], [8, 7], [10]])
def test_rows_of_keys_outside_the_segment_or_unsorted_are_refused(keys):
    copy = DenseSlice(adagrad("dense", size=10), 1, None)
    with pytest.raises(MessageError):
        copy.put_rows_at(np.array(keys, np.uint64), np.arange(len(keys)),
                         np.zeros((len(keys), 4), np.float32))


def test_a_restore_that_skipped_every_checkpoint_resets_slices_to_new_tables():
    """mpips.ckpt.restore._reset_slice: what a skipped (corrupt) checkpoint loaded is gone."""
    from mpips.ckpt.restore import _reset_slice

    sparse = SparseSlice(adagrad("sparse"), 0)
    keys = segment_0(range(3, 400))[:5]
    sparse.push_whole(keys, np.ones((keys.size, 2), np.float32))
    _reset_slice(sparse)
    assert sparse.num_stored == 0 and sparse.stored()[0].size == 0
    sparse.push_whole(keys[:1], np.ones((1, 2), np.float32))  # and it still takes pushes
    assert sparse.num_stored == 1
