"""A worker's training of sparse logistic regression (jobs/sparse_lr.py sets up the data, the
tables and the launch): the SGD step, the static loop (each worker its shard, every step ended
by ``kv.clock()``), the dynamic one (blocks claimed from the work queue, jobs/block_epochs.py),
and the gathering of timings, traffic and the model's keys for the final evaluation
(jobs/lr_evaluation.py)."""
from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np

from mpips.jobs.block_epochs import BlockEpochs, block_bounds
from mpips.jobs.checkpointing import Checkpointer
from mpips.jobs.lr_evaluation import (BIAS_KEY, evaluate, evaluate_scores, gather_model_keys,
                                      gather_scores)
from mpips.jobs.position import Position
from mpips.jobs.runtime import (Straggler, consistency_of, gather_floats, sum_over_workers,
                                traffic_summary)
from mpips.ml import lr
from mpips.ml.dataset import SparseDataset
from mpips.wire.filters import make_filter


class Tables(NamedTuple):
    weights: object  # TableSpec of the feature weights
    bias: object  # TableSpec of the intercept (dense, one key)


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
        first, loss0 = start.entering(epoch, kv.worker_rank)
        epoch_began = time.perf_counter()
        loss_sum, rows, stopped = run_epoch(kv, tables, shard.take(order), steps, first, loss0,
                                            gradient_l2(args), slow, saver, curve, epoch)
        samples += rows
        if stopped is not None:
            break
        loss, epoch_rows = epoch_loss(kv, loss_sum, shard.n_rows)
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
        loss, _ = epoch_loss(kv, loss_sum, epoch_rows)
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


def epoch_loss(kv, loss_sum: float, rows: float) -> tuple[float, float]:
    """(mean train logloss over all workers' rows, rows of all workers) from each worker's
    loss sum and rows. Collective over the workers: one small Allreduce per epoch."""
    total = kv.collective(lambda comm: sum_over_workers(comm, [loss_sum, rows]))
    return float(total[0] / max(total[1], 1.0)), float(total[1])
