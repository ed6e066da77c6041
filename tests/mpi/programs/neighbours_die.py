"""A job for ``mpips run`` (tests/mpi/test_startup.py): servers 0 and 1, neighbours on the
ring, SIGKILL themselves at the same moment (seeded) while the workers push, in a launch with
``--replicas 1``: segment 0 has lost both its host and its copy, so the launch must end
(exit 76) and leave no process behind."""
import os
import random
import signal
import threading
import time

import numpy as np


def add_arguments(parser):
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="unused: lets a test find its own ranks")


def _die_after(delay: float) -> None:
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)


def main(ps, args):
    table = ps.dense_table("counts", 96)
    if ps.is_server and ps.server_rank in (0, 1):
        delay = random.Random(args.seed).uniform(0.05, 0.5)
        threading.Thread(target=_die_after, args=(delay,), daemon=True).start()

    def work(kv):
        keys = np.arange(kv.worker_rank, 96, kv.num_workers, dtype=np.uint64)
        for _ in range(2000):
            kv.wait(kv.push(table, keys, np.ones((keys.size, 1), np.float32)))
            time.sleep(0.002)

    ps.run(work)
