"""SPMD program for tests/mpi/test_consistency.py: instrumented reads under a consistency model.

Table "count" is dense with one key per worker, in --copies copies spread over the key space
(so over every server). In each step worker w sleeps a random while (seeded: a different
interleaving per --seed; the last worker --slow-factor times longer), pulls every key and
records what it saw, pushes +1 to its own keys (key w counts the steps of w applied) and calls
``kv.clock()``. With --stop-after K, worker 1 stops after K steps until the others have
finished all theirs (the others' last read waits until worker 1 has stopped, so that it sees
worker 1 at K steps however slowly worker 1 started). With --tau-schedule "0:2,5:0", the
SSP bound changes at steps 0 and 5.

Every worker prints ``RESULT <json>`` with its reads: [clock, tau, fewest steps seen of each
worker (over the copies), most steps seen of each worker].
"""
import argparse
import json
import time

import numpy as np

import mpips


def tau_at(schedule: dict[int, int], step: int) -> int | None:
    starts = [s for s in schedule if s <= step]
    return schedule[max(starts)] if starts else None


def worker_keys(num_workers: int, copies: int, size: int) -> np.ndarray:
    """Key of (copy i, worker w) = i * stride + w: copies spread over every server."""
    stride = size // copies
    return np.array([[i * stride + w for w in range(num_workers)] for i in range(copies)],
                    np.uint64)


def run(kv, table, args, schedule):
    grid = worker_keys(kv.num_workers, args.copies, args.size)
    all_keys = np.sort(grid.reshape(-1))
    mine = np.sort(grid[:, kv.worker_rank])
    rng = np.random.default_rng([args.seed, kv.worker_rank])
    reads, done = [], None
    for step in range(args.steps):
        stopping = args.stop_after is not None
        if stopping and kv.worker_rank == 1 and step == args.stop_after:
            kv.worker_comm.Ibarrier().Wait()  # tell the others: stopped, 2 pushes acknowledged
            done = kv.worker_comm.Ibarrier()  # wait here until every other worker finished
            while not done.Test():
                time.sleep(0.01)
        if stopping and kv.worker_rank != 1 and step == args.steps - 1:
            kv.worker_comm.Ibarrier().Wait()  # the last read comes after worker 1 stopped
        slowdown = args.slow_factor if kv.worker_rank == kv.num_workers - 1 else 1.0
        time.sleep(rng.uniform(0, args.max_sleep) * slowdown)  # before the read: others push
        tau = tau_at(schedule, step)
        if tau is not None:
            kv.set_staleness(table, tau)
        seen = kv.wait(kv.pull(table, all_keys)).reshape(args.copies, kv.num_workers)
        # servers apply independently: record the fewest and most steps seen of each worker
        reads.append([kv.clock_value, tau, seen.min(axis=0).astype(int).tolist(),
                      seen.max(axis=0).astype(int).tolist()])
        kv.wait(kv.push(table, mine, np.ones(mine.size, np.float32)))
        kv.clock()
    if done is None and args.stop_after is not None and kv.worker_rank != 1:
        kv.worker_comm.Ibarrier().Wait()  # release the stopped worker
    kv.barrier("job")  # afterwards every push of every worker is applied
    seen = kv.wait(kv.pull(table, all_keys)).reshape(args.copies, kv.num_workers)
    return {"worker": kv.worker_rank, "reads": reads,
            "after_job_barrier": seen.min(axis=0).astype(int).tolist()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--consistency", default="bsp")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--size", type=int, default=3000)
    p.add_argument("--max-sleep", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slow-factor", type=float, default=1.0,
                   help="the last worker sleeps this many times longer")
    p.add_argument("--stop-after", type=int, default=None)
    p.add_argument("--tau-schedule", default="", help="STEP:TAU,... (ssp only)")
    a = p.parse_args()
    schedule = {int(s): int(t) for s, t in (x.split(":") for x in a.tau_schedule.split(",") if x)}
    with mpips.init(servers=a.servers) as ps:
        table = ps.dense_table("count", a.size, consistency=a.consistency)
        result = ps.run(lambda kv: run(kv, table, a, schedule))
        if ps.is_worker:
            print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
