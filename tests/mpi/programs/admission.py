"""SPMD program for tests/mpi/test_admission.py: a sparse table with ``admit="count:3"`` (SGD,
lr 1, init 0) on real servers and workers.

--phase save: every worker pushes gradient 1 for its keys twice (their first and second
pushes: counted, no rows), then worker 0 also pushes its "hot" keys a third time (rows: their
third push applies -1); everything is checkpointed. --phase restore: restore on however
many servers this launch has and push every worker's keys once more: the keys counted twice
before the save get their rows at this third push (-1), the hot ones move to -2. A resumed
model admits as the uninterrupted one would. Worker 0 prints ``RESULT <json>`` with the
pulled weights as runs of equal values; every server prints ``STATS <json>`` (ps.table_stats).
"""
import argparse
import json

import numpy as np
import mpips


def keys_of(worker: int) -> np.ndarray:
    return np.arange(1000 * worker, 1000 * worker + 500, dtype=np.uint64)


HOT = np.arange(0, 50, dtype=np.uint64)  # worker 0's first 50 keys


def runs(values: np.ndarray) -> list:
    """[[value, how many in a row], ...]: a short line (long lines of different ranks can
    interleave in MPICH's output)."""
    out = []
    for v in values.tolist():
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--servers", type=int, required=True)
    p.add_argument("--replicas", type=int, default=0)
    p.add_argument("--phase", choices=("save", "restore"), required=True)
    p.add_argument("--root", required=True)
    a = p.parse_args()
    with mpips.init(servers=a.servers, replicas=a.replicas) as ps:
        table = ps.sparse_table("w", rule="sgd", lr=1.0, admit="count:3", consistency="bsp")
        if a.phase == "restore":
            ps.restore(a.root)

        def work(kv):
            mine = keys_of(kv.worker_rank)
            ones = np.ones(mine.size, np.float32)
            if a.phase == "save":
                for _ in range(2):
                    kv.wait(kv.push(table, mine, ones))
                    kv.clock()
                if kv.worker_rank == 0:
                    kv.wait(kv.push(table, HOT, np.ones(HOT.size, np.float32)))
                kv.clock()
                before = kv.wait(kv.pull(table, mine))
                kv.save_checkpoint(a.root, 1, {"phase": a.phase})
            else:
                before = kv.wait(kv.pull(table, mine))
                kv.wait(kv.push(table, mine, ones))
                kv.clock()
            every = np.concatenate([keys_of(w) for w in range(kv.num_workers)])
            return {"before": runs(before), "after": runs(kv.wait(kv.pull(table, every)))}

        result = ps.run(work)
        if ps.is_server:
            print("STATS " + json.dumps(ps.table_stats()["w"]), flush=True)
        if ps.is_worker and ps.worker_rank == 0:
            print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
