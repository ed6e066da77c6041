"""Sparse logistic regression with minibatch SGD on the parameter server, BSP, SSP or async.

    mpips launch -n 5 -- -m mpips run sparse_lr --servers 2 --data w8a --epochs 10
    python jobs/sparse_lr.py --servers 2 --synthetic 20000      # under mpiexec -n 4

Every rank loads (or generates, same seed) the data and cuts the same shuffled train/test
split; worker i trains on block i of the shuffled train rows. With an mpips data file (.h5) or
--read parts, worker i reads only part i of the file instead (jobs/lr_shards.py), and with
--assign dynamic workers claim blocks of rows as they get free (jobs/block_epochs.py); the
training loops are jobs/lr_training.py. Each step every worker pulls
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

import os
import sys
import time

from mpips.errors import MpipsError, UsageError
from mpips.jobs import lr_shards
from mpips.jobs.block_epochs import block_count
from mpips.jobs.checkpointing import (SaveSignal, add_checkpoint_arguments, checkpoint_problems,
                                      open_checkpoints)
from mpips.jobs.lr_shards import Shards, sharded
from mpips.jobs.lr_training import Tables, block_rows, rule_params, train_and_evaluate
from mpips.jobs.position import Position
from mpips.jobs.runtime import (add_row_policy_arguments, consistency_of, consistency_problems,
                                out_of_bounds, parse_filter, parse_straggler, report,
                                row_policy_problems, test_split_problems)
from mpips.core.rules import make_rule
from mpips.ml.dataset import SparseDataset
from mpips.ml.libsvm import read_libsvm, read_libsvm_pair
from mpips.ml.synthetic import make_sparse_classification
from mpips.mpi.agree import everywhere

DEFAULT_SYNTHETIC_ROWS = 100_000
DEFAULT_TEST_FRACTION = 0.2
"""Share of the rows held out as the test set without --test-data."""
OPTION_BOUNDS = (("--features", 1, True), ("--nnz", 1, True), ("--seed", 0, True),
                 ("--epochs", 1, True), ("--batch-size", 1, True), ("--lr", 0.0, False),
                 ("--l2", 0.0, True), ("--l1", 0.0, True), ("--beta", 0.0, True),
                 ("--compute-ms", 0.0, True))
"""Lower bounds of the numeric options (runtime.out_of_bounds)."""


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


if __name__ == "__main__":
    import mpips.cli.main

    sys.exit(mpips.cli.main.main(["run", __file__, *sys.argv[1:]]))
