"""Capacity model of a mpips job: its constants measured here, its scaling checked on a
scaled-down run, and the worked examples of docs/capacity.md.

Started by hand it launches itself several times through mpips.launch.launcher:

1. **timing** (1 server + 1 worker, AdaGrad, width 1): p50 of a push and of a pull of k fresh
   keys for k in 16 .. 32,768, next to the bare-MPI floor of the same bytes (the floor of
   benchmarks/kv_minibatch.py); each gets a cost per request (µs: the smallest request) and
   per key (ns: the slope between the two largest).
2. **scaling** (each of --servers, --workers workers, --keys keys in each table): the
   servers' rows and bytes per table (rules sum, adagrad and ftrl, width 1; every table kept
   with --replicas copies, whose bytes are counted apart), their resident memory, the share of rows on the fullest
   server, the bytes the workers sent per push request of Zipf minibatches for each codec
   (raw, varint keys, varint + fp16, varint + fixed8), and the bytes and seconds of a full
   checkpoint.
3. **check**: the model (``predict``), fed with the constants of the smallest server count,
   predicts the figures of every larger one; each relative error is printed next to the
   error the model states (``STATED_ERROR``).
4. **model**: the worked examples (100 servers and 1e9 keys; 1,000 servers and 1e11 keys)
   from this run's constants and, where this run measures none, the newest figures of the
   named benchmarks in benchmarks/results (checkpoint.py, recovery.py).

    python benchmarks/capacity.py                         # 2,000,000 keys, 2 and 4 servers
    python benchmarks/capacity.py --keys 4000000 --servers 2,4,8 --workers 2
    python benchmarks/capacity.py --model-only            # step 4 from results/capacity.jsonl

Prints one JSON object per line (section timing|scaling|check|model) and appends them to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jsonlines import emit  # noqa: E402  (benchmarks/jsonlines.py, next to this script)
from kv_minibatch import fill, floor_op, requests  # noqa: E402
from selflaunch import LAUNCHED, mpi_library, on_ranks  # noqa: E402

from mpips.core.hosting import segments_per_server  # noqa: E402
from mpips.kernels import hashindex  # noqa: E402
from mpips.kernels.codec import varint_size  # noqa: E402
from mpips.store.sparse_rows import MAX_LOAD, MIN_SLOTS  # noqa: E402
from mpips.wire import codec as codec_module, message  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RULES = {"sum": 0, "adagrad": 1, "ftrl": 2}
"""Rules measured, with their optimizer-state arrays per row (mpips.core.rules)."""
CODECS = ("", "varint", "varint,fp16", "varint,fixed8")
TIMING_SIZES = (16, 256, 4096, 32768)
STATED_ERROR = {"store_bytes": 0.01, "rss_bytes": 0.15, "wire_bytes": 0.03,
                "checkpoint_bytes": 0.03, "fullest_share": 1.0}
"""Relative error the model states for each checked figure: the store's arrays follow its
growth rule exactly; resident memory is a line through two launches (the timing launch's
server and the smallest scaling launch: a process base plus resident bytes per store byte),
which leaves out MPI's buffers per peer and the allocator's slack; wire bytes follow the header layouts, with codec key bytes from a
sampled gap distribution; ``fullest_share`` is checked against the model's own bound (the
fullest server holds at most 1/S + 4 standard deviations of a binomial share), so its
"error" is the measured excess over 1/S as a share of that bound's excess (<= 1)."""
EXAMPLES = ({"servers": 100, "workers": 100, "keys": 1e9}, {"servers": 1000, "workers": 1000,
                                                             "keys": 1e11})
REQUEST_KEYS = 24_400
"""Keys per worker request in the worked examples: the unique keys of 100,000 Zipf(1.1) draws
over a table of 10M keys or more (benchmarks/kv_minibatch.py)."""


# ---------------------------------------------------------------------------- the model
# The layouts it counts are the project's own: mpips.store.sparse_rows (index slots, at most
# MAX_LOAD full, both arrays doubling), mpips.core.hosting (segments per server),
# mpips.wire.message and mpips.wire.codec (request and codec headers, value encodings).
SLOT_BYTES = hashindex.SLOT.itemsize
REQUEST_HEADER = message.HEADER_WORDS * 8
VALUE_BYTES = {codec: codec_module.VALUE_ENCODINGS[codec.partition(",")[2] or "float32"]
               .dtype.itemsize for codec in CODECS}


def store_bytes(rows: float, width: int = 1, state: int = 1) -> float:
    """Bytes of one slice's index and row arrays holding ``rows`` keys (after inserts)."""
    slots, capacity = MIN_SLOTS, MIN_SLOTS // 2
    while rows > MAX_LOAD * slots:
        slots *= 2
    while rows > capacity:
        capacity *= 2
    return slots * SLOT_BYTES + capacity * 4 * width * (1 + state)


def expected_store_bytes(rows: float, width: int = 1, state: int = 1) -> float:
    """Mean of ``store_bytes`` over slices whose rows are spread as hash placement spreads
    them (binomial, normal approximation): a mean near a doubling point is not enough."""
    spread = rows + math.sqrt(rows) * np.linspace(-3, 3, 61)
    weights = np.exp(-np.linspace(-3, 3, 61) ** 2 / 2)
    sizes = [store_bytes(max(r, 0.0), width, state) for r in spread]
    return float(np.average(sizes, weights=weights))


def varint_key_bytes(keys_per_message: float, key_bits: int = 64, samples: int = 4) -> float:
    """Mean LEB128 bytes per key of a sorted message of ``keys_per_message`` keys drawn
    uniformly from [0, 2**key_bits) (hashed or random ids; small-integer ids cost less):
    the first key whole, the rest as gaps. Sampled."""
    n = max(int(round(keys_per_message)), 1)
    rng = np.random.default_rng(7)
    sizes = [varint_size(np.unique(rng.integers(0, 2**key_bits - 1, n, np.uint64,
                                                endpoint=True))) / n for _ in range(samples)]
    return float(np.mean(sizes))


def push_bytes(keys: float, segments: int, codec: str, width: int = 1) -> float:
    """Bytes a worker sends for one push of ``keys`` unique keys spread over ``segments``
    (hash placement; a request goes to each segment that gets keys): per request a header,
    and its keys and values (raw: 8 + 4 x width per key; with a codec, the codec's header,
    varint keys and the encoded values). Single-chunk pushes: no verdict."""
    touched = segments * (1 - (1 - 1 / segments) ** keys)
    per = keys / touched
    if not codec:
        return touched * (REQUEST_HEADER + per * (8 + 4 * width))
    key = varint_key_bytes(per) if "varint" in codec else 8
    return touched * (REQUEST_HEADER + codec_module.HEADER_SIZE + per * (key + VALUE_BYTES[codec] * width)
                      + 16)  # sections padded to 8 bytes: 8 on average for each of two


def fullest_share_bound(keys: float, servers: int) -> float:
    """Share of all rows the fullest of ``servers`` may hold: 1/S + 4 sigma of a binomial."""
    p = 1 / servers
    return p + 4 * math.sqrt(p * (1 - p) / keys)


def predict(constants: dict, servers: int, keys: float, workers: int,
            request_keys: float = REQUEST_KEYS) -> dict:
    """Per-server figures of a job of ``servers`` and ``keys`` keys per table, from measured
    ``constants``: store bytes per table rule, resident memory, push bytes per codec,
    checkpoint bytes, server work per step."""
    replicas = constants.get("replicas", 0)
    per = segments_per_server(servers, replicas)
    rows = keys / servers
    out = {"servers": servers, "keys": keys, "workers": workers, "rows_per_server": rows,
           "segments_per_server": per, "fullest_share": fullest_share_bound(keys, servers)}
    for rule, state in RULES.items():  # one slice per segment the server is home to
        out[f"store_bytes_{rule}"] = per * expected_store_bytes(rows / per, 1, state)
    out["store_bytes_adagrad_replicated"] = (1 + replicas) * out["store_bytes_adagrad"]
    out["store_bytes_total"] = (1 + replicas) * sum(out[f"store_bytes_{rule}"] for rule in RULES)
    out["rss_bytes"] = constants["rss_base"] + \
        constants.get("rss_per_store_byte", 1.0) * out["store_bytes_total"]
    for codec in CODECS:
        out[f"wire_bytes_{codec or 'raw'}"] = push_bytes(request_keys, servers * per, codec)
    out["checkpoint_bytes"] = keys * constants.get("checkpoint_rows_per_key", 1) * \
        constants["checkpoint_bytes_per_row"] / servers
    if "push_us_per_request" in constants:
        per_server = request_keys / servers
        push_us = constants["push_us_per_request"] + per_server * constants["push_ns_per_key"] / 1e3
        out["server_push_us_per_step"] = workers * push_us
        out["server_keys_per_s"] = per_server / (push_us / 1e6)
        out["floor_keys_per_s"] = per_server / ((constants["floor_us_per_request"] + per_server
                                                 * constants["floor_ns_per_key"] / 1e3) / 1e6)
    return out


# ---------------------------------------------------------------------------- measuring
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=2_000_000, help="keys in each table (2M)")
    p.add_argument("--servers", default="2,4", help="server counts of the scaling launches")
    p.add_argument("--workers", type=int, default=2, help="workers of the scaling launches")
    p.add_argument("--replicas", type=int, default=1,
                   help="copies every table keeps on other servers (default 1)")
    p.add_argument("--draws", type=int, default=100_000, help="Zipf draws per request")
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--model-only", action="store_true",
                   help="print the worked examples from the newest rows of --out")
    p.add_argument("--dir", default=None, help="where checkpoints go (default: a temp dir)")
    p.add_argument("--out", default=str(RESULTS / "capacity.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    p.add_argument("--role", choices=("timing", "scaling"), help=argparse.SUPPRESS)
    p.add_argument("--part", help=argparse.SUPPRESS)  # where a launch leaves its rows
    args = p.parse_args(argv)
    args.server_counts = sorted({int(s) for s in args.servers.split(",")})
    if len(args.server_counts) < 2 or args.server_counts[0] < 1:
        p.error(f"--servers needs two or more counts >= 1, got {args.servers!r}")
    if not 0 <= args.replicas < args.server_counts[0]:
        p.error(f"--replicas {args.replicas} needs every server count > {args.replicas}")
    if args.keys < 10_000 or args.workers < 1 or args.steps < 3:
        p.error("--keys must be >= 10000, --workers >= 1, --steps >= 3")
    args.width, args.new_fraction, args.seed, args.fill = 1, 0.0, 0, "key-order"
    return args


def resident_bytes() -> int:
    """This process's resident memory now (/proc/self/statm)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timing(args) -> None:
    """Launch section 1 (1 server + 1 worker): push and pull p50 by request size."""
    import mpips

    ps = mpips.init(servers=1)
    table = ps.sparse_table("w", rule="adagrad", lr=0.05)
    keys = np.random.default_rng(1).integers(0, 2**64, args.keys, np.uint64, endpoint=False) \
        if ps.is_worker else None
    rng = np.random.default_rng(2)
    batches = {k: [np.unique(keys[rng.integers(0, keys.size, k)]) for _ in range(args.steps)]
               if ps.is_worker else [np.empty(0)] * args.steps for k in TIMING_SIZES}
    floors = {(op, k): floor_op(ps, op, batches[k], args) for op in ("push", "pull")
              for k in TIMING_SIZES}

    def measure(kv):
        fill(kv, table, keys, args)
        out = {}
        grads = np.ones((max(TIMING_SIZES), 1), np.float32)
        pulled = np.empty_like(grads)
        for op in ("push", "pull"):
            for k in TIMING_SIZES:
                lat = []
                for batch in batches[k]:
                    t0 = time.perf_counter()
                    if op == "push":
                        kv.wait(kv.push(table, batch, grads[:batch.size]))
                    else:
                        kv.wait(kv.pull(table, batch, pulled[:batch.size]))
                    lat.append(time.perf_counter() - t0)
                out[op, k] = lat
        return out

    results = ps.run(measure)
    if ps.is_server:  # resident memory against store bytes: one point of the memory line
        _leave([{"section": "memory", "servers": 1, "rss_bytes": float(resident_bytes()),
                 "store_bytes_total": float(ps.memory_bytes())}], args.part)
    if ps.is_worker:
        rows = []
        for (op, k), lat in results.items():
            floor_lat = floors[op, k][0]
            rows.append({"section": "timing", "op": op, "request_keys": k,
                         "mpips_p50_us": round(float(np.median(lat)) * 1e6, 2),
                         "floor_p50_us": round(float(np.median(floor_lat)) * 1e6, 2),
                         "table_keys": args.keys, "steps": args.steps, "mpi": mpi_library()})
        _leave(rows, args.part)
    ps.close()


def scaling(args) -> None:
    """Launch section 2 on this launch's servers and workers."""
    import mpips

    servers = int(os.environ["MPIPS_CAPACITY_SERVERS"])
    ps = mpips.init(servers=servers, replicas=args.replicas)
    plain = {rule: ps.sparse_table(f"w_{rule}", rule=rule,
                                   **({"lr": 0.05} if rule == "adagrad" else {}))
             for rule in RULES}
    codecs = {codec: ps.sparse_table(f"c_{codec or 'raw'}", rule="sum", codec=codec)
              for codec in CODECS}
    keys = np.random.default_rng([args.seed, 1]).integers(0, 2**64, args.keys, np.uint64,
                                                          endpoint=False) \
        if ps.is_worker else None
    root = Path(args.part).parent / f"ckpt-{servers}"

    def measure(kv):
        for table in plain.values():
            fill(kv, table, keys, args)
        batches = requests(args, keys, kv.worker_rank, args.steps, 5)
        grads = np.random.default_rng(3).standard_normal((max(b.size for b in batches), 1)) \
            .astype(np.float32)
        for table in codecs.values():
            for batch in batches:
                kv.wait(kv.push(table, batch, grads[:batch.size]))
        kv.barrier("job")
        began = time.perf_counter()
        kv.save_checkpoint(root, 1, {"bench": "capacity"})
        seconds = time.perf_counter() - began
        return {"traffic": kv.traffic.report(), "save_seconds": seconds,
                "request_keys": float(np.mean([b.size for b in batches]))}

    result = ps.run(measure)
    stats = ps.table_stats()
    mine = np.zeros(4 + 4 * len(RULES), np.float64)
    if ps.is_server:
        # resident memory without the codec tables' rows, which the model leaves out
        coded = [stats[f"c_{c or 'raw'}"] for c in CODECS]
        mine[0] = resident_bytes() - sum(t["bytes"] + t["copy_bytes"] for t in coded)
        mine[1] = 1
        mine[2] = sum(t["rows"] for t in stats.values())  # rows a checkpoint writes
        for i, rule in enumerate(RULES):
            s = stats[f"w_{rule}"]
            mine[4 + 4 * i: 8 + 4 * i] = (s["rows"], s["bytes"], s["copy_rows"], s["copy_bytes"])
    everyone = np.zeros((ps.comm.Get_size(), mine.size))
    ps.comm.Gather(mine, everyone, root=0)
    reports = ps.comm.gather(json.dumps(result) if ps.is_worker else None, root=0)
    if ps.rank == 0:
        _leave([_scaling_row(args, servers, everyone[everyone[:, 1] == 1],
                             [json.loads(r) for r in reports if r], root)], args.part)
    ps.comm.Barrier()
    ps.close()


def _scaling_row(args, servers: int, per_server: np.ndarray, workers: list[dict], root) -> dict:
    """One JSON row of a scaling launch, from every server's figures and every worker's."""
    from mpips.ckpt import load_manifest

    row = {"section": "scaling", "servers": servers, "workers": args.workers,
           "replicas": args.replicas, "keys": args.keys,
           "request_keys": round(float(np.mean([w["request_keys"] for w in workers])), 1),
           "rss_bytes": float(per_server[:, 0].mean())}
    for i, rule in enumerate(RULES):
        rows, nbytes = per_server[:, 4 + 4 * i], per_server[:, 5 + 4 * i]
        row[f"rows_{rule}"] = rows.tolist()
        row[f"store_bytes_{rule}"] = float(nbytes.mean())
        if rule == "adagrad":
            row["store_bytes_adagrad_replicated"] = float((nbytes + per_server[:, 7 + 4 * i])
                                                          .mean())
            row["fullest_share"] = float(rows.max() / rows.sum())
    for codec in CODECS:
        name = f"c_{codec or 'raw'}"
        sent = sum(w["traffic"][name]["wire_bytes"] for w in workers)
        pushes = sum(w["traffic"][name]["pushes"] for w in workers)
        row[f"wire_bytes_{codec or 'raw'}"] = sent / pushes
    directory = next(p for p in root.iterdir() if p.name.startswith("step-"))
    manifest = load_manifest(directory)
    row["checkpoint_rows"] = float(per_server[:, 2].sum())
    row["checkpoint_bytes"] = manifest.total_bytes / servers
    row["checkpoint_bytes_per_row"] = manifest.total_bytes / row["checkpoint_rows"]
    row["save_seconds"] = max(w["save_seconds"] for w in workers)
    row["store_bytes_total"] = float(sum(per_server[:, 5 + 4 * i] + per_server[:, 7 + 4 * i]
                                         for i in range(len(RULES))).mean())
    return row


def _leave(rows: list[dict], part: str) -> None:
    with open(part, "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


# ---------------------------------------------------------------------------- the driver
def cost_line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(µs per request, ns per key) from (request keys, p50 µs) points: the slope between the
    two largest requests (where the keys dominate), and the smallest request's time less its
    keys (where the request itself dominates)."""
    points = sorted(points)
    (k1, t1), (k2, t2) = points[-2], points[-1]
    per_key = (t2 - t1) / (k2 - k1)
    k0, t0 = points[0]
    return t0 - k0 * per_key, per_key * 1e3


def constants_from(timing_rows: list[dict], base: dict, one: dict) -> dict:
    """The model's constants: request costs, and what the smallest scaling launch (``base``)
    and the timing launch's server (``one``) measured. Resident memory is a line through
    the two: a process base, and bytes per store byte (more than 1: the growth of the
    store's arrays leaves memory behind)."""
    per_store = (base["rss_bytes"] - one["rss_bytes"]) / \
        (base["store_bytes_total"] - one["store_bytes_total"])
    c = {"replicas": base["replicas"], "checkpoint_bytes_per_row": base["checkpoint_bytes_per_row"],
         "checkpoint_rows_per_key": base["checkpoint_rows"] / base["keys"],
         "rss_per_store_byte": per_store,
         "rss_base": one["rss_bytes"] - per_store * one["store_bytes_total"]}
    for name, op, field in (("push", "push", "mpips_p50_us"), ("floor", "push", "floor_p50_us"),
                            ("pull", "pull", "mpips_p50_us"), ("pull_floor", "pull", "floor_p50_us")):
        points = [(r["request_keys"], r[field]) for r in timing_rows if r["op"] == op]
        c[f"{name}_us_per_request"], c[f"{name}_ns_per_key"] = cost_line(points)
    return c


def check_rows(constants: dict, scaling_rows: list[dict]) -> list[dict]:
    """Each larger launch's measured figures next to the model's prediction."""
    out = []
    base = scaling_rows[0]
    for row in scaling_rows:
        model = predict(constants, row["servers"], row["keys"], row["workers"],
                        row["request_keys"])
        figures = {"store_bytes": "store_bytes_total", "rss_bytes": "rss_bytes",
                   "checkpoint_bytes": "checkpoint_bytes",
                   **{f"wire_bytes_{c or 'raw'}": f"wire_bytes_{c or 'raw'}" for c in CODECS}}
        for name, field in figures.items():
            error = abs(row[field] - model[field]) / model[field]
            stated = STATED_ERROR["wire_bytes" if name.startswith("wire") else name]
            out.append({"section": "check", "figure": name, "from_servers": base["servers"],
                        "servers": row["servers"], "measured": round(row[field], 1),
                        "predicted": round(model[field], 1), "error": round(error, 4),
                        "stated_error": stated, "within": error <= stated})
        bound = model["fullest_share"] - 1 / row["servers"]
        excess = (row["fullest_share"] - 1 / row["servers"]) / bound
        out.append({"section": "check", "figure": "fullest_share", "from_servers": base["servers"],
                    "servers": row["servers"], "measured": round(row["fullest_share"], 5),
                    "predicted": round(model["fullest_share"], 5), "error": round(excess, 4),
                    "stated_error": STATED_ERROR["fullest_share"], "within": excess <= 1.0})
    return out


def newest(path: Path, keep) -> list[dict]:
    """Rows of a results file that ``keep`` accepts, from its newest day only."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if keep(r)]
    if not rows:
        return []
    day = max(r.get("time", "")[:10] for r in rows)
    return [r for r in rows if r.get("time", "")[:10] == day]


def model_rows(constants: dict) -> list[dict]:
    """The worked examples, without and with one replica, next to the checkpoint and
    recovery figures of their own benchmarks (newest day of each results file)."""
    full = newest(RESULTS / "incremental.jsonl",
                  lambda r: r.get("system") == "mpips" and r.get("op") == "full-save")
    if full:  # one AdaGrad width-1 table, as in the examples
        constants = {**constants, "checkpoint_rows_per_key": 1.0, "checkpoint_bytes_per_row":
                     float(np.median([r["bytes"] / r["rows_written"] for r in full]))}
    writes = newest(RESULTS / "checkpoint.jsonl",
                    lambda r: r.get("system") == "mpips" and r.get("op") == "write")
    reads = newest(RESULTS / "checkpoint.jsonl",
                   lambda r: r.get("system") == "mpips" and r.get("op") == "restore"
                   and r.get("cache") == "evicted")
    lost = newest(RESULTS / "recovery.jsonl",
                  lambda r: r.get("system") == "mpips" and r.get("path") == "live-server"
                  and "recovery_s" in r and r.get("replicas"))
    write_gbs = float(np.median([r["gb_per_s"] / r["servers"] for r in writes])) \
        if writes else None
    read_gbs = float(np.median([r["gb_per_s"] / r["restore_servers"] for r in reads])) \
        if reads else None
    out = []
    for example in EXAMPLES:
        plain = predict({**constants, "replicas": 0}, example["servers"], example["keys"],
                        example["workers"])
        copied = predict({**constants, "replicas": 1}, example["servers"], example["keys"],
                         example["workers"])
        total = plain["checkpoint_bytes"] * example["servers"]
        out.append({
            "section": "model", **example, "request_keys": REQUEST_KEYS,
            "rows_per_server": plain["rows_per_server"],
            "fullest_share_bound": plain["fullest_share"],
            "gib_per_server": {rule: round(plain[f"store_bytes_{rule}"] / 2**30, 3)
                               for rule in RULES},
            "gib_per_server_adagrad_1_replica": round(
                copied["store_bytes_adagrad_replicated"] / 2**30, 3),
            "push_bytes_per_request": {c or "raw": round(plain[f"wire_bytes_{c or 'raw'}"])
                                       for c in CODECS},
            "push_bytes_per_request_1_replica": round(copied["wire_bytes_raw"]),
            "raw_bytes_per_request": REQUEST_KEYS * 12,
            "keys_per_server_message": round(REQUEST_KEYS / example["servers"], 1),
            "server_push_ms_per_step": round(plain["server_push_us_per_step"] / 1e3, 2),
            "server_keys_per_s": round(plain["server_keys_per_s"]),
            "floor_keys_per_s": round(plain["floor_keys_per_s"]),
            "checkpoint_gb": round(total / 1e9, 1),
            "checkpoint_write_gb_per_s_per_server": write_gbs,
            "checkpoint_seconds_if_servers_write_in_parallel":
                round(total / 1e9 / (write_gbs * example["servers"]), 2) if write_gbs else None,
            "checkpoint_seconds_at_10_gb_per_s": round(total / 1e9 / 10, 1),
            "restore_read_gb_per_s_per_server": read_gbs,
            "server_loss_recovery_s_median_5_ranks":
                round(float(np.median([r["recovery_s"] for r in lost])), 3) if lost else None})
    return out


def launch_part(args, role: str, servers: int, nprocs: int, part: Path) -> None:
    from mpips.launch.launcher import launch

    os.environ[LAUNCHED] = "1"
    os.environ["MPIPS_CAPACITY_SERVERS"] = str(servers)
    argv = [os.path.abspath(__file__), *sys.argv[1:], "--role", role, "--part", str(part)]
    code = launch(nprocs, argv)
    if code != 0:
        raise SystemExit(f"capacity: the {role} launch on {nprocs} ranks failed (exit {code})")


def main() -> int:
    args = parse_args()
    if args.role == "timing":
        timing(args)
        return 0
    if args.role == "scaling":
        scaling(args)
        return 0
    if on_ranks():
        raise SystemExit("capacity.py launches itself several times, on different rank "
                         "counts: start it by hand (python benchmarks/capacity.py)")
    if args.model_only:
        rows = newest(Path(args.out), lambda r: r.get("section") == "constants")
        if not rows:
            raise SystemExit(f"capacity: no constants in {args.out}; run the benchmark first")
        emit(model_rows(rows[-1]["constants"]), "")
        return 0
    work = Path(tempfile.mkdtemp(prefix="mpips-capacity-bench-", dir=args.dir))
    try:
        part = work / "rows.jsonl"
        launch_part(args, "timing", 1, 2, part)
        for servers in args.server_counts:
            launch_part(args, "scaling", servers, servers + args.workers, part)
        rows = [json.loads(line) for line in part.read_text().splitlines()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timing_rows = [r for r in rows if r["section"] == "timing"]
    scaling_rows = sorted((r for r in rows if r["section"] == "scaling"),
                          key=lambda r: r["servers"])
    memory = next(r for r in rows if r["section"] == "memory")
    constants = constants_from(timing_rows, scaling_rows[0], memory)
    checks = check_rows(constants, scaling_rows)
    library = timing_rows[0]["mpi"]
    report = rows + [{"section": "constants", "constants": constants}] + checks + \
        model_rows(constants)
    emit([{**r, "mpi": library} for r in report], args.out)
    missed = [c["figure"] for c in checks if not c["within"]]
    if missed:
        print(f"capacity: outside the stated error: {', '.join(missed)}", file=sys.stderr)
    return 0



if __name__ == "__main__":
    sys.exit(main())
