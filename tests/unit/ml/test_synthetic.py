"""mpips.ml.synthetic: determinism, shape of the data, hashed keys, learnability."""
import importlib

import numpy as np
import pytest

from mpips.ml import lr, metrics
from mpips.ml.synthetic import make_sparse_classification, make_sparse_problem, mix_keys


def test_same_seed_same_data_other_seed_other_data():
    a = make_sparse_classification(2000, 5000, 10, seed=11)
    b = make_sparse_classification(2000, 5000, 10, seed=11)
    c = make_sparse_classification(2000, 5000, 10, seed=12)
    for field in ("indptr", "indices", "values", "labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.indices, c.indices)


def test_rows_are_sorted_unique_and_frequencies_follow_a_power_law():
    data = make_sparse_classification(20_000, 10_000, 20, seed=1)
    assert data.n_features == 10_000 and data.indices.max() < 10_000
    lengths = data.row_lengths()
    assert lengths.min() >= 1 and lengths.max() <= 20
    for i in range(0, data.n_rows, 997):
        ids = data.indices[data.indptr[i]:data.indptr[i + 1]]
        assert np.all(ids[1:] > ids[:-1])
    counts = np.sort(np.bincount(data.indices.astype(np.int64), minlength=10_000))[::-1]
    assert counts[0] > 50 * counts[100] > 0  # a heavy head ...
    assert (counts == 0).sum() > 300  # ... and a long tail of features never drawn
    assert 0.3 < data.labels.mean() < 0.7  # the centred logit keeps the classes balanced


def test_planted_model_is_sparse_and_labels_follow_it():
    problem = make_sparse_problem(20_000, 5000, 20, seed=2)
    assert 0.1 < np.mean(problem.weights != 0) < 0.3
    data = problem.dataset
    p = lr.predict_dataset(data, problem.feature_keys, problem.weights, problem.bias)
    planted_logloss = metrics.logloss(data.labels, p)
    assert planted_logloss < 0.75 * np.log(2)  # the truth explains the labels well
    assert metrics.accuracy(data.labels, p) > 0.8


def test_hashed_keys_are_big_unique_and_keep_the_labels():
    plain = make_sparse_problem(3000, 4000, 10, seed=5)
    hashed = make_sparse_problem(3000, 4000, 10, seed=5, key_space=2**64)
    keys = hashed.feature_keys
    assert np.unique(keys).size == 4000 and keys.max() > 2**60
    assert hashed.dataset.n_features == 2**64
    np.testing.assert_array_equal(hashed.dataset.labels, plain.dataset.labels)
    np.testing.assert_array_equal(hashed.dataset.indptr, plain.dataset.indptr)
    np.testing.assert_array_equal(np.sort(hashed.dataset.indices),
                                  np.sort(keys[plain.dataset.indices.astype(np.int64)]))
    with pytest.raises(ValueError, match="power of two"):
        make_sparse_problem(10, 4000, 5, key_space=2**11)


@pytest.mark.parametrize("bits", [1, 5, 16])
def test_mix_keys_is_a_bijection_of_small_key_spaces(bits):
    everything = np.arange(2**bits, dtype=np.uint64)
    np.testing.assert_array_equal(np.sort(mix_keys(everything, bits)), everything)


def test_logistic_regression_beats_the_majority_baseline():
    linear_model = importlib.import_module("sklearn.linear_model")
    sparse = importlib.import_module("scipy.sparse")
    train, test = make_sparse_classification(20_000, 10_000, 20, seed=0).split(0.2, seed=0)

    def matrix(d):
        entries = (d.values.astype(np.float64), d.indices.astype(np.int64), d.indptr)
        return sparse.csr_matrix(entries, shape=(d.n_rows, d.n_features))

    model = linear_model.LogisticRegression(max_iter=500).fit(matrix(train), train.labels)
    p = model.predict_proba(matrix(test))[:, 1]
    baseline = metrics.majority_baseline(test.labels, train.labels)
    assert baseline < 0.6
    assert metrics.accuracy(test.labels, p) >= 0.75
    assert metrics.auc(test.labels, p) > 0.8


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        make_sparse_classification(10, 0, 5)
    with pytest.raises(ValueError):
        make_sparse_classification(10, 100, 5, informative_fraction=1.5)
