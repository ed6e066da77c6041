"""Sparse-table traffic as real jobs make it, next to the bare-MPI floor of the same bytes.

A table of --keys random uint64 keys (10M by default) is filled first; then every request a
worker sends is a minibatch: the unique sorted keys of --draws Zipf(--zipf) draws over the
table's keys (about 24,000 keys for 100,000 draws at s=1.1 over 10M keys), a fresh one
every step, with --new-fraction of its keys replaced by keys the table does not hold yet.

How the table was filled decides where its rows lie, and that moves every figure: rows are
numbered in the order keys arrive, and the rows of keys that requests name often share cache
lines only when those keys arrived close together. ``--fill key-order`` (the default) inserts
the keys in sorted blocks; ``--fill arrival`` inserts them in the order a Zipf stream first
names them (rank k after an exponential wait of mean k**s), one sorted request's worth at a
time, as a table that the traffic itself built. ``--save DIR`` checkpoints the table after
the timed steps (their pushes gave the keys requests name often the largest sums of squared
gradients) and ``--restore DIR`` starts from that checkpoint instead of a fill (``fill``
"restored" in the rows), its rows laid out as a restore lays them.

Timed, per step (p50/p99 per step, and key-values per second over all workers):

* ``push``: push gradients of a fresh minibatch and wait for the acknowledgement;
* ``pull``: pull the rows of a fresh minibatch;
* ``pull-push``: a training step, pull then push of the same fresh minibatch.

In the same run, the **floor** sends the same bytes between the same ranks with bare mpi4py:
one message to each server (the request's keys, plus its values for a push) and one back
(a word for a push, the values for a pull), no server work. The servers report what their
store holds per stored key (``bytes_per_key``: index and rows; ``rss_bytes_per_key``: the
process's resident memory).

    python benchmarks/kv_minibatch.py                                  # 10M keys, 1+1 ranks
    python benchmarks/kv_minibatch.py --new-fraction 0.1
    python benchmarks/kv_minibatch.py --fill arrival
    python benchmarks/kv_minibatch.py --fill arrival --save /tmp/mb && \
        python benchmarks/kv_minibatch.py --restore /tmp/mb
    python benchmarks/kv_minibatch.py --keys 1000000 --servers 2 --workers 2

Started without mpiexec it launches itself on servers+workers ranks through
mpips.launch.launcher. Prints one JSON object per line and appends them to --out.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

from jsonlines import emit
from selflaunch import mpi_library, run_on_ranks

FILL_BLOCK = 1 << 20
ARRIVAL_BLOCK = 1 << 15
"""Keys per push of an ``--fill arrival`` fill: about one request's worth."""
FILLS = ("key-order", "arrival")
OPS = ("push", "pull", "pull-push")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=10_000_000, help="keys in the table (M)")
    p.add_argument("--draws", type=int, default=100_000,
                   help="Zipf draws per request; the request is their unique keys (B)")
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent s (> 1)")
    p.add_argument("--new-fraction", type=float, default=0.0,
                   help="share of each request's keys that the table does not hold yet")
    p.add_argument("--fill", choices=FILLS, default="key-order",
                   help="order the table's keys are first inserted in: key-order (sorted "
                        "blocks; default) or arrival (the order a Zipf stream first names "
                        "them, as a table built by traffic)")
    p.add_argument("--save", metavar="DIR", default="",
                   help="checkpoint the table under DIR after the timed steps")
    p.add_argument("--restore", metavar="DIR", default="",
                   help="start from the newest checkpoint under DIR (written by --save with "
                        "the same --keys and --seed) instead of filling the table")
    p.add_argument("--steps", type=int, default=200, help="timed steps per op and worker")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before each op")
    p.add_argument("--servers", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rule", default="adagrad", choices=("sum", "sgd", "adagrad"),
                   help="update rule of the table (default adagrad)")
    p.add_argument("--width", type=int, default=1, help="floats per row")
    p.add_argument("--replicas", type=int, default=0,
                   help="copies of each key range on other servers: a push is acknowledged "
                        "once every copy has its rows (needs --servers > replicas)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "kv_minibatch.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    args = p.parse_args(argv)
    if args.keys < 1 or args.draws < 1 or args.steps < 1 or args.warmup < 0 or args.width < 1:
        p.error("--keys, --draws, --steps and --width must be >= 1, --warmup >= 0")
    if not args.zipf > 1.0:
        p.error(f"--zipf must be > 1, got {args.zipf}")
    if not 0.0 <= args.new_fraction < 1.0:
        p.error(f"--new-fraction must be in [0, 1), got {args.new_fraction}")
    if not 0 <= args.replicas < args.servers:
        p.error(f"--replicas {args.replicas} needs --servers >= {args.replicas + 1}")
    if args.restore:
        args.fill = "restored"
    return args


def table_keys(args) -> np.ndarray:
    """The table's keys, random uint64 (the same on every worker); index i is Zipf rank i+1."""
    return np.random.default_rng([args.seed, 1]).integers(0, 2**64, args.keys, np.uint64,
                                                          endpoint=False)


def requests(args, keys: np.ndarray, worker: int, count: int, stream: int) -> list[np.ndarray]:
    """``count`` minibatches for ``worker``: unique sorted keys of Zipf draws over ``keys``,
    a share ``new_fraction`` of them replaced by keys no request used before."""
    rng = np.random.default_rng([args.seed, 2, worker, stream])
    out = []
    for _ in range(count):
        ranks = rng.zipf(args.zipf, args.draws)
        batch = np.unique(keys[ranks[ranks <= keys.size] - 1])
        new = int(round(args.new_fraction * batch.size))
        if new:
            keep = rng.choice(batch.size, batch.size - new, replace=False)
            fresh = rng.integers(0, 2**64, new, np.uint64, endpoint=False)
            batch = np.unique(np.concatenate([batch[keep], fresh]))
        out.append(batch)
    return out


def arrival_order(args, keys: np.ndarray) -> np.ndarray:
    """``keys`` in the order a Zipf(s) stream over them first names them: key i (rank i+1,
    drawn with probability proportional to (i+1)**-s) first comes after an exponential wait
    of mean (i+1)**s."""
    rng = np.random.default_rng([args.seed, 4])
    ranks = np.arange(1, keys.size + 1, dtype=np.float64)
    return keys[np.argsort(rng.exponential(size=keys.size) * ranks ** args.zipf)]


def fill(kv, table, keys: np.ndarray, args) -> float:
    """Insert every key once, in --fill's order, in sorted blocks (workers share the blocks);
    returns M key-values/s."""
    arrival = args.fill == "arrival"
    ordered = arrival_order(args, keys) if arrival else np.sort(keys)
    size = ARRIVAL_BLOCK if arrival else FILL_BLOCK
    blocks = range(kv.worker_rank * size, ordered.size, kv.num_workers * size)
    grads = np.zeros((size, args.width), np.float32)
    kv.worker_comm.Barrier()
    began = time.perf_counter()
    for lo in blocks:
        block = np.sort(ordered[lo:lo + size]) if arrival else ordered[lo:lo + size]
        kv.wait(kv.push(table, block, grads[:block.size]))
    kv.barrier("job")
    return keys.size / (time.perf_counter() - began) / 1e6


def run_op(kv, table, op: str, batches: list[np.ndarray], args) -> tuple[list[float], int, float]:
    """Latencies (s) of each step, keys moved, seconds for all steps (this worker)."""
    width = args.width
    most = max(b.size for b in batches)
    grads = np.random.default_rng([args.seed, 3]).standard_normal((most, width)).astype(np.float32)
    out = np.empty((most, width), np.float32)
    latencies, moved = [], 0
    began = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        n = batch.size
        if op in ("pull", "pull-push"):
            kv.wait(kv.pull(table, batch, out[:n]))
        if op in ("push", "pull-push"):
            kv.wait(kv.push(table, batch, grads[:n]))
        latencies.append(time.perf_counter() - t0)
        moved += n
    return latencies, moved, time.perf_counter() - began


def measure(kv, table, keys, args) -> dict:
    """Every op's figures on this worker: {op: (latencies, keys moved, seconds)}."""
    results = {"fill": None if args.restore else fill(kv, table, keys, args)}
    for stream, op in enumerate(OPS):
        batches = requests(args, keys, kv.worker_rank, args.warmup + args.steps, stream)
        run_op(kv, table, op, batches[:args.warmup], args)
        kv.barrier("job")
        results[op] = run_op(kv, table, op, batches[args.warmup:], args)
        kv.barrier("job")
    if args.save:
        kv.save_checkpoint(args.save, 1, {"keys": args.keys, "seed": args.seed})
    return results


def floor_op(ps, op: str, batches, args) -> tuple[list[float], int, float] | None:
    """The same bytes as ``op`` with bare Send/Recv: per request one message to each server
    and one back. Collective over the launch; figures on workers, None on servers."""
    from mpi4py import MPI

    comm, layout, servers = ps.comm, ps.topology.layout, ps.num_servers
    messages = {"push": 1, "pull": 1, "pull-push": 2}[op]
    width = args.width
    if ps.is_server:
        inbox = np.empty(1 << 22, np.uint8)
        values = np.zeros(1 << 22, np.uint8)
        ack = np.zeros(1, np.uint64)
        status = MPI.Status()
        for _ in range(ps.num_workers * len(batches) * messages):
            comm.Probe(MPI.ANY_SOURCE, 9, status)
            source, size = status.Get_source(), status.Get_count(MPI.BYTE)
            if size > inbox.size:
                inbox, values = np.empty(size, np.uint8), np.zeros(size, np.uint8)
            comm.Recv(inbox[:size], source, 9)
            if inbox[:8].view(np.uint64)[0] == 1:  # a push: acknowledge
                comm.Send(ack, source, 9)
            else:  # a pull of (size - 8) / 8 keys: answer their rows
                comm.Send(values[:(size - 8) // 8 * 4 * width], source, 9)
        return None
    prepared = [_floor_messages(b, servers, width) for b in batches]
    ack = np.zeros(1, np.uint64)
    most = max(b.size for b in batches)
    pulled = np.empty(most * 4 * width, np.uint8)
    latencies, moved = [], 0
    ps.worker_comm.Barrier()
    began = time.perf_counter()
    for batch, (pushes, pulls) in zip(batches, prepared):
        t0 = time.perf_counter()
        if op in ("pull", "pull-push"):
            for server, message in enumerate(pulls):
                dest = layout.server_rank(server)
                comm.Send(message, dest, 9)
                comm.Recv(pulled[:(message.size - 8) // 8 * 4 * width], dest, 9)
        if op in ("push", "pull-push"):
            for server, message in enumerate(pushes):
                dest = layout.server_rank(server)
                comm.Send(message, dest, 9)
                comm.Recv(ack, dest, 9)
        latencies.append(time.perf_counter() - t0)
        moved += batch.size
    return latencies, moved, time.perf_counter() - began


def _floor_messages(batch: np.ndarray, servers: int, width: int):
    """Per server: the push message (a leading 1 word, keys, values) and the pull message
    (a leading 0 word, keys). The word lets the floor's server tell them apart."""
    pushes, pulls = [], []
    for part in np.array_split(batch, servers):
        vals = np.ones(part.size * width, np.float32)
        pushes.append(np.concatenate([np.array([1], np.uint64).view(np.uint8),
                                      part.view(np.uint8), vals.view(np.uint8)]))
        pulls.append(np.concatenate([np.array([0], np.uint64).view(np.uint8), part.view(np.uint8)]))
    return pushes, pulls


def memory_report(ps) -> tuple[float, float, int]:
    """(store bytes, resident bytes, stored keys) summed over the servers, on world rank 0.
    Collective over the launch."""
    from mpi4py import MPI

    mine = np.zeros(3, np.float64)
    if ps.is_server:
        mine[:] = (ps.memory_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                   ps.stored_keys())
    total = np.zeros_like(mine)
    ps.comm.Reduce(mine, total, op=MPI.SUM, root=0)
    return float(total[0]), float(total[1]), int(total[2])


def summarize(op: str, figures: np.ndarray, latencies: list[float], args, system: str) -> dict:
    """One JSON row from every worker's (keys moved, seconds) and all step latencies."""
    moved, seconds = figures[:, 0].sum(), figures[:, 1].max()
    lat = np.array(latencies) * 1e6
    return {"system": system, "op": op, "table_keys": args.keys, "fill": args.fill,
            "draws": args.draws,
            "zipf": args.zipf, "new_fraction": args.new_fraction,
            "keys_per_request": round(float(moved / (figures.shape[0] * args.steps)), 1),
            "servers": args.servers, "workers": args.workers, "rule": args.rule,
            "width": args.width, "replicas": args.replicas, "steps": args.steps,
            "mkv_per_s": round(float(moved / seconds / 1e6), 2),
            "p50_us": round(float(np.percentile(lat, 50)), 1),
            "p99_us": round(float(np.percentile(lat, 99)), 1)}


def gather_figures(ps, result) -> tuple[np.ndarray, list[float]]:
    """(keys moved, seconds) of every worker and all their latencies, on worker 0.
    Collective over the workers."""
    latencies, moved, seconds = result
    comm = ps.worker_comm
    figures = np.zeros((comm.Get_size(), 2))
    comm.Gather(np.array([moved, seconds], np.float64), figures, root=0)
    lat = np.array(latencies, np.float64)
    everyone = np.empty(lat.size * comm.Get_size()) if comm.Get_rank() == 0 else None
    comm.Gather(lat, everyone, root=0)
    return figures, [] if everyone is None else everyone.tolist()


def bench(args) -> None:
    import mpips

    ps = mpips.init(servers=args.servers, replicas=args.replicas)
    params = {"lr": 0.05} if args.rule in ("sgd", "adagrad") else {}
    table = ps.sparse_table("w", rule=args.rule, width=args.width, **params)
    keys = table_keys(args) if ps.is_worker else None
    floor_batches = requests(args, keys, ps.worker_rank, args.steps, 99) if ps.is_worker else \
        [np.empty(0)] * args.steps
    floor = {op: floor_op(ps, op, floor_batches, args) for op in OPS}
    if args.restore:
        job = ps.restore(args.restore)
        if job is None or (job.get("keys"), job.get("seed")) != (args.keys, args.seed):
            raise SystemExit(f"kv_minibatch: no checkpoint of --keys {args.keys} --seed "
                             f"{args.seed} under {args.restore} (write one with --save)")
    results = ps.run(lambda kv: measure(kv, table, keys, args))
    store, resident, stored = memory_report(ps)
    rows = []
    if ps.is_worker:
        for op in OPS:
            ours, ours_lat = gather_figures(ps, results[op])
            base, base_lat = gather_figures(ps, floor[op])
            if ps.worker_rank == 0:
                mine = summarize(op, ours, ours_lat, args, "mpips")
                bare = summarize(op, base, base_lat, args, "mpi-floor")
                mine["fraction_of_floor"] = round(mine["mkv_per_s"] / bare["mkv_per_s"], 4)
                rows += [bare, mine]
    if ps.rank == 0 and results["fill"] is not None:
        rows.append({"system": "mpips", "op": "fill", "table_keys": args.keys, "fill": args.fill,
                     "servers": args.servers, "workers": args.workers, "rule": args.rule,
                     "width": args.width, "mkv_per_s": round(results["fill"], 2)})
    if ps.rank == 0:
        rows.append({"system": "mpips", "op": "memory", "table_keys": args.keys,
                     "stored_keys": stored, "servers": args.servers, "rule": args.rule,
                     "width": args.width, "replicas": args.replicas,
                     "bytes_per_key": round(store / max(stored, 1), 2),
                     "rss_bytes_per_key": round(resident / max(stored, 1), 2)})
        library = mpi_library()
        emit([{**r, "mpi": library} for r in rows], args.out)
    ps.close()


def main() -> int:
    args = parse_args()
    return run_on_ranks(__file__, args.servers + args.workers, bench, args)


if __name__ == "__main__":
    sys.exit(main())
