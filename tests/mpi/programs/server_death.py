"""SPMD program for tests/mpi/test_server_failover.py: a server dies, the job carries on
(issue 8; ``mpips.init(replicas=1)`` in a ULFM launch).

Every worker pushes rounds of ones into a dense sum table (worker w: keys w, w + W, ...,
spread over every server) and gradients into a sparse AdaGrad table (its own keys, on every
server), waits for each round, and prints ``ACKED <worker> <rounds>``. With --kill-server S,
server S SIGKILLs itself a random time (seeded) after it started serving. At the end each worker pulls its
rows and prints ``COUNTS <worker> <min> <max>`` (each must equal the rounds: a lost
acknowledged push shows as fewer, a push applied twice as more) and ``MODEL <worker>
<sha256>`` of its AdaGrad rows and accumulators' effect, which must equal a run nobody killed.
With --checkpoint-dir the rounds end with a checkpoint; with --resume as well, the run
restores it and pushes only to the AdaGrad table, so the counts a killed server's segment
holds afterwards can only have come from the restored rows (copied to its replica holders).
--kill-server takes several servers (they die at the same moment), --replicas the copies
kept, and --kill-within a window from the start for the kill (default: 0.05 s, or 0.3 s after
a restore, to 80 % of the rounds).
"""
import argparse
import hashlib
import random
import threading
import time

import numpy as np

import mpips
from mpips.mpi.fault import leave
from tests.helpers.dying import die_later

ROWS = 96


def die_while_serving(ps, delay: float) -> None:
    """``die_later(delay)`` counted from when this server starts serving (past run()'s
    collective set-up, which across hosts takes longer than the kill window)."""
    while ps.server is None:
        time.sleep(0.001)
    die_later(delay)


def work(kv, counts, weights, args) -> None:
    me, workers = kv.worker_rank, kv.num_workers
    keys = np.arange(me, ROWS, workers, dtype=np.uint64)
    ones = np.ones((keys.size, 1), np.float32)
    sparse_keys = np.sort(np.unique(np.random.default_rng(me).integers(
        0, 2**64 - 1, 200, dtype=np.uint64, endpoint=True)))
    rng = np.random.default_rng(100 + me)
    for done in range(1, args.rounds + 1):
        grads = rng.standard_normal((sparse_keys.size, 2)).astype(np.float32)
        pushed = [kv.push(weights, sparse_keys, grads)]
        if not args.resume:  # a resumed run leaves the counts as restored
            pushed.append(kv.push(counts, keys, ones))
        for ts in pushed:
            kv.wait(ts)
        kv.clock()
        print(f"ACKED {me} {done}", flush=True)
        time.sleep(args.pause)
    if args.checkpoint_dir and not args.resume:
        kv.save_checkpoint(args.checkpoint_dir, args.rounds, {"rounds": args.rounds})
    got = kv.wait(kv.pull(counts, keys))
    print(f"COUNTS {me} {int(got.min())} {int(got.max())}", flush=True)
    model = kv.wait(kv.pull(weights, sparse_keys))
    print(f"MODEL {me} {hashlib.sha256(model.tobytes()).hexdigest()}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--servers", type=int, default=3)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--pause", type=float, default=0.002)
    p.add_argument("--kill-server", type=lambda t: [int(s) for s in t.split(",")], default=[],
                   help="server index(es) that die, e.g. 1 or 1,2")
    p.add_argument("--kill-within", type=float, default=None,
                   help="the kill comes at a random moment of the first this many seconds")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--one-sided", action="store_true", help="the dense table is one-sided")
    p.add_argument("--codec", default="", help="codec of the sparse table, e.g. keycache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--consistency", default="async", help="of both tables (async, bsp, ssp:2)")
    p.add_argument("--checkpoint-dir", default=None, help="save here after the rounds")
    p.add_argument("--resume", action="store_true",
                   help="restore from --checkpoint-dir and push only to the sparse table")
    args = p.parse_args()
    ps = mpips.init(servers=args.servers, replicas=args.replicas)
    counts = ps.dense_table("counts", ROWS, consistency=args.consistency,
                            one_sided=args.one_sided)
    weights = ps.sparse_table("weights", width=2, rule="adagrad", lr=0.05,
                              consistency=args.consistency, codec=args.codec)
    if args.resume:
        ps.restore(args.checkpoint_dir)
    if ps.is_server and ps.server_rank in args.kill_server:
        if args.kill_within is not None:  # any moment, right after the restore included
            delay = random.Random(args.seed).uniform(0.0, args.kill_within)
        else:  # after a restore, once the restored rows surely reached the copy holders
            delay = random.Random(args.seed).uniform(0.3 if args.resume else 0.05,
                                                     args.rounds * args.pause * 0.8)
        threading.Thread(target=die_while_serving, args=(ps, delay), daemon=True).start()
    ps.run(lambda kv: work(kv, counts, weights, args))
    ps.close()
    if ps.survived_a_failure:  # MPI_Finalize could wait for the dead server forever
        leave(0)


if __name__ == "__main__":
    main()
