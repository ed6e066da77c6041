"""SPMD program for tests/mpi/test_incremental.py: incremental checkpoints of a running job.

Tables: "w" (sparse, AdaGrad, width 2, hashed placement), "e" (sparse, sum, evicting rows
unseen for 2 clocks) and "d" (dense, 600 rows, SGD). Each step every worker pushes a
heavy-tailed minibatch of keys (small ids and new ones mixed) to "w", a few keys to "e" (some
only once, so that they are evicted later) and a few dense rows, ends the step, and the
workers save the step with ``incremental=True`` (the first save of a launch that restored
nothing is full). After each save worker 0 pulls every key ever pushed and prints ``MODEL
<step> <json>``: the keys and the float32 bit patterns of what it pulled, for the test to
compare with what each checkpoint (a chain of deltas) reads back.

--restore first restores the newest checkpoint (on however many servers this launch has).
"""
import argparse
import json

import numpy as np

import mpips

DENSE = 600


def batch(step: int, worker: int, size: int = 300) -> np.ndarray:
    """A minibatch of a heavy tail: Zipf-drawn small ids, plus ids new at this step."""
    rng = np.random.default_rng(1000 * step + worker)
    popular = rng.zipf(1.3, size).astype(np.uint64) % np.uint64(5000)
    fresh = np.uint64(10**9) + np.uint64(step * 1000 + worker * 100) + np.arange(
        20, dtype=np.uint64)
    return np.unique(np.concatenate([popular, fresh]))


def fading(step: int, worker: int) -> np.ndarray:
    """Keys of "e": a hot few pushed at every step, and ones pushed at this step only."""
    return np.unique(np.concatenate([np.arange(5, dtype=np.uint64),
                                     np.uint64(100 * step + 10 * worker) + np.arange(
                                         10, dtype=np.uint64)]))


def bits(a: np.ndarray) -> list:
    return np.ascontiguousarray(a, np.float32).view(np.uint32).ravel().tolist()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--servers", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--first", type=int, default=1, help="first step of this launch")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--restore", action="store_true")
    p.add_argument("--keep", type=int, default=None)
    a = p.parse_args()
    with mpips.init(servers=a.servers) as ps:
        w = ps.sparse_table("w", width=2, rule="adagrad", lr=0.1, consistency="bsp",
                            placement="hash")
        e = ps.sparse_table("e", rule="sum", evict="unseen:2", consistency="bsp")
        d = ps.dense_table("d", DENSE, rule="sgd", lr=0.5, consistency="bsp")
        if a.restore:
            found = ps.restore(a.root)
            assert found is not None, "nothing to restore"

        def work(kv):
            seen_w, seen_e = set(), set()
            for step in range(1, a.first + a.steps):  # keys pushed before, for the pulls
                for worker in range(kv.num_workers):
                    seen_w.update(batch(step, worker).tolist())
                    seen_e.update(fading(step, worker).tolist())
            for step in range(a.first, a.first + a.steps):
                keys = batch(step, kv.worker_rank)
                rng = np.random.default_rng(step * 7 + kv.worker_rank)
                kv.wait(kv.push(w, keys, rng.standard_normal((keys.size, 2)).astype(np.float32)))
                hot = fading(step, kv.worker_rank)
                kv.wait(kv.push(e, hot, np.ones(hot.size, np.float32)))
                rows = np.unique(rng.integers(0, DENSE, 40)).astype(np.uint64)
                kv.wait(kv.push(d, rows, rng.standard_normal(rows.size).astype(np.float32)))
                kv.clock()
                kv.save_checkpoint(a.root, step, {"step": step}, keep=a.keep,
                                   incremental=True)
                if kv.worker_rank == 0:
                    for worker in range(kv.num_workers):
                        seen_w.update(batch(step, worker).tolist())
                        seen_e.update(fading(step, worker).tolist())
                    kw = np.array(sorted(seen_w), np.uint64)
                    ke = np.array(sorted(seen_e), np.uint64)
                    model = {"w": [kw.tolist(), bits(kv.wait(kv.pull(w, kw)))],
                             "e": [ke.tolist(), bits(kv.wait(kv.pull(e, ke)))],
                             "d": bits(kv.wait(kv.pull(d, np.arange(DENSE, dtype=np.uint64))))}
                    print(f"MODEL {step} {json.dumps(model)}", flush=True)
                kv.clock()

        ps.run(work)


if __name__ == "__main__":
    main()
