"""SPMD program for tests/mpi/test_fault.py: servers carry on when a worker dies (ULFM).

The last worker SIGKILLs itself a random time after its first acknowledged push, while
every worker pushes rounds of
ones into a dense sum table (worker w: keys [8w, 8w + 8)) and waits for each push; each
worker prints ``ACKED <worker> <rounds acknowledged>`` after every acknowledged push. The
survivors finish, save a checkpoint (the servers save once every *live* worker asked) and
print ``SAVED``. Their own keys must hold exactly their rounds; the dead worker's keys hold
what was acknowledged, or one more round (applied, its answer lost with the worker), never a
part of one (a push is all or nothing).
"""
import argparse
import random
import sys
import threading
import time

import numpy as np

import mpips
from mpips.mpi.fault import leave
from tests.helpers.dying import die_later


def work(kv, table, args) -> None:
    me = kv.worker_rank
    keys = np.arange(8 * me, 8 * me + 8, dtype=np.uint64)
    ones = np.ones((8, 1), np.float32)
    for done in range(1, args.rounds + 1):
        kv.wait(kv.push(table, keys, ones))
        sys.stdout.write(f"ACKED {me} {done}\n")
        sys.stdout.flush()
        if done == 1 and me == kv.num_workers - 1:
            delay = random.Random(args.seed).uniform(0, args.rounds * 0.002)
            threading.Thread(target=die_later, args=(delay,), daemon=True).start()
        time.sleep(0.002)
    kv.save_checkpoint(args.checkpoint_dir, 1, {"rounds": args.rounds})
    print(f"SAVED {me}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", required=True)
    args = p.parse_args()
    ps = mpips.init(servers=args.servers)
    table = ps.dense_table("counts", 64)
    ps.run(lambda kv: work(kv, table, args))
    ps.close()
    if ps.survived_a_failure:  # MPI_Finalize could wait for the dead worker forever
        leave(0)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
