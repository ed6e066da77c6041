"""mpips.ml.dataset.SparseDataset: validation, take, split, shard, batches."""
import numpy as np
import pytest

from mpips.ml.dataset import SparseDataset


def small(n_rows=10):
    """Row i has features [i, i + 100] (row 3 has none) with values i and -i; label i % 2."""
    lengths = np.array([0 if i == 3 else 2 for i in range(n_rows)])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([[i, i + 100] for i in range(n_rows) if i != 3] or [[]])
    values = np.concatenate([[i, -i] for i in range(n_rows) if i != 3] or [[]])
    return SparseDataset(indptr, indices, values, np.arange(n_rows) % 2, 1000)


def row(data, i):
    lo, hi = data.indptr[i], data.indptr[i + 1]
    return data.indices[lo:hi].tolist(), data.values[lo:hi].tolist(), float(data.labels[i])


def test_dtypes_are_normalised():
    data = small()
    assert data.indptr.dtype == np.int64 and data.indices.dtype == np.uint64
    assert data.values.dtype == np.float32 and data.labels.dtype == np.float32
    assert (data.n_rows, data.nnz, len(data)) == (10, 18, 10)


@pytest.mark.parametrize("indptr,indices,match", [
    ([0, 2], [1, 2], "n_rows"),
    ([1, 2, 2], [1, 2], "start at 0"),
    ([0, 2, 1], [1, 2], "non-decreasing"),
    ([0, 1, 2], [1, 2, 3], "indptr\\[-1\\]"),
])
def test_inconsistent_arrays_are_rejected(indptr, indices, match):
    with pytest.raises(ValueError, match=match):
        SparseDataset(indptr, indices, np.ones(len(indices)), [0, 1], 10)


def test_take_any_order_with_repeats():
    data = small()
    taken = data.take([5, 3, 0, 5])
    assert [row(taken, i) for i in range(4)] == [row(data, 5), row(data, 3), row(data, 0),
                                                 row(data, 5)]
    assert data.take([]).n_rows == 0
    with pytest.raises(IndexError):
        data.take([10])


def test_split_is_seeded_disjoint_and_shuffled():
    data = small(100)
    train, test = data.split(0.2, seed=7)
    assert (train.n_rows, test.n_rows) == (80, 20)
    again_train, _ = data.split(0.2, seed=7)
    np.testing.assert_array_equal(train.indices, again_train.indices)
    first_feature = lambda d: {row(d, i)[0][0] for i in range(d.n_rows) if row(d, i)[0]}
    assert first_feature(train).isdisjoint(first_feature(test))
    assert len(first_feature(train) | first_feature(test)) == 99  # row 3 has no features
    order = [row(train, i)[0][0] for i in range(train.n_rows) if row(train, i)[0]]
    assert order != sorted(order)
    other_train, _ = data.split(0.2, seed=8)
    assert not np.array_equal(train.indices, other_train.indices)
    with pytest.raises(ValueError):
        data.split(1.0)


@pytest.mark.parametrize("n_rows,count", [(10, 3), (10, 10), (2, 3), (0, 2)])
def test_shards_cover_rows_in_order_with_sizes_differing_by_at_most_one(n_rows, count):
    data = small(n_rows) if n_rows else SparseDataset([0], [], [], [], 5)
    shards = [data.shard(i, count) for i in range(count)]
    sizes = [s.n_rows for s in shards]
    assert sum(sizes) == n_rows and max(sizes) - min(sizes) <= 1
    rebuilt = [row(s, i) for s in shards for i in range(s.n_rows)]
    assert rebuilt == [row(data, i) for i in range(n_rows)]
    with pytest.raises(ValueError):
        data.shard(count, count)


def test_batches_and_slices_copy_their_arrays():
    data = small()
    batches = data.batches(4)
    assert [b.n_rows for b in batches] == [2, 3, 2, 3]
    batches[0].values[:] = 99
    assert data.values[0] == 0  # no shared memory
    assert data.slice_rows(8, 20).n_rows == 2
