"""SPMD program for tests/mpi/test_zero_pulls.py: two BSP FTRL tables fed the same pushes, one
with ``codec="zeros"`` (pull replies leave out all-zero rows, mpips.wire.zero_rows), one raw,
and two async sum tables fed the same pushes through push_pull (each worker on keys of its own, so
that what a reply holds does not hang on when the other workers' pushes arrive).
Worker 0 prints ``RESULT <json>``: whether the pulled values agree bit for bit, the share of
zero weights, and the pulled bytes of the FTRL tables."""
import json

import numpy as np

import mpips

KEYS = 20_000


def main():
    with mpips.init(servers=2) as ps:
        ftrl = {"rule": "ftrl", "alpha": 0.5, "beta": 1.0, "l1": 2.0, "l2": 0.0}
        zeros = ps.sparse_table("zeros", codec="zeros", consistency="bsp", **ftrl)
        raw = ps.sparse_table("raw", consistency="bsp", **ftrl)
        sum_zeros = ps.sparse_table("sum_zeros", codec="zeros")
        sum_raw = ps.sparse_table("sum_raw")

        def work(kv):
            rng = np.random.default_rng(kv.worker_rank)
            keys = np.arange(KEYS, dtype=np.uint64) * np.uint64(7919)
            for _ in range(5):
                grads = (rng.standard_normal(KEYS) * (rng.random(KEYS) < 0.1)).astype(np.float32)
                for table in (zeros, raw):
                    kv.wait(kv.push(table, keys, grads))
                kv.clock()
            pulled = {t.name: kv.wait(kv.pull(t, keys)) for t in (zeros, raw)}
            counts = (rng.random(KEYS) < 0.1).astype(np.float32)  # mostly 0: rows stay zero
            own = keys + np.uint64(kv.worker_rank)  # disjoint: async replies are deterministic
            both = {t.name: kv.wait(kv.push_pull(t, own, counts)) for t in (sum_zeros, sum_raw)}
            traffic = kv.traffic.report()
            same = lambda a, b: bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))
            return {"pull_same": same(pulled["zeros"], pulled["raw"]),
                    "push_pull_same": same(both["sum_zeros"], both["sum_raw"]),
                    "zero_share": float(np.mean(pulled["raw"] == 0)),
                    "pulled": {name: [traffic[name]["pulled_values"], traffic[name]["pulled_bytes"]]
                               for name in ("zeros", "raw")}}

        result = ps.run(work)
        if ps.is_worker and ps.worker_rank == 0:
            print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
