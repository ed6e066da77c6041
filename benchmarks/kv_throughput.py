"""Push/pull throughput of mpips next to the bare-MPI floor, measured in the same run.

The ps-lite kv_app_benchmark workload with a real sum: each worker pushes N sorted uint64
keys spread over the whole key space (key_i = floor(2**64/N)*i + worker_rank) with float32
values into a sparse "sum" table, then pulls them back. The floor moves the same bytes
between the same ranks with plain buffer Send/Recv and no server work.

    python benchmarks/kv_throughput.py --keys 10000000 --servers 1 --workers 1
    python benchmarks/kv_throughput.py --keys 1000000 --codec keycache      # codec on and off

With --codec TEXT (mpips.wire.codec words, e.g. "keycache", "keycache,zeros,fp16") the same
pushes also go to a second table with that codec, reported next to the raw table, with the
bytes each pushed key-value cost on the wire (``bytes_per_kv``: 12 raw for float32 values).

Started without mpiexec, it launches itself on servers+workers ranks through
mpips.launch.launcher. Prints one JSON object per line (system, op, keys, servers, workers,
mkv_per_s, ...) on stdout and appends them to --out.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import dense_pull  # benchmarks/dense_pull.py, next to this script
from jsonlines import emit
from selflaunch import mpi_library, run_on_ranks



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=10_000_000, help="keys per worker (N)")
    p.add_argument("--servers", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--replicas", type=int, default=0,
                   help="copies of each key range on other servers: a push is acknowledged "
                        "once every copy has its rows (needs --servers > replicas)")
    p.add_argument("--placement", choices=("hash", "range"), default="hash",
                   help="how the sparse table's keys map to servers (default hash, the "
                        "table default; range: contiguous key ranges)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per operation")
    p.add_argument("--dense", action="store_true",
                   help="also dense pulls: one-sided (RMA) vs two-sided, and 1,000-key pull "
                        "latency from an idle and (with --workers >= 2) a busy server")
    p.add_argument("--latency-reps", type=int, default=2000, help="pulls per latency figure")
    p.add_argument("--codec", default="", metavar="TEXT",
                   help='also push through a table with this codec, e.g. "keycache"')
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "kv_throughput.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    args = p.parse_args(argv)
    if not 0 <= args.replicas < args.servers:
        p.error(f"--replicas {args.replicas} needs --servers >= {args.replicas + 1}")
    return args


def worker_keys(n: int, worker: int) -> np.ndarray:
    return np.arange(n, dtype=np.uint64) * np.uint64(2**64 // n) + np.uint64(worker)


def timed(comm, fn) -> float:
    """Seconds for fn() on the slowest worker (collective over the workers)."""
    comm.Barrier()
    t0 = time.perf_counter()
    fn()
    elapsed = np.array([time.perf_counter() - t0])
    comm.Allreduce(elapsed.copy(), elapsed, op=__import__("mpi4py.MPI").MPI.MAX)
    return float(elapsed[0])


def floor_rounds(ps, keys, vals, rounds: int) -> dict[str, list[float]]:
    """Bare Send/Recv of the same bytes, split per server like a push/pull. Collective."""
    comm, layout = ps.comm, ps.topology.layout
    parts = np.concatenate([[0], np.searchsorted(keys, ps.tables["bench"].partition.boundaries()),
                            [keys.size]]) if ps.is_worker else None
    ack = np.zeros(1, np.uint64)
    pulled = np.empty_like(vals)  # the server's buffer: reusing it keeps page faults out
    times = {"push": [], "pull": []}
    for _ in range(rounds):
        for op in ("push", "pull"):
            if ps.is_server:
                serve_floor(ps, op, keys, pulled, ack)
            else:
                times[op].append(timed(ps.worker_comm, lambda: drive_floor(
                    comm, layout, op, keys, vals, pulled, parts, ack)))
            comm.Barrier()
    return times


def drive_floor(comm, layout, op, keys, vals, pulled, parts, ack):
    for s in range(layout.num_servers):
        lo, hi = int(parts[s]), int(parts[s + 1])
        dest = layout.server_rank(s)
        comm.Send(keys[lo:hi], dest, 7)
        if op == "push":
            comm.Send(vals[lo:hi], dest, 7)
            comm.Recv(ack, dest, 7)
        else:
            comm.Recv(pulled[lo:hi], dest, 7)


def serve_floor(ps, op, buf_k, buf_v, ack):
    from mpi4py import MPI

    comm = ps.comm
    for _ in range(ps.num_workers):
        st = MPI.Status()
        comm.Probe(MPI.ANY_SOURCE, 7, st)
        src, count = st.Get_source(), st.Get_count(MPI.BYTE) // 8
        comm.Recv(buf_k[:count], src, 7)
        if op == "push":
            comm.Recv(buf_v[:count], src, 7)
            comm.Send(ack, src, 7)
        else:
            comm.Send(buf_v[:count], src, 7)


def mpips_rounds(kv, table, keys, vals, rounds: int):
    """(times per op, pulled sums correct, wire bytes per pushed key-value in timed rounds)."""
    out = np.empty(keys.size, np.float32)
    kv.wait(kv.push(table, keys, vals))  # first push inserts the keys (and fills key caches)
    before = kv.traffic.report()[table.name]
    times = {"push": [], "pull": []}
    for _ in range(rounds):
        times["push"].append(timed(kv.worker_comm, lambda: kv.wait(kv.push(table, keys, vals))))
        times["pull"].append(timed(kv.worker_comm, lambda: kv.wait(kv.pull(table, keys, out))))
    after = kv.traffic.report()[table.name]
    per_kv = (after["wire_bytes"] - before["wire_bytes"]) / (after["push_kv"] - before["push_kv"])
    expected = np.float32(rounds + 1)
    return times, bool(np.all(out == expected)), round(per_kv, 3)


def run_tables(kv, tables, keys, vals, rounds):
    return [mpips_rounds(kv, table, keys, vals, rounds) for table in tables]


def report(args, ps, system, times, extra=None):
    lines = []
    for op, secs in times.items():
        median = float(np.median(secs))
        row = {"system": system, "op": op, "keys": args.keys, "servers": args.servers,
               "workers": args.workers, "placement": args.placement,
               "mkv_per_s": round(args.keys * args.workers / median / 1e6, 2),
               "seconds_median": round(median, 6), "rounds": len(secs)}
        row.update(extra or {})
        lines.append(row)
    return lines


def bench(args) -> None:
    import mpips

    ps = mpips.init(servers=args.servers, replicas=args.replicas)
    tables = [ps.sparse_table("bench", rule="sum", placement=args.placement)]
    if args.codec:
        tables.append(ps.sparse_table("bench_coded", rule="sum", codec=args.codec,
                                      placement=args.placement))
    dense = dense_pull.create_tables(ps, args.keys) if args.dense else None
    keys = worker_keys(args.keys, ps.worker_rank) if ps.is_worker else np.empty(args.keys, np.uint64)
    vals = np.ones(args.keys, np.float32)
    floor = floor_rounds(ps, keys, vals, (args.rounds + 1) // 2)
    pingpong = dense_pull.floor_pingpong(ps, args.latency_reps) if args.dense else []

    def work(kv):
        sparse = run_tables(kv, tables, keys, vals, args.rounds)
        extra = dense_pull.measure(kv, dense, args.keys, args.rounds,
                                   args.latency_reps) if args.dense else None
        return sparse, extra

    results = ps.run(work)
    floor_after = floor_rounds(ps, keys, vals, args.rounds // 2 + 1)
    if ps.is_worker and ps.worker_rank == 0:
        results, extra = results
        floor = {op: floor[op] + floor_after[op] for op in floor}
        rows = report(args, ps, "mpi-floor", floor)
        floor_rate = {r["op"]: r["mkv_per_s"] for r in rows}
        ours = []
        for table, (times, correct, per_kv) in zip(tables, results):
            ours += report(args, ps, "mpips", times, {
                "correct": correct, "table": "sparse", "rule": "sum", "codec": table.codec,
                "push_bytes_per_kv": per_kv, "replicas": args.replicas})
        for row in ours:
            row["fraction_of_floor"] = round(row["mkv_per_s"] / floor_rate[row["op"]], 3)
            if row["op"] != "push":
                del row["push_bytes_per_kv"]
        if extra is not None:
            ours += dense_pull.rows(args, ps, extra, pingpong)
        library = mpi_library()
        emit([{**r, "mpi": library, "rma": ps.rma_mode} for r in rows + ours], args.out)
    ps.close()


def main() -> int:
    args = parse_args()
    return run_on_ranks(__file__, args.servers + args.workers, bench, args)


if __name__ == "__main__":
    sys.exit(main())
