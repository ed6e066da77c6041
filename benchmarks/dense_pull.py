"""Dense-table pulls for kv_throughput.py --dense: one-sided (RMA) against two-sided, and the
latency of a 1,000-key pull from an idle and from a busy server, next to the floor.

* throughput: worker 0 pulls all N keys of a dense table of N rows, --rounds times, from a
  one_sided table and from a two-sided twin;
* latency: 1,000 sorted random keys of that table, pulled --latency-reps times, p50 and p99;
  the floor is a bare Send/Recv ping-pong between worker 0 and server 0 of the same bytes
  (8,000 bytes of keys out, 4,000 bytes of values back);
* busy: the same latency while worker 1 keeps server 0 busy with 1M-row AdaGrad pushes (needs
  --workers 2 or more).
"""
from __future__ import annotations

import time

import numpy as np

LATENCY_KEYS = 1000
BUSY_ROWS = 1_000_000
TAG = 9


def create_tables(ps, size: int) -> dict:
    """Collective: the dense twin tables and the table that keeps a server busy."""
    return {"rma": ps.dense_table("dense_rma", size, one_sided=True),
            "two-sided": ps.dense_table("dense_2s", size),
            "busy": ps.dense_table("busy", BUSY_ROWS * ps.num_servers, rule="adagrad")}


def floor_pingpong(ps, reps: int) -> list[float]:
    """Seconds of each bare ping-pong (worker 0 <-> server 0). Collective over the launch."""
    comm, server = ps.comm, ps.topology.layout.server_rank(0)
    keys = np.zeros(LATENCY_KEYS, np.uint64)
    vals = np.zeros(LATENCY_KEYS, np.float32)
    times = []
    comm.Barrier()
    for _ in range(reps + 10):
        if ps.rank == 0:
            t0 = time.perf_counter()
            comm.Send(keys, server, TAG)
            comm.Recv(vals, server, TAG)
            times.append(time.perf_counter() - t0)
        elif ps.rank == server:
            comm.Recv(keys, 0, TAG)
            comm.Send(vals, 0, TAG)
    comm.Barrier()
    return times[10:]


def measure(kv, tables: dict, size: int, rounds: int, reps: int) -> dict | None:
    """Worker side; returns the figures on worker 0 (None elsewhere). Collective over the
    workers."""
    all_keys = np.arange(size, dtype=np.uint64)
    for name in ("rma", "two-sided"):
        kv.wait(kv.push(tables[name], all_keys, np.ones(size, np.float32)))
    kv.barrier("job")
    result = {}
    if kv.worker_rank == 0:
        out = np.empty(size, np.float32)
        for name in ("rma", "two-sided"):
            seconds = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                kv.wait(kv.pull(tables[name], all_keys, out))
                seconds.append(time.perf_counter() - t0)
            result[("throughput", name)] = (seconds, bool((out == kv.num_workers).all()))
    keys = np.unique(np.random.default_rng(1).integers(0, size, LATENCY_KEYS * 2,
                                                       dtype=np.uint64))[:LATENCY_KEYS]
    for load in ("idle", "busy"):
        if load == "busy" and kv.num_workers < 2:
            break
        result.update(_latencies(kv, tables, keys, load, reps))
    return result if kv.worker_rank == 0 else None


def _latencies(kv, tables, keys, load: str, reps: int) -> dict:
    kv.barrier()
    if kv.worker_rank != 0:
        if kv.worker_rank == 1 and load == "busy":
            rows = np.arange(BUSY_ROWS, dtype=np.uint64)
            grads = np.ones(BUSY_ROWS, np.float32)
            done = kv.worker_comm.Ibarrier()
            while not done.Test():
                kv.wait(kv.push(tables["busy"], rows, grads))
        else:
            kv.worker_comm.Ibarrier().Wait()
        return {}
    out = {}
    for name in ("rma", "two-sided"):
        seconds = []
        for _ in range(reps + 10):
            t0 = time.perf_counter()
            kv.wait(kv.pull(tables[name], keys))
            seconds.append(time.perf_counter() - t0)
        out[("latency", name, load)] = seconds[10:]
    kv.worker_comm.Ibarrier().Wait()
    return out


def rows(args, ps, result: dict, floor: list[float]) -> list[dict]:
    """JSON rows of the dense section (worker 0)."""
    base = {"servers": args.servers, "workers": args.workers, "table": "dense"}
    lines = []
    for (kind, *rest), value in result.items():
        if kind == "throughput":
            seconds, correct = value
            median = float(np.median(seconds))
            lines.append({**base, "system": "mpips", "op": "pull", "path": rest[0],
                          "keys": args.keys, "mkv_per_s": round(args.keys / median / 1e6, 2),
                          "seconds_median": round(median, 6), "correct": correct})
        else:
            lines.append({**base, "system": "mpips", "op": "pull-latency", "path": rest[0],
                          "server": rest[1], **_percentiles(value)})
    lines.append({**base, "system": "mpi-floor", "op": "pull-latency", "path": "send-recv",
                  "server": "idle", **_percentiles(floor)})
    return lines


def _percentiles(seconds) -> dict:
    us = np.asarray(seconds) * 1e6
    return {"keys": LATENCY_KEYS, "reps": int(us.size), "p50_us": round(float(np.percentile(us, 50)), 2),
            "p99_us": round(float(np.percentile(us, 99)), 2)}
