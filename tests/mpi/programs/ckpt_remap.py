"""SPMD program for tests/mpi/test_checkpoint.py: save on S servers, restore on S'.

--phase save: push seeded AdaGrad gradients into a dense (width 2) and a sparse table, then
checkpoint as step 1. --phase restore: restore the newest checkpoint (on however many
servers this launch has), then save it again as step 2 without any push, so the test can
compare both checkpoints' values and optimizer state bit for bit. Worker 0 prints
``RESULT <json>`` with the pulled rows (as float32 bit patterns) after the push or restore.
"""
import argparse
import json

import numpy as np

import mpips

DENSE, WIDTH = 5000, 2


def sparse_keys(worker: int) -> np.ndarray:
    rng = np.random.default_rng(100 + worker)
    return np.unique(rng.integers(0, 2**64 - 1, 3000, dtype=np.uint64, endpoint=True))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--servers", type=int, required=True)
    p.add_argument("--phase", choices=("save", "restore"), required=True)
    p.add_argument("--root", required=True)
    a = p.parse_args()
    with mpips.init(servers=a.servers) as ps:
        dense = ps.dense_table("dense", DENSE, width=WIDTH, rule="adagrad", lr=0.1,
                               consistency="bsp")
        sparse = ps.sparse_table("sparse", rule="adagrad", lr=0.2, consistency="bsp")
        restored = ps.restore(a.root) if a.phase == "restore" else None

        def work(kv):
            all_sparse = np.unique(np.concatenate([sparse_keys(w) for w in range(kv.num_workers)]))
            if a.phase == "save":
                rng = np.random.default_rng(kv.worker_rank)
                for _ in range(3):
                    keys = np.arange(kv.worker_rank, DENSE, 3, dtype=np.uint64)
                    kv.wait(kv.push(dense, keys, rng.standard_normal((keys.size, WIDTH))))
                    mine = sparse_keys(kv.worker_rank)
                    kv.wait(kv.push(sparse, mine, rng.standard_normal(mine.size)))
                    kv.clock()
            rows = kv.wait(kv.pull(dense, np.arange(DENSE, dtype=np.uint64)))
            srows = kv.wait(kv.pull(sparse, all_sparse))
            kv.save_checkpoint(a.root, 1 if a.phase == "save" else 2, {"phase": a.phase})
            return {"dense": rows.view(np.uint32).ravel().tolist()[:4000],
                    "dense_sum": float(rows.astype(np.float64).sum()),
                    "sparse": srows.view(np.uint32).tolist(),
                    "restored": None if restored is None else restored["checkpoint_step"]}

        result = ps.run(work)
        if ps.is_worker and ps.worker_rank == 0:
            print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
