"""Matrix factorization math on minibatches of ratings: what an mf worker does between its
pulls and its pushes. Pure module (NumPy; kernels in mpips.kernels.factors).

    batch = minibatch(ratings)                                 # a RatingSet
    users = kv.wait(kv.pull(user_table, batch.user_keys)) + initial_rows(batch.user_keys, ...)
    items = ...
    sse, user_grads, item_grads = gradients(batch, users, items, mu, reg)   # rule sgd/adagrad
    kv.push(user_table, batch.user_keys, user_grads); kv.push(item_table, ...)
    # or: sse, user_changes, item_changes = sequential_sgd(batch, users, items, mu, lr, reg)
    #     pushed to tables with rule "sum"

The model is the biased SVD of Funk and Koren (what scikit-surprise's ``SVD`` fits): a rating
is predicted as ``mu + b_u + b_i + p_u . q_i``, ``mu`` the training ratings' mean. A table row
holds ``rank`` factors and the bias. Factors start at small random values, which a parameter
server's rows (all ``init`` until pushed) cannot hold, so a table stores each row's change
from its starting value, ``initial_rows(keys)``: a fixed function of the key and the seed,
the same on every rank and in every launch. A row is therefore ``initial_rows(key) +
stored``; with an SGD rule on the servers, pushing the gradient moves it exactly as SGD on
the row itself would.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import factors as kernels
from ..kernels.starting_rows import normal_rows
from .ratings import RatingSet


@dataclass(frozen=True, eq=False)
class Minibatch:
    """Ratings re-indexed onto the sorted unique user and item keys they touch (ready to pull
    and push): ``users``/``items`` are positions in ``user_keys``/``item_keys``."""

    user_keys: np.ndarray
    item_keys: np.ndarray
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray

    @property
    def n(self) -> int:
        return int(self.ratings.size)


def minibatch(ratings: RatingSet) -> Minibatch:
    user_keys, users = np.unique(ratings.users, return_inverse=True)
    item_keys, items = np.unique(ratings.items, return_inverse=True)
    return Minibatch(user_keys, item_keys, users.astype(np.int64), items.astype(np.int64),
                     ratings.ratings)


def initial_rows(keys: np.ndarray, rank: int, std: float, seed: int) -> np.ndarray:
    """The starting rows of ``keys``: ``rank`` factors of mean 0 and standard deviation
    ``std`` each (nearly normal), a fixed function of (key,
    column, seed: mpips.kernels.starting_rows), and a bias of 0. float32 (len(keys), rank + 1)."""
    out = np.zeros((keys.size, rank + 1), np.float32)
    if keys.size and std > 0:
        normal_rows(np.ascontiguousarray(keys, np.uint64), rank, float(std), int(seed), out)
    return out


def gradients(batch: Minibatch, user_rows: np.ndarray, item_rows: np.ndarray, mu: float,
              reg: float) -> tuple[float, np.ndarray, np.ndarray]:
    """(sum of squared errors, gradient of each user row, of each item row): the squared error
    plus ``reg/2 * |row|^2`` per rating, summed over the batch (float32 gradients)."""
    width = user_rows.shape[1]
    if item_rows.shape[1] != width or user_rows.shape[0] != batch.user_keys.size \
            or item_rows.shape[0] != batch.item_keys.size:
        raise ValueError(f"rows {user_rows.shape} and {item_rows.shape} do not fit the batch's "
                         f"{batch.user_keys.size} users and {batch.item_keys.size} items")
    user_grads = np.zeros(user_rows.shape, np.float32)
    item_grads = np.zeros(item_rows.shape, np.float32)
    sse = kernels.squared_error_gradients(batch.users, batch.items, batch.ratings,
                                          np.ascontiguousarray(user_rows, np.float32),
                                          np.ascontiguousarray(item_rows, np.float32),
                                          np.float32(mu), np.float32(reg), user_grads,
                                          item_grads)
    return float(sse), user_grads, item_grads


def sequential_sgd(batch: Minibatch, user_rows: np.ndarray, item_rows: np.ndarray, mu: float,
                   lr: float, reg: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Per-rating SGD over the batch in its order, on copies of the rows (surprise's update,
    rating after rating): (sum of squared errors, change of each user row, of each item row),
    float32. Pushed to tables that sum what they get, the changes of several workers add up
    (as in Hogwild), and a batch of any size moves each row as the per-rating steps do."""
    users = np.array(user_rows, np.float32)
    items = np.array(item_rows, np.float32)
    sse = kernels.sequential_sgd(batch.users, batch.items, batch.ratings, users, items,
                                 np.float32(mu), np.float32(lr), np.float32(reg))
    return float(sse), users - user_rows, items - item_rows


def predict(batch: Minibatch, user_rows: np.ndarray, item_rows: np.ndarray, mu: float,
            low: float, high: float) -> np.ndarray:
    """Predicted ratings of the batch, clipped to [low, high] (float64)."""
    out = np.empty(batch.n, np.float64)
    kernels.predict(batch.users, batch.items, np.ascontiguousarray(user_rows, np.float32),
                    np.ascontiguousarray(item_rows, np.float32), float(mu), float(low),
                    float(high), out)
    return out


def rmse(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(truth, np.float64) - predicted) ** 2)))


def mae(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(truth, np.float64) - predicted)))
