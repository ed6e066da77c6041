"""SPMD program for tests/mpi/test_block_queue.py: workers claim the blocks of several epochs
from a one-sided work queue (mpips.mpi.workqueue, mpips.worker.block_feed) and push a 1 per
block trained into a dense sum table (key = epoch * blocks + block). Worker ``--slow`` sleeps
3x as long per block; with ``--kill W`` worker W SIGKILLs itself in the middle of a block
(after it claimed it, before it marks it done) in epoch 1; with ``--stop-at N`` worker 0
raises STOP after N blocks of epoch 0 and the round ends early, as a stop signal ends one;
``--no-table`` makes no table at all (a launch may have a queue and no table).
The first living worker prints ``RESULT <json>``: per epoch the done counts' min and max,
the table's pushes per block (min, max), blocks each living worker trained, and the rounds.
"""
import argparse
import json
import os
import signal
import sys
import time

import numpy as np

import mpips
from mpips.mpi.fault import leave
from mpips.worker.block_feed import STOP, BlockFeed


def work(kv, table, queue, args) -> dict | None:
    feed = BlockFeed(kv, queue)
    me, trained = kv.worker_rank, []
    report = {"epochs": [], "rounds": [], "stopped_early": False}
    for epoch in range(args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(args.blocks)
        feed.begin_epoch()
        done, rounds, mine = np.zeros(args.blocks, np.int64), 0, 0

        def train(block):
            nonlocal mine
            if args.kill == me and epoch == 1 and mine == 2:
                sys.stdout.write("DYING\n")
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(args.ms / 1000 * (3 if me == args.slow else 1))
            if table is not None:
                key = np.array([epoch * args.blocks + block], np.uint64)
                kv.wait(kv.push(table, key, np.ones((1, 1), np.float32)))
            mine += 1

        def poll():
            return STOP if me == 0 and epoch == 0 and args.stop_at and mine >= args.stop_at \
                and not report["stopped_early"] else 0

        while True:
            end = feed.run_round(order, done, train, poll)
            rounds += 1
            done = end.done
            if end.flags & STOP:
                report["stopped_early"] = True  # a job would save here; this one goes on
            if end.complete:
                break
        trained.append(mine)
        report["epochs"].append([int(done.min()), int(done.max())])
        report["rounds"].append(rounds)
    if table is not None:
        counts = kv.wait(kv.pull(table, np.arange(args.epochs * args.blocks, dtype=np.uint64)))
        counts = counts.reshape(args.epochs, args.blocks)
        report["pushes"] = [[int(c.min()), int(c.max())] for c in counts]
    per_worker = kv.collective(lambda comm: comm.gather(trained, root=0))
    if kv.worker_comm.Get_rank() == 0:
        report["trained"] = per_worker
        return report
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--blocks", type=int, default=40)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--ms", type=float, default=2.0)
    p.add_argument("--slow", type=int, default=-1)
    p.add_argument("--kill", type=int, default=-1)
    p.add_argument("--stop-at", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-table", action="store_true", help="a launch with the queue alone")
    args = p.parse_args()
    ps = mpips.init(servers=1)
    table = None if args.no_table else ps.dense_table("pushes", args.epochs * args.blocks)
    queue = ps.work_queue(args.blocks)
    result = ps.run(lambda kv: work(kv, table, queue, args))
    if result is not None:
        print("RESULT " + json.dumps(result), flush=True)
    ps.close()
    if ps.survived_a_failure:
        leave(0)


if __name__ == "__main__":
    main()
