"""Synthetic sparse binary classification data with a known answer. Pure module (NumPy).

``make_sparse_classification(n_rows, n_features, nnz_per_row, seed)`` draws rows whose
features follow a power law (feature of frequency rank r appears with probability
proportional to 1 / (r + 1) ** zipf_exponent, like words or click-log ids), plants a sparse
weight vector (most weights 0), and draws every label from the logistic model
``P(y = 1) = sigmoid(x . w + b)``. The planted weights are scaled so that the logit has a
chosen standard deviation (``signal``), and ``b`` centres it, so the classes are roughly
balanced and logistic regression can learn the data well above the majority baseline.
Everything is vectorised and seeded: the same arguments give the same dataset on every rank.

Feature ids are spread over ``[0, n_features)`` at random (frequent features do not cluster
at small ids, so key-range partitions share the hot keys). With ``key_space=2**k`` they are
mapped by a fixed bijective integer mix into ``[0, 2**k)``: big, unique uint64 keys, as a
hashed sparse model would use.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import SparseDataset


@dataclass(frozen=True, eq=False)
class SyntheticProblem:
    """A generated dataset and the model that labelled it.

    ``weights[j]`` and ``feature_keys[j]`` are the planted weight and the key (the id used in
    ``dataset.indices``) of feature ``j``; ``bias`` is the planted intercept.
    """

    dataset: SparseDataset
    weights: np.ndarray
    bias: float
    feature_keys: np.ndarray


def make_sparse_classification(n_rows: int, n_features: int = 100_000, nnz_per_row: int = 20,
                               seed: int = 0, **options) -> SparseDataset:
    """A seeded synthetic dataset; see :func:`make_sparse_problem` for ``options``."""
    return make_sparse_problem(n_rows, n_features, nnz_per_row, seed, **options).dataset


def make_sparse_problem(n_rows: int, n_features: int = 100_000, nnz_per_row: int = 20,
                        seed: int = 0, *, zipf_exponent: float = 1.2,
                        informative_fraction: float = 0.2, signal: float = 6.0,
                        key_space: int | None = None) -> SyntheticProblem:
    """Generate ``n_rows`` rows over ``n_features`` features, labels from a planted model.

    Each row draws ``nnz_per_row`` features (power law with ``zipf_exponent`` >= 0); repeated
    draws of a frequent feature collapse, so some rows have fewer. Values are 1.0.
    ``informative_fraction`` of the features get a nonzero planted weight; ``signal`` is the
    standard deviation of the planted logit over the rows. ``key_space`` (a power of two, at
    least ``n_features``, at most 2**64) maps feature ids to big unique keys below it.
    """
    _check_arguments(n_rows, n_features, nnz_per_row, informative_fraction, signal)
    rng = np.random.default_rng(seed)
    ids = _draw_feature_ids(rng, n_rows, n_features, nnz_per_row, zipf_exponent)
    first = np.ones(ids.shape, bool)
    first[:, 1:] = ids[:, 1:] != ids[:, :-1]  # rows are sorted: drop repeated draws
    weights = np.where(rng.random(n_features) < informative_fraction,
                       rng.standard_normal(n_features), 0.0)
    logits = np.where(first, weights[ids], 0.0).sum(axis=1)
    spread = logits.std()
    scale = signal / spread if spread > 0 else 0.0
    weights, logits = weights * scale, logits * scale
    bias = -float(logits.mean())
    labels = rng.random(n_rows) < _sigmoid(logits + bias)
    feature_keys = np.arange(n_features, dtype=np.uint64)
    if key_space is not None:
        feature_keys = mix_keys(feature_keys, _key_bits(key_space, n_features))
        ids = feature_keys[ids]
        order = np.argsort(ids, axis=1, kind="stable")
        ids, first = np.take_along_axis(ids, order, 1), np.take_along_axis(first, order, 1)
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(first.sum(axis=1), out=indptr[1:])
    dataset = SparseDataset(indptr, ids[first].astype(np.uint64),
                            np.ones(int(indptr[-1]), np.float32), labels,
                            n_features if key_space is None else key_space)
    return SyntheticProblem(dataset, weights, bias, feature_keys)


def _check_arguments(n_rows, n_features, nnz_per_row, informative_fraction, signal) -> None:
    if n_rows < 0 or n_features < 1 or nnz_per_row < 1:
        raise ValueError(f"need n_rows >= 0, n_features >= 1, nnz_per_row >= 1; got "
                         f"{n_rows}, {n_features}, {nnz_per_row}")
    if not 0.0 <= informative_fraction <= 1.0 or signal < 0:
        raise ValueError(f"need 0 <= informative_fraction <= 1 and signal >= 0; got "
                         f"{informative_fraction}, {signal}")


def _draw_feature_ids(rng, n_rows, n_features, nnz_per_row, zipf_exponent) -> np.ndarray:
    """(n_rows, nnz_per_row) int64 feature ids, each row sorted, with power-law frequencies
    (:func:`_draw_ranks`, ranks scattered over the ids by a random permutation)."""
    ranks = _draw_ranks(rng, n_rows, n_features, nnz_per_row, zipf_exponent)
    ids = rng.permutation(n_features)[ranks]
    ids.sort(axis=1)
    return ids


def _draw_ranks(rng, n_rows, n_features, nnz_per_row, zipf_exponent) -> np.ndarray:
    """(n_rows, nnz_per_row) int64 frequency ranks in [0, n_features), 0 the most frequent.

    Ranks come from the inverse CDF of the continuous density x ** -zipf_exponent on
    [1, n_features + 1), floored: P(rank r) is about (r + 1.5) ** -zipf_exponent, drawn in
    O(1) per entry (a search in the discrete CDF is several times slower).
    """
    uniform = rng.random((n_rows, nnz_per_row))
    top = float(n_features + 1)
    if abs(zipf_exponent - 1.0) < 1e-9:
        x = top ** uniform
    else:
        power = 1.0 - zipf_exponent
        x = (1.0 + uniform * (top ** power - 1.0)) ** (1.0 / power)
    return np.clip(x.astype(np.int64) - 1, 0, n_features - 1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _key_bits(key_space: int, n_features: int) -> int:
    """log2(key_space), checking it is a power of two in [n_features, 2**64]."""
    bits = int(key_space).bit_length() - 1
    if key_space < 1 or key_space != 1 << bits or bits > 64 or key_space < n_features:
        raise ValueError(f"key_space must be a power of two between n_features={n_features} "
                         f"and 2**64, got {key_space}")
    return bits


def mix_keys(keys: np.ndarray, bits: int = 64) -> np.ndarray:
    """A fixed bijection of ``[0, 2**bits)`` onto itself (xor-shift / odd-multiply rounds in
    the style of splitmix64's finaliser): distinct inputs give distinct, well-spread keys."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")
    mask = np.uint64((1 << bits) - 1)
    big, small = np.uint64(max(1, (bits + 1) // 2)), np.uint64(max(1, bits // 2 - 1))
    x = np.asarray(keys, dtype=np.uint64) & mask
    with np.errstate(over="ignore"):
        x = x ^ (x >> big)
        x = (x * np.uint64(0xBF58476D1CE4E5B9)) & mask
        x = x ^ (x >> small)
        x = (x * np.uint64(0x94D049BB133111EB)) & mask
        x = x ^ (x >> big)
    return x


ONE_OFF_BASE = 1 << 48
"""One-off feature ids of a drifting stream start here (above every window id)."""


def make_drifting_stream(n_rows: int, n_active: int = 20_000, nnz_per_row: int = 20,
                         drift: float = 4.0, one_off: float = 0.2, seed: int = 0, *,
                         zipf_exponent: float = 1.1, informative_fraction: float = 0.3,
                         signal: float = 4.0, block: int = 500) -> SparseDataset:
    """Rows in time order whose features drift, as a click log's do. The features alive at
    row t are a window of ``n_active`` consecutive ids that slides ``drift`` window widths
    over the stream (new ids appear at its top, old ones leave at its bottom; the window
    moves every ``block`` rows). Every feature has a fixed popularity, a function of its id,
    and row t draws ``(1 - one_off) * nnz_per_row`` features among the alive ones,
    Zipf(``zipf_exponent``) by popularity rank; the rest of its features are ids seen in no
    other row (one-off ids from ONE_OFF_BASE up: the bulk of a real log's distinct features).
    Labels come from a planted logistic model whose weight for feature ``f`` is a fixed
    function of ``f`` (``informative_fraction`` of the window ids nonzero, one-off ids 0),
    scaled so that the logit has standard deviation ``signal``, and centred. Seeded; values
    are 1.0."""
    if n_rows < 1 or n_active < 1 or nnz_per_row < 1 or drift < 0 or not 0 <= one_off < 1 \
            or block < 1:
        raise ValueError(f"need n_rows, n_active, nnz_per_row, block >= 1, drift >= 0 and "
                         f"0 <= one_off < 1; got {n_rows}, {n_active}, {nnz_per_row}, {block}, "
                         f"{drift}, {one_off}")
    rng = np.random.default_rng(seed)
    in_window = max(1, int(round(nnz_per_row * (1.0 - one_off))))
    ranks = _draw_ranks(rng, n_rows, n_active, in_window, zipf_exponent)  # 0: most popular
    window = np.empty_like(ranks)
    alive = np.arange(n_active, dtype=np.int64)
    for lo in range(0, n_rows, block):
        offset = int(lo * drift * n_active / n_rows)
        ids = alive + offset
        by_popularity = ids[np.argsort(mix_keys(ids.astype(np.uint64)), kind="stable")]
        window[lo:lo + block] = by_popularity[ranks[lo:lo + block]]
    n_off = nnz_per_row - in_window
    off = ONE_OFF_BASE + np.arange(n_rows * n_off, dtype=np.int64).reshape(n_rows, n_off)
    ids = np.sort(np.concatenate([window, off], axis=1), axis=1)
    first = np.ones(ids.shape, bool)
    first[:, 1:] = ids[:, 1:] != ids[:, :-1]
    weights = _planted_weights(ids, informative_fraction)
    logits = np.where(first, weights, 0.0).sum(axis=1)
    spread = logits.std()
    logits *= signal / spread if spread > 0 else 0.0
    labels = rng.random(n_rows) < _sigmoid(logits - logits.mean())
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(first.sum(axis=1), out=indptr[1:])
    return SparseDataset(indptr, ids[first].astype(np.uint64),
                         np.ones(int(indptr[-1]), np.float32), labels, ONE_OFF_BASE * 2)


def _planted_weights(ids: np.ndarray, informative_fraction: float) -> np.ndarray:
    """The planted weight of every feature id (a fixed function of the id): a share
    ``informative_fraction`` of window ids get a weight uniform in [-sqrt(3), sqrt(3)] (unit
    variance), the others and every one-off id 0."""
    mixed = mix_keys(ids.astype(np.uint64))
    u = (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    v = ((mixed & np.uint64(0x7FF)).astype(np.float64) + 0.5) / 2048.0
    weights = np.where(u < informative_fraction, (2.0 * v - 1.0) * np.sqrt(3.0), 0.0)
    return np.where(ids >= ONE_OFF_BASE, 0.0, weights)
