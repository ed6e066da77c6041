"""mpips.ml.lr: minibatch keys, predictions, and gradients checked by finite differences."""
import numpy as np
import pytest

from mpips.ml import lr, metrics
from mpips.ml.dataset import SparseDataset
from mpips.ml.synthetic import make_sparse_classification


def batch_of(seed=0, n_rows=40, key_space=None):
    data = make_sparse_classification(n_rows, 60, 6, seed=seed,
                                      key_space=key_space, signal=2.0)
    return data, lr.minibatch(data)


def objective(mb, weights, bias, l2):
    loss, _, _ = lr.loss_and_gradient(mb, weights, bias, l2)
    return loss + 0.5 * l2 * float(weights @ weights)


def test_minibatch_keys_are_the_sorted_unique_touched_features():
    data, mb = batch_of(key_space=2**64)
    assert mb.keys.dtype == np.uint64
    np.testing.assert_array_equal(mb.keys, np.unique(data.indices))
    np.testing.assert_array_equal(mb.keys[mb.columns], data.indices)
    assert mb.n_rows == data.n_rows


def test_predictions_match_a_dense_computation():
    data, mb = batch_of(seed=1)
    rng = np.random.default_rng(1)
    weights, bias = rng.standard_normal(mb.keys.size), 0.3
    dense = np.zeros((data.n_rows, data.n_features))
    for i in range(data.n_rows):
        lo, hi = data.indptr[i], data.indptr[i + 1]
        dense[i, data.indices[lo:hi].astype(np.int64)] = data.values[lo:hi]
    full = np.zeros(data.n_features)
    full[mb.keys.astype(np.int64)] = weights
    expected = 1 / (1 + np.exp(-(dense @ full + bias)))
    np.testing.assert_allclose(lr.predict(mb, weights, bias), expected, rtol=1e-12)
    np.testing.assert_allclose(lr.predict_dataset(data, mb.keys, weights, bias), expected,
                               rtol=1e-12)


@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_gradient_matches_finite_differences(l2):
    _, mb = batch_of(seed=2)
    rng = np.random.default_rng(2)
    weights, bias = 0.5 * rng.standard_normal(mb.keys.size), -0.2
    loss, grad_weights, grad_bias = lr.loss_and_gradient(mb, weights, bias, l2)
    assert loss == pytest.approx(metrics.logloss(mb.labels, lr.predict(mb, weights, bias)))
    h = 1e-6
    numeric = np.empty_like(weights)
    for k in range(weights.size):
        step = np.zeros_like(weights)
        step[k] = h
        numeric[k] = (objective(mb, weights + step, bias, l2)
                      - objective(mb, weights - step, bias, l2)) / (2 * h)
    np.testing.assert_allclose(grad_weights, numeric, rtol=1e-5, atol=1e-8)
    numeric_bias = (objective(mb, weights, bias + h, l2)
                    - objective(mb, weights, bias - h, l2)) / (2 * h)
    assert grad_bias == pytest.approx(numeric_bias, rel=1e-5, abs=1e-8)


def test_loss_is_stable_for_huge_logits():
    _, mb = batch_of(seed=3)
    loss, grad_weights, _ = lr.loss_and_gradient(mb, np.full(mb.keys.size, 1e4), 0.0)
    assert np.isfinite(loss) and np.all(np.isfinite(grad_weights)) and loss > 100


def test_gradient_descent_on_one_batch_lowers_the_loss():
    _, mb = batch_of(seed=4, n_rows=200)
    weights, bias = np.zeros(mb.keys.size), 0.0
    first, _, _ = lr.loss_and_gradient(mb, weights, bias)
    for _ in range(50):
        _, grad_weights, grad_bias = lr.loss_and_gradient(mb, weights, bias)
        weights, bias = weights - 1.0 * grad_weights, bias - 1.0 * grad_bias
    last, _, _ = lr.loss_and_gradient(mb, weights, bias)
    assert first == pytest.approx(np.log(2)) and last < 0.8 * first


def test_empty_batch_and_missing_model_keys():
    empty = lr.minibatch(SparseDataset([0], [], [], [], 10))
    loss, grad_weights, grad_bias = lr.loss_and_gradient(empty, np.zeros(0), 1.0, 0.5)
    assert (loss, grad_weights.size, grad_bias) == (0.0, 0, 0.0)
    data = SparseDataset([0, 2, 3], [1, 5, 7], [1.0, 2.0, 1.0], [1, 0], 10)
    p = lr.predict_dataset(data, np.array([5, 9], np.uint64), [0.5, 3.0], bias=0.0)
    np.testing.assert_allclose(p, lr.sigmoid(np.array([1.0, 0.0])))  # keys 1 and 7 weigh 0
    with pytest.raises(ValueError, match="2 weights for a minibatch of 3 keys"):
        lr.logits(lr.minibatch(data), [1.0, 2.0])
