"""SPMD program for tests/mpi/test_one_sided.py: one-sided pulls equal two-sided ones.

Every dense table exists twice, one_sided=True and two-sided, and receives the same pushes.
Worker 0 then pulls many key sets from both and records whether the rows are bit for bit the
same; worker 1 keeps pulling one-sided while worker 0 makes a server busy with a long AdaGrad
update, and records how many of its pulls finished during that update and whether they were
right. Worker 0 prints ``RESULT <json>``.
"""
import argparse
import json
import time

import numpy as np

import mpips

SIZE, BIG = 120_000, 3_000_000


def key_sets(size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {"all": np.arange(size), "run": np.arange(size // 3, size // 3 + 5000),
            "every_other": np.arange(0, size, 2), "sparse": np.arange(7, size, 997),
            "random": np.unique(rng.integers(0, size, 3000)), "one": np.array([size - 1]),
            "first": np.array([0]), "edges": np.array([0, size // 2 - 1, size // 2, size - 1])}


def fill(kv, tables, width):
    rng = np.random.default_rng(kv.worker_rank)
    for _ in range(2):
        keys = np.arange(kv.worker_rank, SIZE, 3, dtype=np.uint64)
        grads = rng.standard_normal((keys.size, width)).astype(np.float32)
        for table in tables:
            kv.wait(kv.push(table, keys, grads))
        kv.clock()


def compare(kv, one, two) -> dict:
    out = {}
    for name, keys in key_sets(SIZE).items():
        keys = keys.astype(np.uint64)
        a, b = kv.wait(kv.pull(one, keys)), kv.wait(kv.pull(two, keys))
        out[name] = bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))
    return out


def busy_reads(kv, one, big, expect) -> dict:
    """Worker 0 pushes to every row of ``big`` (a long AdaGrad update on one server) while
    worker 1 pulls ``one`` until worker 0 is done; returns worker 1's count and correctness."""
    keys = np.arange(0, SIZE, 5, dtype=np.uint64)
    kv.barrier()
    if kv.worker_rank == 0:
        began = time.perf_counter()
        kv.wait(kv.push(big, np.arange(BIG, dtype=np.uint64), np.ones(BIG, np.float32)))
        kv.worker_comm.Ibarrier().Wait()
        return {"busy_seconds": time.perf_counter() - began}
    done = kv.worker_comm.Ibarrier()
    count, right, latencies = 0, True, []
    while not done.Test():
        t0 = time.perf_counter()
        got = kv.wait(kv.pull(one, keys))
        latencies.append(time.perf_counter() - t0)
        right &= bool(np.array_equal(got, expect[::5]))
        count += 1
    return {"pulls_during_busy": count, "right": right,
            "p50_us": float(np.percentile(latencies, 50) * 1e6) if latencies else None}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--servers", type=int, required=True)
    p.add_argument("--consistency", default="async")
    a = p.parse_args()
    with mpips.init(servers=a.servers) as ps:
        c = a.consistency
        one = ps.dense_table("one", SIZE, one_sided=True, consistency=c)
        two = ps.dense_table("two", SIZE, consistency=c)
        one3 = ps.dense_table("one3", SIZE, width=3, rule="adagrad", one_sided=True, consistency=c)
        two3 = ps.dense_table("two3", SIZE, width=3, rule="adagrad", consistency=c)
        big = ps.dense_table("big", BIG, rule="adagrad", consistency="async")

        def work(kv):
            fill(kv, [one, two], 1)
            fill(kv, [one3, two3], 3)
            kv.barrier("job")
            expect = kv.wait(kv.pull(two, np.arange(SIZE, dtype=np.uint64)))
            result = {"w1": compare(kv, one, two), "w3": compare(kv, one3, two3)}
            result.update(busy_reads(kv, one, big, expect) if c == "async" else {})
            if kv.worker_rank == 1:
                kv.worker_comm.send(result, dest=0, tag=78)
                return None
            result["worker1"] = kv.worker_comm.recv(source=1, tag=78)
            return result

        result = ps.run(work)
        if ps.is_worker and ps.worker_rank == 0:
            print("RESULT " + json.dumps({**result, "mode": ps.rma_mode}), flush=True)


if __name__ == "__main__":
    main()
