"""Logistic regression on a drifting stream, read once in time order: what feature admission and
eviction do to a model that lives for months (issue 19).

    mpips launch -n 4 -- -m mpips run drift_lr --servers 2
    mpips launch -n 4 -- -m mpips run drift_lr --servers 2 --admit count:2 --evict unseen:100

Every rank generates the same stream (mpips.ml.synthetic.make_drifting_stream: features drift
over the stream, a share of every row's features are one-off ids) and holds out its last
--test-fraction rows. Each step, worker w takes its --batch-size rows of the next block of
(workers x batch size) rows, pulls their weights (sparse table "w", AdaGrad, with the
--admit, --evict and --capacity given) and the intercept, pushes the logloss gradient and
ends the step with ``kv.clock()`` (BSP). Servers record the table's rows at every clock; at
the end worker 0 scores the held-out future rows, and the last line of stdout is a JSON
object: test AUC, logloss and accuracy, the table's rows over the clocks (summed over the
servers, every --report-every clocks), their maximum and final count, and what admission
and eviction did. Without ULFM: the end gathers the servers' counts collectively.
"""
from __future__ import annotations

import json
import time

import numpy as np
from mpi4py import MPI

from mpips.errors import UsageError
from mpips.jobs.runtime import add_row_policy_arguments, row_policy_problems
from mpips.ml import lr, metrics
from mpips.ml.synthetic import make_drifting_stream

BIAS_KEY = np.zeros(1, np.uint64)
STATS = ("rows", "admitted", "deferred", "evicted")


def add_arguments(parser) -> None:
    """The job's options (added to ``mpips run drift_lr``'s parser)."""
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the stream")
    parser.add_argument("--active", type=int, default=1500,
                        help="features alive (in the drifting window) at any time (default "
                             "1500)")
    parser.add_argument("--nnz", type=int, default=20, help="features per row")
    parser.add_argument("--drift", type=float, default=2.0,
                        help="window widths the window moves over the stream (default 2)")
    parser.add_argument("--one-off", type=float, default=0.2,
                        help="share of a row's features seen in no other row (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.05,
                        help="the stream's last rows held out as the future (default 0.05)")
    parser.add_argument("--batch-size", type=int, default=250,
                        help="rows per worker per step (default 250)")
    parser.add_argument("--lr", type=float, default=0.3, help="AdaGrad rate (default 0.3)")
    add_row_policy_arguments(parser)
    parser.add_argument("--report-every", type=int, default=20, metavar="CLOCKS",
                        help="table size in the result every CLOCKS clocks (default 20)")


def main(ps, args) -> dict | None:
    """Train once over the stream and report. Collective over the launch."""
    started = time.perf_counter()
    _check(args)
    stream = make_drifting_stream(args.rows, args.active, args.nnz, args.drift, args.one_off,
                                  args.seed)
    held_out = max(1, int(round(args.rows * args.test_fraction)))
    train, test = stream.slice_rows(0, args.rows - held_out), stream.slice_rows(
        args.rows - held_out, args.rows)
    weights = ps.sparse_table("w", rule="adagrad", lr=args.lr, consistency="bsp",
                              admit=args.admit, evict=args.evict, capacity=args.capacity)
    bias = ps.dense_table("bias", size=1, rule="adagrad", lr=args.lr, consistency="bsp")
    result = ps.run(lambda kv: _train(kv, weights, bias, train, test, args))
    totals, history = _gather_servers(ps, "w")
    if result is not None:
        rows = history[:, 1]
        result.update({name: int(totals[i]) for i, name in enumerate(STATS)},
                      max_rows=int(rows.max()) if rows.size else 0,
                      rows_over_clocks=history[::args.report_every].tolist(),
                      admit=args.admit, evict=args.evict, capacity=args.capacity,
                      servers=ps.num_servers, seconds=time.perf_counter() - started,
                      distinct_train_keys=int(np.unique(train.indices).size))
        print(json.dumps(result), flush=True)
    return result


def _check(args) -> None:
    problems = []
    for name in ("rows", "active", "nnz", "batch_size", "report_every"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 < args.test_fraction < 1:
        problems.append(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    if not 0 <= args.one_off < 1 or args.drift < 0 or not args.lr > 0:
        problems.append("--one-off must be in [0, 1), --drift >= 0 and --lr > 0")
    problems += row_policy_problems(args)
    if problems:
        raise UsageError("; ".join(problems))


def _train(kv, weights, bias, train, test, args) -> dict | None:
    """One pass over ``train`` in time order, then worker 0 scores ``test``."""
    block = args.batch_size * kv.num_workers
    steps = train.n_rows // block
    loss_sum = 0.0
    for step in range(steps):
        start = step * block + kv.worker_rank * args.batch_size
        batch = lr.minibatch(train.slice_rows(start, start + args.batch_size))
        w = kv.wait(kv.pull(weights, batch.keys))
        b = float(kv.wait(kv.pull(bias, BIAS_KEY))[0])
        loss, grad_w, grad_b = lr.loss_and_gradient(batch, w, b)
        loss_sum += loss
        kv.wait(kv.push(weights, batch.keys, grad_w.astype(np.float32)))
        kv.wait(kv.push(bias, BIAS_KEY, np.array([grad_b], np.float32)))
        kv.clock()
    if kv.worker_rank != 0:
        return None
    keys = np.unique(test.indices)
    p = lr.predict_dataset(test, keys, kv.wait(kv.pull(weights, keys)),
                           float(kv.wait(kv.pull(bias, BIAS_KEY))[0]))
    return {"steps": steps, "workers": kv.num_workers, "train_rows": steps * block,
            "train_logloss": loss_sum / max(steps, 1),
            "test_auc": metrics.auc(test.labels, p), "test_logloss": metrics.logloss(test.labels, p),
            "test_accuracy": metrics.accuracy(test.labels, p)}


def _gather_servers(ps, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, admitted, deferred, evicted) summed over the servers, and the table's rows per
    clock summed over the servers ((clock, rows) int64), on every rank. Collective over the
    launch: an Allreduce of the counts and an Allgatherv of the histories (no pickling)."""
    comm = ps.comm
    stats = ps.table_stats()[name]
    totals = np.zeros(len(STATS), np.int64)
    comm.Allreduce(np.array([stats[s] if ps.is_server else 0 for s in STATS], np.int64),
                   totals, op=MPI.SUM)
    mine = np.ascontiguousarray(ps.size_history(name).reshape(-1))
    counts = np.empty(comm.Get_size(), np.int64)
    comm.Allgather(np.array([mine.size], np.int64), counts)
    gathered = np.empty(int(counts.sum()), np.int64)
    comm.Allgatherv(mine, [gathered, counts, np.concatenate([[0], np.cumsum(counts)[:-1]]),
                           MPI.INT64_T])
    pairs = gathered.reshape(-1, 2)
    clocks = np.unique(pairs[:, 0])
    rows = np.zeros(clocks.size, np.int64)
    np.add.at(rows, np.searchsorted(clocks, pairs[:, 0]), pairs[:, 1])
    return totals, np.stack([clocks, rows], axis=1)
