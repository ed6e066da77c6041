"""Scoring sparse_lr's trained model: pull it, predict the test rows, report the metrics and a
digest of the weights. Worker 0 scores every test row when it holds them all (``evaluate``);
when each worker read only its part of the data (jobs/lr_shards.py) each scores its own rows
and worker 0 gathers the predictions (``gather_scores``, ``evaluate_scores``)."""
from __future__ import annotations

import hashlib

import numpy as np
from mpi4py import MPI

from mpips.ml import lr, metrics
from mpips.ml.dataset import SparseDataset

BIAS_KEY = np.zeros(1, np.uint64)


def gatherv(worker_comm, mine: np.ndarray, mpi_type) -> np.ndarray | None:
    """Every worker's 1-D ``mine``, concatenated in rank order on worker 0 (None elsewhere).
    Collective over the workers: Gatherv of numpy buffers, no pickling."""
    counts = np.empty(worker_comm.Get_size(), np.int64)
    worker_comm.Allgather(np.array([mine.size], np.int64), counts)
    if worker_comm.Get_rank() != 0:
        worker_comm.Gatherv(mine, None, root=0)
        return None
    out = np.empty(int(counts.sum()), mine.dtype)
    displacements = np.concatenate([[0], np.cumsum(counts)[:-1]])
    worker_comm.Gatherv(mine, [out, counts, displacements, mpi_type], root=0)
    return out


def gather_model_keys(worker_comm, shard: SparseDataset) -> np.ndarray | None:
    """The sorted union of the keys every worker trained, on worker 0 (None elsewhere).
    Collective over the workers."""
    gathered = gatherv(worker_comm, np.unique(shard.indices).astype(np.uint64), MPI.UINT64_T)
    return None if gathered is None else np.unique(gathered)


def gather_scores(worker_comm, kv, tables, test: SparseDataset) -> np.ndarray | None:
    """Score this worker's test rows with the trained model and gather (probability, label)
    rows of every worker on worker 0 (None elsewhere). Collective over the workers."""
    keys = np.unique(test.indices)
    weights = kv.wait(kv.pull(tables.weights, keys)).reshape(-1) if keys.size else \
        np.empty(0, np.float32)
    bias = float(kv.wait(kv.pull(tables.bias, BIAS_KEY))[0])
    mine = np.column_stack([lr.predict_dataset(test, keys, weights, bias),
                            test.labels]).astype(np.float64).reshape(-1)
    out = gatherv(worker_comm, mine, MPI.DOUBLE)
    return None if out is None else out.reshape(-1, 2)


def pull_model(kv, tables, model_keys) -> tuple[np.ndarray, float, str]:
    """(weights of ``model_keys``, bias, sha256 of both as float32)."""
    weights = kv.wait(kv.pull(tables.weights, model_keys))
    bias = float(kv.wait(kv.pull(tables.bias, BIAS_KEY))[0])
    digest = hashlib.sha256(np.ascontiguousarray(weights, np.float32).tobytes())
    digest.update(np.float32(bias).tobytes())
    return weights, bias, digest.hexdigest()


def _scores(labels, p, baseline: float, weights, model_keys, digest: str) -> dict:
    return {
        "test_logloss": metrics.logloss(labels, p),
        "test_accuracy": metrics.accuracy(labels, p),
        "test_auc": metrics.auc(labels, p) if 0 < labels.sum() < labels.size else None,
        "baseline_accuracy": baseline, "model_keys": int(model_keys.size),
        # the share of the model's weights (keys trained) that are exactly 0 (ftrl's L1)
        "zero_weights": float(np.mean(weights == 0)) if weights.size else 0.0,
        "model_sha256": digest,
    }


def evaluate(kv, tables, model_keys, train, test) -> dict:
    """Pull the trained model and score it on the test rows (worker 0)."""
    weights, bias, digest = pull_model(kv, tables, model_keys)
    p = lr.predict_dataset(test, model_keys, weights, bias)
    baseline = metrics.majority_baseline(test.labels, train.labels)
    return {**_scores(test.labels, p, baseline, weights, model_keys, digest),
            "n_train": train.n_rows, "n_test": test.n_rows}


def evaluate_scores(kv, tables, model_keys, scored: np.ndarray, shards) -> dict:
    """evaluate's metrics from the gathered (probability, label) rows of every worker
    (worker 0)."""
    weights, _, digest = pull_model(kv, tables, model_keys)
    p, labels = scored[:, 0], scored[:, 1].astype(np.float32)
    majority = shards.train_positives >= 0.5 * shards.n_train
    baseline = float(np.mean((labels > 0.5) == majority))
    return {**_scores(labels, p, baseline, weights, model_keys, digest),
            "n_train": shards.n_train, "n_test": shards.n_test, "data_read": "parts"}
