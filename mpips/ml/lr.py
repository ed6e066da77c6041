"""Sparse logistic regression math on CSR minibatches: what a worker does between its pull and
its push. Pure module (NumPy).

    batch = minibatch(rows)                       # rows: a SparseDataset
    weights = kv.wait(kv.pull(w, batch.keys))     # weights of exactly the touched keys
    loss, grad_w, grad_b = loss_and_gradient(batch, weights, bias, l2)
    kv.wait(kv.push(w, batch.keys, grad_w.astype(np.float32)))

The model is ``P(y = 1 | x) = sigmoid(x . w + b)``. The minibatch objective is the mean
logloss over its rows plus ``l2 / 2 * |w_K|^2`` where ``K`` are the keys the batch touches
(the usual lazy L2 of sparse SGD: untouched weights are not decayed); the intercept ``b`` is
not regularised.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import SparseDataset


@dataclass(frozen=True, eq=False)
class Minibatch:
    """A CSR minibatch re-indexed onto the sorted unique keys it touches.

    ``keys``: uint64, strictly increasing (ready to pull/push). Per stored entry:
    ``columns`` (its key's position in ``keys``), ``rows`` (its row in the batch) and
    ``values``. Per row: ``labels`` (0/1).
    """

    keys: np.ndarray
    columns: np.ndarray
    rows: np.ndarray
    values: np.ndarray
    labels: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.labels.size)


def minibatch(batch: SparseDataset) -> Minibatch:
    """Index ``batch`` by the sorted unique feature keys it touches."""
    keys, columns = np.unique(batch.indices, return_inverse=True)
    rows = np.repeat(np.arange(batch.n_rows, dtype=np.int64), batch.row_lengths())
    return Minibatch(keys.astype(np.uint64), columns.astype(np.int64).reshape(-1), rows,
                     batch.values.astype(np.float64), batch.labels.astype(np.float64))


def logits(batch: Minibatch, weights, bias: float = 0.0) -> np.ndarray:
    """``x . w + b`` for every row; ``weights[i]`` is the weight of ``batch.keys[i]``."""
    weights = _aligned(batch, weights)
    contributions = batch.values * weights[batch.columns]
    return np.bincount(batch.rows, contributions, minlength=batch.n_rows) + float(bias)


def predict(batch: Minibatch, weights, bias: float = 0.0) -> np.ndarray:
    """P(y = 1) for every row."""
    return sigmoid(logits(batch, weights, bias))


def loss_and_gradient(batch: Minibatch, weights, bias: float = 0.0,
                      l2: float = 0.0) -> tuple[float, np.ndarray, float]:
    """(mean logloss, d objective / d weights, d objective / d bias) for the minibatch.

    objective = mean logloss + ``l2 / 2 * sum(weights ** 2)``. The returned loss is the
    plain mean logloss (what training curves show); the gradients are those of the whole
    objective, the weight gradient float64 and aligned with ``batch.keys``. A batch of no
    rows has loss and gradient 0.
    """
    weights = _aligned(batch, weights)
    if batch.n_rows == 0:
        return 0.0, l2 * weights, 0.0
    z = logits(batch, weights, bias)
    # logloss = log(1 + exp(-z)) for y = 1 and log(1 + exp(z)) for y = 0, computed stably
    loss = float(np.mean(np.logaddexp(0.0, np.where(batch.labels > 0.5, -z, z))))
    residual = (sigmoid(z) - batch.labels) / batch.n_rows
    grad_weights = np.bincount(batch.columns, batch.values * residual[batch.rows],
                               minlength=batch.keys.size) + l2 * weights
    return loss, grad_weights, float(residual.sum())


def predict_dataset(dataset: SparseDataset, model_keys, model_weights,
                    bias: float = 0.0) -> np.ndarray:
    """P(y = 1) for every row of ``dataset`` under a model given as sorted unique
    ``model_keys`` with weights ``model_weights``; features missing from the model weigh 0."""
    model_keys = np.asarray(model_keys, dtype=np.uint64)
    model_weights = np.asarray(model_weights, dtype=np.float64).reshape(-1)
    if model_keys.shape != model_weights.shape:
        raise ValueError(f"{model_keys.size} model keys but {model_weights.size} weights")
    weights = np.zeros(dataset.nnz, np.float64)
    if model_keys.size:
        position = np.minimum(np.searchsorted(model_keys, dataset.indices), model_keys.size - 1)
        found = model_keys[position] == dataset.indices
        weights[found] = model_weights[position[found]]
    rows = np.repeat(np.arange(dataset.n_rows), dataset.row_lengths())
    z = np.bincount(rows, dataset.values * weights, minlength=dataset.n_rows) + float(bias)
    return sigmoid(z)


def sigmoid(z) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def _aligned(batch: Minibatch, weights) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weights.size != batch.keys.size:
        raise ValueError(f"got {weights.size} weights for a minibatch of {batch.keys.size} keys")
    return weights
