"""Matrix factorization of ratings (biased SVD, the model of scikit-surprise's SVD) on the
parameter server, BSP, SSP or async.

    mpips launch -n 4 -- -m mpips run mf --servers 2 --synthetic 200000 --rank 20
    mpips launch -n 4 -- -m mpips run mf --servers 2 --data u1.base --test-data u1.test

Every rank loads (or generates, same seed) the ratings and cuts the same shuffled train/test
split (--test-fraction), or takes --test-data as the test set; worker i trains on block i of
the shuffled training ratings. A rating is predicted as ``mu + b_u + b_i + p_u . q_i``: ``mu``
is the training ratings' mean, and users and items are rows of two sparse tables ("user",
"item") of width --rank + 1 (factors, then the bias) keyed by their ids. Each step a worker
pulls the rows its minibatch touches, runs per-rating SGD (--lr, --reg) over the batch on its
copy of them, pushes the rows' changes (the servers add them up: --update local), and ends
the step with ``kv.clock()``; with --update server it pushes the batch's summed gradients
and the servers apply --rule (sgd with --lr, or adagrad). Factors start at N(0, --init-std) values that are a
fixed function of the id (mpips.ml.factorization: the tables hold each row's change from
it). --checkpoint-dir, --resume, --full-every and the stop signals work as in sparse_lr.
Worker 0 prints one line per epoch, scores the test ratings (predictions clipped to the
training ratings' range; a user or item never trained contributes nothing but the mean, as in
surprise) and prints the metrics as one JSON line, the last line of stdout.

--data and --test-data take a ratings text file or the .h5 data file that ``mpips data
convert --kind ratings`` makes of it: the same ratings in the same order, the same training.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from typing import NamedTuple

import numpy as np

from mpips.errors import MpipsError, UsageError
from mpips.jobs.position import Position
from mpips.jobs.checkpointing import (Checkpointer, SaveSignal, add_checkpoint_arguments,
                                      checkpoint_problems, open_checkpoints)
from mpips.jobs.runtime import (consistency_of, consistency_problems, gather_floats,
                                out_of_bounds, report, sum_over_workers,
                                test_split_problems)
from mpips.ml import factorization as mf
from mpips.ml.csr_file import is_data_file, open_data
from mpips.ml.ratings import RatingSet, make_ratings, read_ratings
from mpips.mpi.agree import everywhere

DEFAULT_TEST_FRACTION = 0.2
OPTION_BOUNDS = (("--synthetic", 1, True), ("--users", 1, True), ("--items", 1, True),
                 ("--true-rank", 1, True), ("--noise", 0.0, True), ("--seed", 0, True),
                 ("--rank", 1, True), ("--epochs", 1, True), ("--batch-size", 1, True),
                 ("--lr", 0.0, False), ("--reg", 0.0, True), ("--init-std", 0.0, True))
"""Lower bounds of the numeric options (runtime.out_of_bounds)."""


class Tables(NamedTuple):
    users: object  # TableSpec of the user rows
    items: object  # TableSpec of the item rows


def add_arguments(parser) -> None:
    """The job's command-line options (added to ``mpips run mf``'s parser)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="PATH",
                        help="ratings file: 'user item rating [timestamp]' per line, tab- or "
                             "space-separated (MovieLens layout), or the .h5 data file "
                             "'mpips data convert --kind ratings' makes of it")
    source.add_argument("--synthetic", metavar="N", type=int, default=100_000,
                        help="generate N ratings of a planted low-rank model (the default "
                             "source: 100000)")
    parser.add_argument("--test-data", metavar="PATH", default=None,
                        help="ratings file (or .h5 data file) of the test set (with --data: "
                             "train on all of it)")
    parser.add_argument("--test-fraction", type=float, default=None,
                        help=f"share of the ratings held out for the test metrics (default "
                             f"{DEFAULT_TEST_FRACTION}; not with --test-data)")
    parser.add_argument("--users", type=int, default=2000, help="synthetic: users")
    parser.add_argument("--items", type=int, default=1000, help="synthetic: items")
    parser.add_argument("--true-rank", type=int, default=5, help="synthetic: planted rank")
    parser.add_argument("--noise", type=float, default=0.3,
                        help="synthetic: standard deviation of the rating noise")
    parser.add_argument("--seed", type=int, default=0, help="data, split, order and init seed")
    parser.add_argument("--rank", type=int, default=100,
                        help="factors per user and item (default 100, as surprise's SVD)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.005, help="learning rate (default 0.005)")
    parser.add_argument("--reg", type=float, default=0.02,
                        help="L2 regularisation of factors and biases (default 0.02)")
    parser.add_argument("--init-std", type=float, default=0.1,
                        help="standard deviation of the starting factors (default 0.1)")
    parser.add_argument("--batch-size", type=int, default=2048,
                        help="ratings per worker per step (default 2048)")
    parser.add_argument("--update", choices=("local", "server"), default="local",
                        help="local (default): each worker runs per-rating SGD over its batch "
                             "on its copy of the rows, as surprise's SVD does, and pushes "
                             "the rows' changes, which the servers add up (stable for any "
                             "--batch-size); server: workers push the batch's summed "
                             "gradients and the servers apply --rule (needs small batches)")
    parser.add_argument("--rule", choices=("sgd", "adagrad"), default=None,
                        help="with --update server: the servers' update rule (default sgd)")
    parser.add_argument("--consistency", choices=("bsp", "ssp", "async"), default="bsp",
                        help="consistency model of the tables (default bsp)")
    parser.add_argument("--staleness", type=int, default=None, metavar="TAU",
                        help="ssp: a read may miss at most TAU steps of other workers")
    add_checkpoint_arguments(parser)
    parser.add_argument("--out", metavar="DIR", help="write metrics.json and curve.png here")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def main(ps, args) -> dict | None:
    """Train and evaluate. Collective over the launch; returns the metrics on worker 0.
    Raises UsageError on every rank, before training, for a mistake in the options, the
    data or the checkpoint directory."""
    started = time.perf_counter()
    _check_arguments(args)
    train, test = everywhere(ps.comm, lambda: load_split(args),
                             catch=(MpipsError, OSError, MemoryError))
    rule = {"rule": "sum"} if args.update == "local" else {"rule": args.rule or "sgd",
                                                           "lr": args.lr}
    rule["consistency"] = consistency_of(args)
    tables = Tables(ps.sparse_table("user", width=args.rank + 1, **rule),
                    ps.sparse_table("item", width=args.rank + 1, **rule))
    signal = SaveSignal() if args.checkpoint_dir else None
    resumed, args.checkpoint_run = open_checkpoints(ps, args)
    start = Position.from_job(resumed, ps.num_workers)
    if resumed is not None and ps.rank == 0:
        ps.log(f"resuming from {resumed['checkpoint_path']} ({resumed['epoch']} epochs and "
               f"{resumed['step']} steps done)")
    result = ps.run(lambda kv: train_and_evaluate(kv, tables, train, test, args, start,
                                                  signal))
    if result is not None:
        result.update(servers=ps.num_servers, seconds=time.perf_counter() - started)
        report(result, args, "train_rmse", "train RMSE", "matrix factorization")
    return result


def _check_arguments(args) -> None:
    """UsageError on every rank alike for impossible options (before anything collective)."""
    problems = out_of_bounds(args, OPTION_BOUNDS) + checkpoint_problems(args)
    problems += test_split_problems(args, "ratings")
    if args.rule is not None and args.update != "server":
        problems.append("--rule is for --update server (local updates are per-rating SGD)")
    problems += consistency_problems(args)
    if problems:
        raise UsageError("; ".join(problems))


def load_split(args) -> tuple[RatingSet, RatingSet]:
    """(train, test), the same on every rank. UsageError for a missing path or too few
    ratings; RatingsFormatError (one line, path:line) for a malformed file, DataFileError
    (path: problem) for a bad .h5 data file."""
    if args.data is None:
        data = make_ratings(args.synthetic, args.users, args.items, args.true_rank,
                            args.noise, args.seed).data
    else:
        for option, path in (("--data", args.data), ("--test-data", args.test_data)):
            if path is not None and not os.path.isfile(path):
                raise UsageError(f"{option} {path}: " + ("a directory, not a ratings file"
                                                          if os.path.isdir(path)
                                                          else "no such file"))
        data = load_ratings(args.data)
    if args.test_data is not None:
        train, test = data.split(0.0, args.seed)[0], load_ratings(args.test_data)
    else:
        fraction = DEFAULT_TEST_FRACTION if args.test_fraction is None else args.test_fraction
        train, test = data.split(fraction, args.seed)
    if train.n < 1 or test.n < 1:
        source = args.data if args.data is not None else f"--synthetic {args.synthetic}"
        raise UsageError(f"{source}: {train.n} training and {test.n} test rating(s): too few "
                         f"to train and score")
    return train, test


def load_ratings(path) -> RatingSet:
    """A ratings text file, or a data file made of one by ``mpips data convert --kind
    ratings``: the same RatingSet (the file's order), so training is the same. DataFileError
    or RatingsFormatError (one line naming the file) for a bad one."""
    if not is_data_file(path):
        return read_ratings(path)
    with open_data(path, kind="ratings") as data:
        return data.read_all()


def steps_per_epoch(n_train: int, num_workers: int, batch_size: int) -> int:
    """Steps every worker takes per epoch (the same for all: BSP and SSP wait on clocks)."""
    return max(1, math.ceil((n_train // num_workers) / batch_size))


def train_and_evaluate(kv, tables: Tables, train: RatingSet, test: RatingSet, args,
                       start: Position, signal=None) -> dict | None:
    """A worker's whole job: train for ``args.epochs`` from ``start``, checkpointing as
    asked, then worker 0 evaluates (or reports where a signal stopped it)."""
    shard = train.shard(kv.worker_rank, kv.num_workers)
    steps = steps_per_epoch(train.n, kv.num_workers, args.batch_size)
    rng = np.random.default_rng([args.seed, kv.worker_rank])
    mu = float(train.ratings.astype(np.float64).mean())
    saver = Checkpointer(kv, args, steps, signal, start)
    curve, ratings_run, began, stopped = list(start.curve), 0, time.perf_counter(), None
    for epoch in range(args.epochs):
        order = rng.permutation(shard.n)  # drawn for skipped epochs too: same data order
        if epoch < start.epoch:
            continue
        first, sse = start.entering(epoch, kv.worker_rank)
        epoch_began = time.perf_counter()
        sse, ran, stopped = run_epoch(kv, tables, shard.take(order).batches(steps), first,
                                      sse, mu, args, saver, curve, epoch)
        ratings_run += ran
        if stopped is not None:
            break
        total = kv.collective(lambda comm: sum_over_workers(comm, [sse, shard.n]))
        curve.append(math.sqrt(total[0] / max(total[1], 1.0)))
        if kv.worker_comm.Get_rank() == 0 and not args.quiet:
            rate = total[1] / (time.perf_counter() - epoch_began)
            print(f"epoch {epoch + 1}/{args.epochs}  train_rmse {curve[-1]:.5f}  "
                  f"ratings/s {rate:,.0f}", flush=True)
        if saver.due_at_epoch_end(epoch):
            saver.save(epoch + 1, 0, curve, 0.0)
    seconds = time.perf_counter() - began
    runs = kv.collective(lambda comm: gather_floats(comm, [seconds, ratings_run,
                                                           kv.wait_seconds]))
    if kv.worker_comm.Get_rank() != 0:
        return None
    result = {"stopped_at_step": stopped} if stopped is not None else \
        evaluate(kv, tables, train, test, mu, args)
    result.update(epochs=args.epochs, workers=kv.num_workers, rank=args.rank,
                  train_rmse=curve, update=args.update,
                  rule=args.rule or "sgd" if args.update == "server" else "sum",
                  lr=args.lr, reg=args.reg,
                  batch_size=args.batch_size, consistency=consistency_of(args),
                  ratings_per_s=float(runs[:, 1].sum() / max(runs[:, 0].max(), 1e-9)),
                  wait_seconds=[round(w, 4) for w in runs[:, 2]],
                  resumed_from_step=(start.steps_done if start.epoch or start.step else None))
    return result


def run_epoch(kv, tables: Tables, batches: list, first: int, sse: float, mu: float, args,
              saver: Checkpointer, curve: list, epoch: int):
    """Steps ``first..`` of an epoch, each ended by ``kv.clock()``. Returns (sum of squared
    errors of the epoch so far, ratings run, the checkpointed step id if a stop was asked,
    else None)."""
    ran = 0
    for step in range(first, len(batches)):
        sse += sgd_step(kv, tables, batches[step], mu, args)
        ran += batches[step].n
        kv.clock()
        action = saver.poll() if step + 1 < len(batches) else None
        if action is not None:
            saved = saver.save(epoch, step + 1, curve, sse)
            if action == "stop":
                return sse, ran, saved
    return sse, ran, None


def pull_rows(kv, tables: Tables, mb: mf.Minibatch, args) -> tuple[np.ndarray, np.ndarray]:
    """The user and item rows of a minibatch: both pulls in flight at once, plus their
    starting rows (the tables hold the change from them)."""
    pulls = kv.pull(tables.users, mb.user_keys), kv.pull(tables.items, mb.item_keys)
    return tuple(kv.wait(ts) + mf.initial_rows(keys, args.rank, args.init_std, args.seed)
                 for ts, keys in zip(pulls, (mb.user_keys, mb.item_keys)))


def sgd_step(kv, tables: Tables, batch: RatingSet, mu: float, args) -> float:
    """Pull the rows the batch touches, push their gradients, wait for both pushes. Returns
    the batch's sum of squared errors before the update (0 for an empty batch)."""
    if batch.n == 0:
        return 0.0
    mb = mf.minibatch(batch)
    users, items = pull_rows(kv, tables, mb, args)
    if args.update == "local":
        sse, user_grads, item_grads = mf.sequential_sgd(mb, users, items, mu, args.lr,
                                                        args.reg)
    else:
        sse, user_grads, item_grads = mf.gradients(mb, users, items, mu, args.reg)
    pushes = (kv.push(tables.users, mb.user_keys, user_grads),
              kv.push(tables.items, mb.item_keys, item_grads))
    for ts in pushes:
        kv.wait(ts)
    return sse


def evaluate(kv, tables: Tables, train: RatingSet, test: RatingSet, mu: float, args) -> dict:
    """Pull the rows the test ratings need and score them; a user or item that never had a
    training rating keeps a zero row (as surprise: only the known parts of the model)."""
    mb = mf.minibatch(test)
    users, items = pull_rows(kv, tables, mb, args)
    users[~np.isin(mb.user_keys, train.users)] = 0.0
    items[~np.isin(mb.item_keys, train.items)] = 0.0
    low, high = float(train.ratings.min()), float(train.ratings.max())
    predicted = mf.predict(mb, users, items, mu, low, high)
    digest = hashlib.sha256(np.ascontiguousarray(users).tobytes())
    digest.update(np.ascontiguousarray(items).tobytes())
    return {"test_rmse": mf.rmse(test.ratings, predicted),
            "test_mae": mf.mae(test.ratings, predicted),
            "baseline_rmse": mf.rmse(test.ratings, np.full(test.n, np.clip(mu, low, high))),
            "n_train": train.n, "n_test": test.n,
            "users": int(np.unique(train.users).size), "items": int(np.unique(train.items).size),
            "model_sha256": digest.hexdigest()}
