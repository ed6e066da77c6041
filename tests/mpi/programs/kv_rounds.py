"""SPMD program for tests/mpi/test_kv.py: workers push R rounds, then everybody pulls.

Worker w pushes, in round r, value (w + 1) * (r + 1) for every key of its key set
(overlapping between workers), width ``--width``. Worker 0 prints one line
``RESULT <json>`` with the pulled rows of the union of all key sets plus never-pushed keys.
"""
import argparse
import json

import numpy as np

import mpips


def key_set(kind: str, worker: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(worker)
    if kind == "dense":
        keys = 3 + rng.choice(size - 3, size=size // 2, replace=False)  # 0..2 never pushed
    else:  # spread over the whole uint64 space, with keys shared between workers
        keys = np.concatenate([rng.integers(0, 2**64 - 1, size=size // 2, dtype=np.uint64),
                               np.arange(0, 2**64 - 2**60, 2**60, dtype=np.uint64)])
    return np.unique(keys.astype(np.uint64))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--servers", type=int, required=True)
    p.add_argument("--kind", choices=["dense", "sparse"], required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--size", type=int, default=200_000, help="dense size; keys per worker ~ size/2")
    p.add_argument("--init", type=float, default=0.0)
    a = p.parse_args()
    with mpips.init(servers=a.servers) as ps:
        if a.kind == "dense":
            table = ps.dense_table("t", a.size, width=a.width, init=a.init)
        else:
            table = ps.sparse_table("t", width=a.width, init=a.init)
        result = ps.run(lambda kv: work(kv, table, a))
        if ps.is_worker and ps.worker_rank == 0:
            print("RESULT " + json.dumps(result), flush=True)


def work(kv, table, a):
    mine = key_set(a.kind, kv.worker_rank, a.size)
    for r in range(a.rounds):
        vals = np.full((mine.size, a.width), (kv.worker_rank + 1) * (r + 1), np.float32)
        kv.wait(kv.push(table, mine, vals))
    kv.barrier()
    everyone = np.unique(np.concatenate([key_set(a.kind, w, a.size) for w in range(kv.num_workers)]))
    never = (np.array([0, 1, 2], np.uint64) if a.kind == "dense"
             else np.setdiff1d(np.array([7, 2**63 + 11, 2**64 - 1], np.uint64), everyone))
    pulled = kv.wait(kv.pull(table, everyone)).reshape(everyone.size, a.width)
    unpushed = kv.wait(kv.pull(table, never)).reshape(never.size, a.width)
    return {"keys": [str(k) for k in everyone[:: max(1, everyone.size // 500)]],
            "sampled": pulled[:: max(1, everyone.size // 500)].tolist(),
            "num_keys": int(everyone.size), "total": float(pulled.sum(dtype=np.float64)),
            "unpushed": unpushed.tolist(), "workers": kv.num_workers}


if __name__ == "__main__":
    main()
