"""Sparse logistic regression with minibatch SGD on the parameter server, BSP, SSP or async.

    mpips launch -n 5 -- -m mpips run sparse_lr --servers 2 --data w8a --epochs 10
    python jobs/sparse_lr.py --servers 2 --synthetic 20000      # under mpiexec -n 4

Every rank loads (or generates, same seed) the data and cuts the same shuffled train/test
split; worker i trains on block i of the shuffled train rows. With an mpips data file (.h5) or
--read parts, worker i reads only part i of the file instead (jobs/lr_shards.py), and with
--assign dynamic workers claim blocks of rows as they get free (jobs/block_epochs.py). Each step every worker pulls
the weights of the keys its minibatch touches (table "w", sparse uint64 keys or dense
0..n_features-1) and the intercept (table "bias"), computes the gradient of the mean logloss,
pushes it (the servers apply the update rule: sgd, adagrad or ftrl), waits, and ends the step with
``kv.clock()``. With --checkpoint-dir the tables are saved every --checkpoint-every epochs
and, at the next step boundary, on SIGUSR1/SIGTERM (then the job stops); --resume continues
from the newest valid checkpoint, on any number of servers, and a BSP run so resumed ends
with the same model as an uninterrupted one. The tables' consistency model (--consistency, --staleness) decides how far
workers may run apart: bsp (every read sees exactly the previous steps of all workers,
bitwise reproducible), ssp (reads may miss at most --staleness steps of the others) or async.
--straggler W:F slows worker W by a factor F (sleeps F-1 times its own work per step), or,
with --straggler-mode rotating, a different worker each step. Worker 0 prints one line per epoch, evaluates the final model on the test
rows, writes metrics.json and curve.png under --out, and prints the metrics as one JSON line,
the last line of stdout.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import NamedTuple

import numpy as np
from mpi4py import MPI

from mpips.ml import lr
from mpips.mpi.agree import everywhere
from mpips.ml.dataset import SparseDataset
from mpips.errors import MpipsError, UsageError
from mpips.wire.filters import make_filter
from mpips.core.rules import make_rule
from mpips.jobs.position import Position
from mpips.jobs.runtime import (Checkpointer, SaveSignal, Straggler, add_checkpoint_arguments,
                                add_row_policy_arguments, checkpoint_problems, consistency_of,
                                consistency_problems, gather_floats, open_checkpoints,
                                out_of_bounds, parse_filter, parse_straggler, report,
                                row_policy_problems, test_split_problems, traffic_summary)
from mpips.ml.libsvm import read_libsvm, read_libsvm_pair
from mpips.ml.synthetic import make_sparse_classification
from mpips.jobs.block_epochs import BlockEpochs, block_bounds, block_count
from mpips.jobs import lr_shards
from mpips.jobs.lr_shards import Shards, sharded
from mpips.jobs.lr_evaluation import (BIAS_KEY, evaluate, evaluate_scores, gather_model_keys,
                                      gather_scores)

DEFAULT_SYNTHETIC_ROWS = 100_000
DEFAULT_TEST_FRACTION = 0.2
"""Share of the rows held out as the test set without --test-data."""
OPTION_BOUNDS = (("--features", 1, True), ("--nnz", 1, True), ("--seed", 0, True),
                 ("--epochs", 1, True), ("--batch-size", 1, True), ("--lr", 0.0, False),
                 ("--l2", 0.0, True), ("--l1", 0.0, True), ("--beta", 0.0, True),
                 ("--compute-ms", 0.0, True))
"""Lower bounds of the numeric options (runtime.out_of_bounds)."""


class Tables(NamedTuple):
    weights: object  # TableSpec of the feature weights
    bias: object  # TableSpec of the intercept (dense, one key)


def add_arguments(parser) -> None:
    """The job's command-line options (added to ``mpips run sparse_lr``'s parser)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="PATH", help="LIBSVM file of binary labels")
    source.add_argument("--synthetic", metavar="N_ROWS", type=int, default=DEFAULT_SYNTHETIC_ROWS,
                        help="generate N_ROWS synthetic rows (the default source: "
                             f"{DEFAULT_SYNTHETIC_ROWS} rows)")
    parser.add_argument("--features", type=int, default=100_000,
                        help="synthetic: number of features (default 100000)")
    parser.add_argument("--nnz", type=int, default=20, help="synthetic: features drawn per row")
    parser.add_argument("--hashed-keys", action="store_true",
                        help="synthetic: spread feature ids over all of uint64 (sparse table)")
    parser.add_argument("--seed", type=int, default=0, help="data, split and shuffle seed")
    parser.add_argument("--test-data", metavar="PATH", default=None,
                        help="LIBSVM file of the test rows (with --data: train on all of it, "
                             "report the test metrics on exactly these rows, e.g. a9a and "
                             "a9a.t; features the training rows lack pull as 0)")
    parser.add_argument("--read", choices=("whole", "parts"), default="whole",
                        help="whole: every rank parses the whole LIBSVM text (default); "
                             "parts: each worker parses only the lines in its byte range and "
                             "holds out test rows by a seeded hash of the row number. An "
                             "mpips data file (.h5, 'mpips data convert') is always read by "
                             "parts")
    parser.add_argument("--test-fraction", type=float, default=None,
                        help="fraction of rows held out for the test metrics (default 0.2; "
                             "not with --test-data)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256,
                        help="rows per worker per step (default 256)")
    parser.add_argument("--lr", type=float, default=0.1,
                        help="learning rate (default 0.1; ftrl: its alpha)")
    parser.add_argument("--rule", choices=("sgd", "adagrad", "ftrl"), default="adagrad",
                        help="update rule the servers apply (default adagrad; ftrl: "
                             "FTRL-proximal, whose L1 keeps most weights exactly 0)")
    parser.add_argument("--l2", type=float, default=0.0,
                        help="L2 penalty l2/2*|w|^2 on the weights a minibatch touches (ftrl: "
                             "the rule's own l2)")
    parser.add_argument("--l1", type=float, default=None,
                        help="ftrl: L1 penalty; a weight stays exactly 0 while the sum of its "
                             "gradients is within it (default 1.0)")
    parser.add_argument("--beta", type=float, default=None,
                        help="ftrl: beta of the per-coordinate rate alpha / (beta + "
                             "sqrt(sum of g^2)) (default 1.0)")
    parser.add_argument("--table", choices=("sparse", "dense"), default="sparse",
                        help="sparse uint64 keys, or a dense table of n_features keys")
    parser.add_argument("--placement", choices=("hash", "range"), default="hash",
                        help="sparse table: spread the keys over the servers by a hash of "
                             "the key (default), or give each server a contiguous key range")
    add_row_policy_arguments(parser)
    parser.add_argument("--consistency", choices=("bsp", "ssp", "async"), default="bsp",
                        help="consistency model of the tables (default bsp)")
    parser.add_argument("--staleness", type=int, default=None, metavar="TAU",
                        help="ssp: a read may miss at most TAU steps of other workers "
                             "(needed with --consistency ssp)")
    parser.add_argument("--straggler", metavar="W:F", default=None,
                        help="slow worker W down by factor F, e.g. 0:3")
    parser.add_argument("--straggler-mode", choices=("fixed", "rotating"), default="fixed",
                        help="fixed: always worker W; rotating: worker (W + step) mod workers")
    parser.add_argument("--compute-ms", type=float, default=0.0, metavar="MS",
                        help="simulate MS ms of model compute per step (benchmarks: a model "
                             "heavier than LR); a straggler's is multiplied by its factor")
    parser.add_argument("--assign", choices=("static", "dynamic"), default="static",
                        help="static: worker i trains shard i of the rows every epoch "
                             "(default); dynamic: workers claim blocks of --block-rows rows "
                             "as they get free, so a slow worker trains fewer (async or ssp; "
                             "jobs/block_epochs.py)")
    parser.add_argument("--block-rows", type=int, default=None, metavar="N",
                        help="dynamic: rows per block (default: --batch-size; a block is "
                             "trained in steps of --batch-size rows)")
    parser.add_argument("--on-worker-loss", choices=("reassign", "drop"), default="reassign",
                        help="when a worker dies in a ULFM launch (mpips launch --ft): share "
                             "its data among the living from the next epoch on, or drop it "
                             "(default reassign)")
    parser.add_argument("--codec", default="", metavar="TEXT",
                        help='how pushes travel (mpips.wire.codec words, e.g. "keycache,zeros"; '
                             'default: raw keys and values)')
    parser.add_argument("--push-filter", default=None, metavar="NAME[:K=V,...]",
                        help="filter gradient pushes (mpips.wire.filters), e.g. "
                             "significantly_modified:delta=0.001")
    add_checkpoint_arguments(parser)
    parser.add_argument("--out", metavar="DIR", help="write metrics.json and curve.png here")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def main(ps, args) -> dict | None:
    """Train and evaluate. Collective over the launch; returns the metrics on worker 0.
    Raises UsageError on every rank, before training, for a mistake in the options, the
    data or the checkpoint directory."""
    started = time.perf_counter()
    _check_arguments(args, ps.num_workers)
    if sharded(args):  # each worker reads its part of the file (jobs/lr_shards.py)
        shards, train, test = _load_shards(ps, args), None, None
        n_features, blocks = shards.n_features, shards.blocks(block_rows(args))
    else:
        shards = None
        train, test = everywhere(ps.comm, lambda: _load_checked(ps, args),
                                 catch=(MpipsError, OSError, MemoryError))
        n_features, blocks = train.n_features, block_count(train.n_rows, block_rows(args))
    tables = create_tables(ps, args, n_features)
    queue = ps.work_queue(blocks) if args.assign == "dynamic" else None
    signal = SaveSignal() if args.checkpoint_dir else None
    resumed, args.checkpoint_run = open_checkpoints(ps, args)
    start = Position.from_job(resumed, ps.num_workers, args.assign)
    if resumed is not None and ps.rank == 0:
        ps.log(f"resuming from {resumed['checkpoint_path']} ({resumed['epoch']} epochs and "
               f"{resumed['step']} steps done)")
    result = ps.run(lambda kv: train_and_evaluate(kv, tables, train, test, args, start,
                                                  signal, queue, shards))
    if ps.is_server and (args.admit or args.evict or args.capacity):
        stats = ps.table_stats()[tables.weights.name]
        ps.log(f"table {tables.weights.name!r}: {stats['rows']:,} rows, {stats['admitted']:,} "
               f"keys admitted, {stats['deferred']:,} pushes of keys not admitted yet, "
               f"{stats['evicted']:,} rows evicted")
    if result is not None:
        result.update(servers=ps.num_servers, seconds=time.perf_counter() - started)
        report(result, args, "train_logloss", "train logloss", "sparse logistic regression")
    return result


def _check_arguments(args, num_workers: int) -> None:
    """Reject impossible options and combinations: UsageError on every rank alike (the
    same options everywhere), before anything collective."""
    problems = out_of_bounds(args, OPTION_BOUNDS) + checkpoint_problems(args)
    if args.data is None and not args.synthetic >= 1:
        problems.append(f"--synthetic must be >= 1 row, got {args.synthetic}")
    problems += test_split_problems(args, "rows")
    if args.table == "dense" and args.hashed_keys:
        problems.append("--hashed-keys needs --table sparse (keys span all of uint64)")
    if args.table == "dense" and (args.admit or args.evict or args.capacity):
        problems.append("--admit, --evict and --capacity are for --table sparse (a dense "
                        "table has every row)")
    else:
        problems += row_policy_problems(args)
    if args.table == "dense" and args.placement != "hash":
        problems.append("--placement is for --table sparse (dense tables keep key ranges)")
    if args.rule != "ftrl":
        problems += [f"--{name} is an option of --rule ftrl (got --rule {args.rule})"
                     for name in ("l1", "beta") if getattr(args, name) is not None]
    problems += consistency_problems(args)
    try:
        args.straggler_plan = parse_straggler(args.straggler)
        args.filter_plan = parse_filter(args.push_filter)
    except ValueError as exc:
        problems.append(str(exc))
    if getattr(args, "straggler_plan", None) and args.straggler_plan[0] >= num_workers:
        problems.append(f"--straggler {args.straggler}: there is no worker "
                        f"{args.straggler_plan[0]} (this launch has {num_workers}: 0.."
                        f"{num_workers - 1})")
    if args.assign == "dynamic" and args.consistency == "bsp":
        problems.append("--assign dynamic needs --consistency async or ssp: BSP keeps static "
                        "shards (bitwise reproducible)")
    if args.read == "parts" and args.data is None:
        problems.append("--read parts is for a LIBSVM --data file")
    if args.assign == "dynamic" and args.read == "parts":
        problems.append("--assign dynamic hands any block to any worker: give an mpips data "
                        "file (mpips data convert) or --read whole, not --read parts")
    if args.block_rows is not None and (args.assign != "dynamic" or not args.block_rows >= 1):
        problems.append(f"--block-rows {args.block_rows}: " + (
            "needs --assign dynamic" if args.assign != "dynamic" else "must be >= 1"))
    if problems:
        raise UsageError("; ".join(problems))


def rule_params(args) -> dict:
    """The update rule's parameters from the options: ``lr`` (sgd, adagrad), or ftrl's
    ``alpha`` (--lr), ``beta``, ``l1`` and ``l2`` (its own L2 instead of the gradient's)."""
    if args.rule != "ftrl":
        return {"lr": args.lr}
    return {"alpha": args.lr, "beta": 1.0 if args.beta is None else args.beta,
            "l1": 1.0 if args.l1 is None else args.l1, "l2": args.l2}


def gradient_l2(args) -> float:
    """The L2 penalty the workers add to their gradients (ftrl applies its own on the server)."""
    return 0.0 if args.rule == "ftrl" else args.l2


def held_out(args) -> float:
    """The share of --data or --synthetic rows held out as the test set."""
    return DEFAULT_TEST_FRACTION if args.test_fraction is None else args.test_fraction


def load_split(args) -> tuple[SparseDataset, SparseDataset]:
    """(train, test): the same seeded, shuffled split on every rank. UsageError for a
    --data path that is missing or a directory, or too little memory for --synthetic."""
    if args.data is not None:
        for option, path in (("--data", args.data), ("--test-data", args.test_data)):
            if path is not None and os.path.isdir(path):
                raise UsageError(f"{option} {path}: a directory, not a LIBSVM file")
            if path is not None and not os.path.exists(path):
                raise UsageError(f"{option} {path}: no such file")
        if args.test_data is not None:  # train on every row of --data, in a seeded order
            train, test = read_libsvm_pair(args.data, args.test_data)
            return train.split(0.0, args.seed)[0], test
        data = read_libsvm(args.data)
    else:
        key_space = 2**64 if args.hashed_keys else None
        try:
            data = make_sparse_classification(args.synthetic, args.features, args.nnz,
                                              args.seed, key_space=key_space)
        except MemoryError as exc:
            raise UsageError(f"--synthetic {args.synthetic} --features {args.features}: not "
                             f"enough memory to generate the data ({exc})") from None
    return data.split(held_out(args), args.seed)


def _load_checked(ps, args) -> tuple[SparseDataset, SparseDataset]:
    """load_split, then UsageError unless there are test and training rows, and a dense
    table of the data's features fits a server's memory."""
    train, test = load_split(args)
    if args.test_data is not None and (test.n_rows < 1 or train.n_rows < 1):
        empty = f"--data {args.data}" if train.n_rows < 1 else f"--test-data {args.test_data}"
        raise UsageError(f"{empty}: no rows")
    if test.n_rows < 1 or train.n_rows < 1:
        source = f"--data {args.data}" if args.data is not None else \
            f"--synthetic {args.synthetic}"
        raise UsageError(f"{source}: {train.n_rows + test.n_rows} row(s) are too few to hold "
                         f"out a test set (--test-fraction {held_out(args)}) and train on "
                         "the rest")
    if args.table == "dense" and ps.is_server:
        _check_dense_fits(train.n_features, args, ps.num_servers)
    return train, test


def _load_shards(ps, args) -> Shards:
    """lr_shards.load, then UsageError unless there are test and training rows, and a dense
    table fits a server's memory. Collective over the launch."""
    shards = lr_shards.load(ps, args, held_out(args))
    if shards.n_train < 1 or shards.n_test < 1:
        raise UsageError(f"--data {args.data}: {shards.n_train} training and {shards.n_test} "
                         "test row(s): too few to train and score")
    if args.table == "dense" and ps.is_server:
        _check_dense_fits(shards.n_features, args, ps.num_servers)
    return shards


def _check_dense_fits(n_features: int, args, num_servers: int) -> None:
    """UsageError when this server's slice of the dense weight table (values and the
    rule's state, twice with replicas) needs more bytes than this node's memory."""
    arrays = 1 + len(make_rule(args.rule, **rule_params(args)).state_names)
    need = -(-n_features // num_servers) * 4 * arrays * (1 + getattr(args, "replicas", 0))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > memory:
        raise UsageError(f"--table dense: {n_features} features need {need / 2**30:,.1f} GiB "
                         f"on each of {num_servers} server(s), more than this node's "
                         f"{memory / 2**30:,.1f} GiB of memory; use --table sparse")


def create_tables(ps, args, n_features: int) -> Tables:
    """The weight and intercept tables. Collective over the launch."""
    rule = {"rule": args.rule, **rule_params(args), "consistency": consistency_of(args),
            "codec": args.codec}
    if args.table == "dense":
        weights = ps.dense_table("w", size=n_features, **rule)
    else:
        weights = ps.sparse_table("w", placement=args.placement, admit=args.admit,
                                  evict=args.evict, capacity=args.capacity, **rule)
    return Tables(weights, ps.dense_table("bias", size=1, **rule))


def steps_per_epoch(n_train: int, num_workers: int, batch_size: int) -> int:
    """Steps every worker takes per epoch: enough batches of about ``batch_size`` rows for
    the smallest shard. All workers take the same number (BSP and SSP wait for every
    worker's clock); a worker with a bigger shard (by one row) makes its batches that much
    bigger."""
    return max(1, math.ceil((n_train // num_workers) / batch_size))


def block_rows(args) -> int:
    """Rows per block of dynamic assignment."""
    return args.block_rows or args.batch_size


def train_and_evaluate(kv, tables: Tables, train, test, args, start: Position,
                       signal=None, queue=None, shards=None) -> dict | None:
    """A worker's whole job: train for ``args.epochs`` from ``start``, checkpointing as
    asked, then worker 0 evaluates (or reports where a signal stopped it). ``queue``: the
    launch's work queue under --assign dynamic; ``shards``: this worker's part of the data
    when it read only that (jobs/lr_shards.py; ``train`` and ``test`` are None then)."""
    if queue is not None:
        return _train_dynamic(kv, tables, train, test, args, start, signal, queue, shards)
    shard = shards.train if shards else train.shard(kv.worker_rank, kv.num_workers)
    n_train = shards.n_train if shards else train.n_rows
    steps = steps_per_epoch(n_train, kv.num_workers, args.batch_size)
    rng = np.random.default_rng([args.seed, kv.worker_rank])
    slow = Straggler(args.straggler_plan, args.straggler_mode, kv.worker_rank, kv.num_workers)
    slow.step = start.epoch * steps + start.step
    slow.compute = args.compute_ms / 1000.0
    if args.filter_plan is not None:
        kv.set_push_filter(tables.weights, make_filter(args.filter_plan[0], **args.filter_plan[1]))
    saver = Checkpointer(kv, args, steps, signal, start)
    curve, samples, began, stopped = list(start.curve), 0, time.perf_counter(), None
    workers = kv.num_workers
    for epoch in range(args.epochs):
        if kv.worker_comm.Get_size() != workers and args.on_worker_loss == "reassign":
            workers = kv.worker_comm.Get_size()  # a worker died: the living share its data
            shard = kv.collective(shards.reshard) if shards else \
                train.shard(kv.worker_comm.Get_rank(), workers)
            saver.start = saver.start.rebased(epoch, steps)  # ids go on from here
            steps = saver.steps = steps_per_epoch(n_train, workers, args.batch_size)
        order = rng.permutation(shard.n_rows)  # drawn for skipped epochs too: same data order
        if epoch < start.epoch:
            continue
        first = start.step if epoch == start.epoch else 0
        loss0 = start.loss_so_far(kv.worker_rank) if epoch == start.epoch else 0.0
        epoch_began = time.perf_counter()
        loss_sum, rows, stopped = run_epoch(kv, tables, shard.take(order), steps, first, loss0,
                                            gradient_l2(args), slow, saver, curve, epoch)
        samples += rows
        if stopped is not None:
            break
        loss, epoch_rows = kv.collective(lambda comm: _combine_epoch(comm, loss_sum,
                                                                      shard.n_rows))
        curve.append(loss)
        if kv.worker_comm.Get_rank() == 0 and not args.quiet:
            rate = epoch_rows / (time.perf_counter() - epoch_began)
            print(f"epoch {epoch + 1}/{args.epochs}  train_logloss {loss:.5f}  "
                  f"samples/s {rate:,.0f}", flush=True)
        if saver.due_at_epoch_end(epoch):
            saver.save(epoch + 1, 0, curve, 0.0)
    return _finish(kv, tables, train, test, args, start, shard, slow, curve, began, samples,
                   stopped, shards)


def _train_dynamic(kv, tables: Tables, train, test, args, start: Position, signal,
                   queue, shards) -> dict | None:
    """train_and_evaluate under --assign dynamic: blocks of the train rows (already in the
    split's shuffled order), or of the data file's rows (read when claimed), claimed from
    ``queue`` (jobs/block_epochs.py)."""
    rows = block_rows(args)
    slow = Straggler(args.straggler_plan, args.straggler_mode, kv.worker_rank, kv.num_workers)
    slow.compute = args.compute_ms / 1000.0
    if args.filter_plan is not None:
        kv.set_push_filter(tables.weights, make_filter(args.filter_plan[0], **args.filter_plan[1]))
    saver = Checkpointer(kv, args, queue.blocks, signal, start)
    curve, began, l2 = list(start.curve), time.perf_counter(), gradient_l2(args)

    def train_block(block: int) -> tuple[float, int]:
        if shards:
            data = shards.block(block, rows)
        else:
            data = train.take(np.arange(*block_bounds(block, train.n_rows, rows)))
        loss = 0.0
        for batch in data.batches(max(1, math.ceil(data.n_rows / args.batch_size))):
            loss += sgd_step(kv, tables, batch, l2) * batch.n_rows  # clocks: BlockFeed's
        return loss, data.n_rows

    def epoch_end(epoch: int, loss_sum: float, epoch_rows: float, stop: bool) -> int | None:
        loss, _ = kv.collective(lambda comm: _combine_epoch(comm, loss_sum, epoch_rows))
        curve.append(loss)
        if kv.worker_comm.Get_rank() == 0 and not args.quiet:
            print(f"epoch {epoch + 1}/{args.epochs}  train_logloss {loss:.5f}", flush=True)
        if stop or saver.due_at_epoch_end(epoch):
            return saver.save(epoch + 1, 0, curve, 0.0)
        return None

    epochs = BlockEpochs(kv, queue, args.seed, saver, slow, train_block)
    samples, stopped = epochs.run(args.epochs, start, curve, epoch_end)
    mine = shards.train if shards else \
        train.shard(kv.worker_comm.Get_rank(), kv.worker_comm.Get_size())
    result = _finish(kv, tables, train, test, args, start, mine, slow, curve, began, samples,
                     stopped, shards)
    if result is not None:
        # per epoch run here, (min, max) of how often a block was done: [1, 1] = exactly once
        result.update(assign="dynamic", block_rows=rows, blocks=queue.blocks,
                      block_done_counts=epochs.done_counts)
    return result


def _finish(kv, tables: Tables, train, test, args, start: Position, shard, slow, curve: list,
            began: float, samples: int, stopped: int | None, shards=None) -> dict | None:
    """After training: gather the workers' timings, traffic and keys (``shard``: this
    worker's part of the union of trained keys), then the first living worker evaluates
    (with ``shards``, every worker scores its own test rows) and returns the result.
    Collective over the workers."""
    seconds = time.perf_counter() - began
    runs = kv.collective(lambda comm: gather_floats(
        comm, [kv.wait_seconds, slow.slept, seconds, samples]))
    traffic = kv.traffic.report().get(tables.weights.name, {})
    seen = getattr(kv.push_filter(tables.weights), "stats", {}).get("seen", 0)
    sent = kv.collective(lambda comm: gather_floats(
        comm, [traffic.get("wire_bytes", 0), traffic.get("push_kv", 0), seen]))
    model_keys = kv.collective(lambda comm: gather_model_keys(comm, shard))
    scored = kv.collective(lambda comm: gather_scores(comm, kv, tables, shards.test)) \
        if shards and stopped is None else None
    if kv.worker_comm.Get_rank() != 0:  # the first worker alive reports
        return None
    if stopped is not None:
        result = {"stopped_at_step": stopped}
    elif shards:
        result = evaluate_scores(kv, tables, model_keys, scored, shards)
    else:
        result = evaluate(kv, tables, model_keys, train, test)
    result.update(epochs=args.epochs, workers=kv.num_workers, train_logloss=curve,
                  workers_lost=kv.num_workers - kv.worker_comm.Get_size(),
                  servers_lost=len(kv.hosting.dead),
                  # the slowest worker's time: fast workers that finish early do not count
                  samples_per_s=float(runs[:, 3].sum() / max(runs[:, 2].max(), 1e-9)),
                  samples=int(runs[:, 3].sum()),  # rows trained by this run's living workers
                  worker_samples=[int(x) for x in runs[:, 3]],
                  rule=args.rule, rule_params=rule_params(args), table=args.table, lr=args.lr,
                  batch_size=args.batch_size,
                  consistency=consistency_of(args), straggler=args.straggler,
                  straggler_mode=args.straggler_mode if args.straggler else None,
                  wait_seconds=[round(w, 4) for w in runs[:, 0]],
                  straggler_sleep_seconds=round(float(runs[:, 1].sum()), 4),
                  traffic=traffic_summary(sent, args), resumed_from_step=(
                      start.steps_done if start.epoch or start.step else None))
    return result


def run_epoch(kv, tables: Tables, shard, steps: int, first: int, loss_sum: float, l2: float,
              slow: Straggler, saver: Checkpointer, curve: list, epoch: int):
    """Steps ``first..steps-1`` of an epoch over ``shard`` (already in this epoch's order),
    each ended by ``kv.clock()``. Returns (loss sum over the epoch's rows so far, rows run,
    the checkpointed step id if a stop was requested, else None)."""
    rows = 0
    for step, batch in enumerate(shard.batches(steps)):
        if step < first:
            continue
        step_began, waited = time.perf_counter(), kv.wait_seconds
        loss_sum += sgd_step(kv, tables, batch, l2) * batch.n_rows
        rows += batch.n_rows
        slow.after_step(time.perf_counter() - step_began - (kv.wait_seconds - waited))
        kv.clock()
        action = saver.poll() if step + 1 < steps else None
        if action is not None:
            saved = saver.save(epoch, step + 1, curve, loss_sum)
            if action == "stop":
                return loss_sum, rows, saved
    return loss_sum, rows, None


def sgd_step(kv, tables: Tables, batch: SparseDataset, l2: float) -> float:
    """Pull the batch's weights, push the gradient, wait for both pushes to be applied.
    Returns the batch's mean logloss before the update (0 for an empty batch)."""
    if batch.n_rows == 0:
        return 0.0
    mb = lr.minibatch(batch)
    pulls = kv.pull(tables.weights, mb.keys), kv.pull(tables.bias, BIAS_KEY)
    weights, bias = kv.wait(pulls[0]), float(kv.wait(pulls[1])[0])
    loss, grad_weights, grad_bias = lr.loss_and_gradient(mb, weights, bias, l2)
    pushes = (kv.push(tables.weights, mb.keys, grad_weights.astype(np.float32)),
              kv.push(tables.bias, BIAS_KEY, np.array([grad_bias], np.float32)))
    for ts in pushes:
        kv.wait(ts)
    return loss


def _combine_epoch(worker_comm, loss_sum: float, rows: int) -> tuple[float, float]:
    """(mean train logloss over all workers' rows, rows of all workers). Collective over
    the workers: one small Allreduce of float64s per epoch."""
    mine = np.array([loss_sum, rows], np.float64)
    total = np.empty_like(mine)
    worker_comm.Allreduce(mine, total, op=MPI.SUM)
    return float(total[0] / max(total[1], 1.0)), float(total[1])


if __name__ == "__main__":
    import mpips.cli.main

    sys.exit(mpips.cli.main.main(["run", __file__, *sys.argv[1:]]))
