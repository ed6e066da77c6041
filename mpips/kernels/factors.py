"""Kernels of matrix factorization (mpips.ml.factorization): a minibatch's errors and gradients
over the user and item rows it touches.

A row holds ``rank`` factors and then a bias. The model predicts
``mu + b_u + b_i + p_u . q_i``; the gradients are those of the squared error plus
``reg/2 * (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)`` per rating, summed over the batch's ratings
(so each rating regularises the rows it touches once, as per-rating SGD does).

Preconditions (checked by the caller, mpips.ml.factorization): ``users``/``items`` int64 row
indices into ``user_rows``/``item_rows`` (float32 (n, rank + 1)), ``ratings`` float32 of the
same length as the indices, gradient arrays zeroed and shaped like the row arrays.
"""
import numba

_jit = numba.njit(cache=True, nogil=True)


@numba.njit(inline="always", nogil=True)
def _prediction(user_rows, item_rows, u, i, mu, rank):
    """mu + b_u + b_i + p_u . q_i of rows ``u`` and ``i``."""
    pred = mu + user_rows[u, rank] + item_rows[i, rank]
    for f in range(rank):
        pred += user_rows[u, f] * item_rows[i, f]
    return pred


@_jit
def squared_error_gradients(users, items, ratings, user_rows, item_rows, mu, reg,
                            user_grads, item_grads):
    """Add each rating's gradient to ``user_grads``/``item_grads`` (rows as the indices);
    returns the sum of squared errors (float64)."""
    rank = user_rows.shape[1] - 1
    total = 0.0
    for n in range(ratings.size):
        u, i = users[n], items[n]
        err = ratings[n] - _prediction(user_rows, item_rows, u, i, mu, rank)
        total += err * err
        for f in range(rank):
            pu, qi = user_rows[u, f], item_rows[i, f]
            user_grads[u, f] += reg * pu - err * qi
            item_grads[i, f] += reg * qi - err * pu
        user_grads[u, rank] += reg * user_rows[u, rank] - err
        item_grads[i, rank] += reg * item_rows[i, rank] - err
    return total


@_jit
def sequential_sgd(users, items, ratings, user_rows, item_rows, mu, lr, reg):
    """Per-rating SGD over the ratings in order, in place on the rows (scikit-surprise's SVD
    update: the error with the rows as they are, then the biases, then the factors from their
    values before this rating); returns the sum of squared errors (float64)."""
    rank = user_rows.shape[1] - 1
    total = 0.0
    for n in range(ratings.size):
        u, i = users[n], items[n]
        err = ratings[n] - _prediction(user_rows, item_rows, u, i, mu, rank)
        total += err * err
        user_rows[u, rank] += lr * (err - reg * user_rows[u, rank])
        item_rows[i, rank] += lr * (err - reg * item_rows[i, rank])
        for f in range(rank):
            pu, qi = user_rows[u, f], item_rows[i, f]
            user_rows[u, f] += lr * (err * qi - reg * pu)
            item_rows[i, f] += lr * (err * pu - reg * qi)
    return total


@_jit
def predict(users, items, user_rows, item_rows, mu, low, high, out):
    """out[n] = mu + b_u + b_i + p_u . q_i, clipped to [low, high]."""
    rank = user_rows.shape[1] - 1
    for n in range(users.size):
        u, i = users[n], items[n]
        out[n] = min(max(_prediction(user_rows, item_rows, u, i, mu, rank), low), high)
