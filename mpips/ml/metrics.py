"""Binary classification metrics on NumPy arrays. Pure module (no scikit-learn at run time).

``y`` holds labels 0/1 (any numeric dtype, compared with 0.5), ``p`` the predicted
probabilities of class 1. The definitions match scikit-learn's ``log_loss``,
``accuracy_score`` of ``p > 0.5`` and ``roc_auc_score`` (ties get the average rank).
"""
from __future__ import annotations

import numpy as np


def _as_pair(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).reshape(-1) > 0.5
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"y has {y.size} entries but p has {p.size}")
    if y.size == 0:
        raise ValueError("metrics need at least one example")
    return y, p


def logloss(y, p, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the labels; ``p`` is clipped to [eps, 1 - eps]."""
    y, p = _as_pair(y, p)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def accuracy(y, p, threshold: float = 0.5) -> float:
    """Fraction of examples whose prediction ``p > threshold`` equals the label."""
    y, p = _as_pair(y, p)
    return float(np.mean((p > threshold) == y))


def auc(y, p) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a
    random negative, ties counting one half (Mann-Whitney U with average ranks).

    Raises ValueError when ``y`` holds only one class (the AUC is undefined).
    """
    y, p = _as_pair(y, p)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC is undefined when only one class is present")
    ranks = average_ranks(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_ranks(scores) -> np.ndarray:
    """1-based ranks of ``scores`` in increasing order; tied scores share their mean rank."""
    scores = np.asarray(scores).reshape(-1)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    starts_group = np.ones(scores.size, bool)
    starts_group[1:] = sorted_scores[1:] != sorted_scores[:-1]
    group = np.cumsum(starts_group) - 1
    first = np.flatnonzero(starts_group)  # 0-based position where each tie group starts
    last = np.append(first[1:], scores.size) - 1
    ranks = np.empty(scores.size, np.float64)
    ranks[order] = (first[group] + last[group]) / 2.0 + 1.0
    return ranks


def majority_baseline(y, train_y=None) -> float:
    """Accuracy on ``y`` of always predicting the majority class of ``train_y`` (default:
    of ``y`` itself); an exact 50/50 reference predicts class 1."""
    y = np.asarray(y, dtype=np.float64).reshape(-1) > 0.5
    reference = y if train_y is None else np.asarray(train_y, dtype=np.float64).reshape(-1) > 0.5
    if y.size == 0 or reference.size == 0:
        raise ValueError("majority_baseline needs at least one label")
    majority = reference.mean() >= 0.5
    return float(np.mean(y == majority))
