"""mpips.ml.metrics against scikit-learn (a test-only dependency), ties included."""
import importlib

import numpy as np
import pytest

from mpips.ml import metrics

sk = importlib.import_module("sklearn.metrics")


def random_case(seed, n=500, distinct=None):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float32)
    p = rng.random(n)
    if distinct:  # heavy ties: only a few distinct scores
        p = np.round(p * (distinct - 1)) / (distinct - 1)
    return y, p


@pytest.mark.parametrize("seed,distinct", [(0, None), (1, None), (2, 5), (3, 2)])
def test_auc_matches_roc_auc_score_with_ties(seed, distinct):
    y, p = random_case(seed, distinct=distinct)
    assert metrics.auc(y, p) == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)


def test_auc_of_constant_scores_is_one_half():
    y, _ = random_case(4)
    p = np.full(y.size, 0.25)
    assert metrics.auc(y, p) == sk.roc_auc_score(y, p) == 0.5


def test_auc_hand_cases():
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert metrics.auc([0, 1], [0.5, 0.5]) == 0.5
    assert metrics.auc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.9]) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="one class"):
        metrics.auc([1, 1], [0.2, 0.3])


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(metrics.average_ranks([3.0, 1.0, 3.0, 2.0, 3.0]),
                                  [4.0, 1.0, 4.0, 2.0, 4.0])


@pytest.mark.parametrize("seed", [0, 1])
def test_logloss_matches_log_loss(seed):
    y, p = random_case(seed)
    p = np.clip(p, 1e-6, 1 - 1e-6)
    assert metrics.logloss(y, p) == pytest.approx(sk.log_loss(y, p, labels=[0, 1]), rel=1e-12)


def test_logloss_clips_certain_wrong_predictions():
    value = metrics.logloss([1, 0], [0.0, 1.0])
    assert np.isfinite(value) and value == pytest.approx(-np.log(1e-15), rel=1e-4)
    assert metrics.logloss([1, 0], [1.0, 0.0]) == pytest.approx(0.0, abs=1e-12)


def test_accuracy_matches_accuracy_score_of_p_above_half():
    y, p = random_case(5, distinct=3)  # includes p == 0.5 exactly, which predicts class 0
    assert metrics.accuracy(y, p) == pytest.approx(sk.accuracy_score(y, p > 0.5))
    assert metrics.accuracy([1, 0, 1], [0.9, 0.5, 0.5]) == pytest.approx(2 / 3)


def test_majority_baseline():
    assert metrics.majority_baseline([0, 0, 1]) == pytest.approx(2 / 3)
    assert metrics.majority_baseline([1, 1, 0, 1]) == pytest.approx(3 / 4)
    # majority of the training labels (0) applied to test labels
    assert metrics.majority_baseline([1, 1, 0], train_y=[0, 0, 1]) == pytest.approx(1 / 3)


def test_mismatched_or_empty_inputs_are_rejected():
    with pytest.raises(ValueError, match="3 entries"):
        metrics.accuracy([0, 1, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="at least one"):
        metrics.logloss([], [])
