"""Incremental checkpoints: bytes and seconds of a delta save next to a full save and next to
the floor of writing the same bytes, and a restore of base + 5 deltas checked bit for bit.

Issue #19: after changing 1 % of a 10M-row table, an incremental save writes >= 20x fewer
bytes and takes >= 10x less time than a full save; a restore from base plus 5 deltas is
bitwise equal to the model that was saved.

Launch A (--servers servers + 1 worker): a sparse table "w" (width 1, AdaGrad, hashed
placement) is filled with --rows distinct keys (half the small ids 0..rows/2-1, half random
uint64), pushed in sorted batches of --batch keys with random gradients; ``kv.clock()``, then
a full save (step 1). Then --rounds rounds, each pushing gradients to a change of --change
(1 %) of the rows: --new-share (10 %) keys the table does not hold yet, the rest drawn
without replacement from the table's keys with Zipf(--zipf) weights over a fixed random
popularity order (a heavy tail: hot keys change in every round); ``kv.clock()``, then an
incremental save (steps 2..rounds+1, each a delta of the one before). Last, a full save of the
same model under a second root (so that full and delta saves are timed on the same model
size). The worker times each ``save_checkpoint`` (wall time of the collective call). Then it
pulls every key (in key order) and hashes the float32 values (sha256), pushes one more
gradient to every key, clocks, pulls and hashes again (a digest that depends on the AdaGrad
accumulators too).

Launch B (--restore-servers servers + 1 worker, another server count): an untimed
``ps.restore`` of the chain (it loads h5py and the numba kernels), then ``ps.restore`` of the
second root's full checkpoint, timed, then ``ps.restore`` of the chain (base + deltas, the
newest under the first root), timed (max over the ranks); the worker pulls, pushes and pulls
as in launch A: both digests must equal launch A's ("bitwise_equal"; exit code 1 if not).

Floors, same run, same file system: numpy ``tofile`` + ``os.fsync`` of the bytes a delta must
hold at least (changed rows x 16 B: key 8, value 4, accumulator 4), and likewise of the whole
table (rows x 16 B), one writer (the servers write their shards at the same time, on the same
disk); and a plain read (16 MiB blocks, warm page cache like the restores) of the files each
restore reads.

The servers' side of every save is instrumented (timers wrapped around mpips.ckpt functions
in this process only; nothing else changes): "servers" in each save's line gives the slowest
server's seconds in each part (prepare: the directory and, for a delta, the parent's checks;
rows: collecting the changed rows or the snapshot; hdf5: writing the shard; fsync_hash;
commit: the manifest on server 0; attempt: all of it on the server).

    python benchmarks/incremental.py                       # 10M rows, 2 servers, restore on 3
    python benchmarks/incremental.py --rows 1000000 --out ''

Started by hand it launches itself twice through mpips.launch.launcher. Prints one JSON object
per measurement (system mpips|floor, op full-save|delta-save|restore-full|restore-chain|
write|read), then a summary (bytes_ratio and time_ratio: median full / median delta, the goals
met or not, bitwise_equal), and appends them to --out.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jsonlines import emit  # noqa: E402  (benchmarks/jsonlines.py, next to this script)
from selflaunch import LAUNCHED, mpi_library, on_ranks  # noqa: E402

GOAL_BYTES, GOAL_TIME = 20.0, 10.0
"""Issue #19: a delta of a 1 % change writes >= 20x fewer bytes, >= 10x faster than a full save."""
ROW_BYTES = 16  # the least a row of "w" needs on disk: key (8), value (4), accumulator (4)
LR = 0.05


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000, help="rows of the table (10M)")
    p.add_argument("--servers", type=int, default=2, help="servers of the saving launch")
    p.add_argument("--restore-servers", type=int, default=3,
                   help="servers of the restoring launch (default 3)")
    p.add_argument("--rounds", type=int, default=5, help="delta saves (default 5)")
    p.add_argument("--change", type=float, default=0.01,
                   help="share of the rows each round changes (default 0.01)")
    p.add_argument("--new-share", type=float, default=0.1,
                   help="share of a round's changed rows that are new keys (default 0.1)")
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of the changes")
    p.add_argument("--batch", type=int, default=1 << 20, help="keys per push/pull")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=3600, help="per launch, seconds")
    p.add_argument("--dir", default=None,
                   help="where the scratch directory goes (default: the system's temp dir)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "incremental.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    p.add_argument("--phase", choices=("save", "restore"), help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rows < 100 or args.rounds < 1 or args.batch < 1:
        p.error("--rows must be >= 100, --rounds and --batch >= 1")
    if not 0 < args.change <= 0.5 or not 0 <= args.new_share < 1 or not args.zipf > 0:
        p.error("--change must be in (0, 0.5], --new-share in [0, 1), --zipf > 0")
    if args.servers < 1 or args.restore_servers < 1:
        p.error("--servers and --restore-servers must be >= 1")
    return args


# -- the model's keys and changes (worker) ----------------------------------------------------
def table_keys(args) -> np.ndarray:
    """--rows distinct keys, sorted: the small ids 0..rows/2-1 and random uint64."""
    small = np.arange(args.rows // 2, dtype=np.uint64)
    rng = np.random.default_rng([args.seed, 1])
    keys = small
    while keys.size < args.rows:
        more = rng.integers(args.rows, 2**64, args.rows - keys.size, np.uint64, endpoint=False)
        keys = np.unique(np.concatenate([keys, more]))
    return keys


def changed_keys(args, keys: np.ndarray, popularity: np.ndarray, rnd: int) -> np.ndarray:
    """Round ``rnd``'s changed keys, sorted unique: rows*change of them, a share new_share
    new, the rest a Zipf-weighted sample without replacement of the original keys
    (``popularity[i]``: the rank, from 1, of keys[i]; Gumbel top-k)."""
    rng = np.random.default_rng([args.seed, 2, rnd])
    total = max(1, int(round(args.rows * args.change)))
    new = int(round(total * args.new_share))
    score = -args.zipf * np.log(popularity.astype(np.float64)) + rng.gumbel(size=popularity.size)
    old = keys[np.argpartition(-score, total - new - 1)[:total - new]] if total > new else keys[:0]
    fresh = np.empty(0, np.uint64)
    while fresh.size < new:
        draw = rng.integers(args.rows, 2**64, 2 * new, np.uint64, endpoint=False)
        draw = np.setdiff1d(draw, keys)  # keys holds every key stored so far
        fresh = np.unique(np.concatenate([fresh, draw]))
    fresh = rng.permutation(fresh)[:new]
    return np.unique(np.concatenate([old, fresh]))


def grads_for(seed, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def push_all(kv, table, keys: np.ndarray, seed, batch: int) -> None:
    for lo in range(0, keys.size, batch):
        part = keys[lo:lo + batch]
        kv.wait(kv.push(table, part, grads_for([*seed, lo], part.size)))


def digest(kv, table, keys: np.ndarray, batch: int) -> str:
    """sha256 of the float32 values of ``keys`` pulled in key order."""
    h = hashlib.sha256()
    for lo in range(0, keys.size, batch):
        values = np.ascontiguousarray(kv.wait(kv.pull(table, keys[lo:lo + batch])), np.float32)
        h.update(values.tobytes())
    return h.hexdigest()


def digests(kv, table, keys: np.ndarray, args) -> dict:
    """The model's digest, then the digest after one more push of every key (it depends on
    the AdaGrad accumulators as well)."""
    before = digest(kv, table, keys, args.batch)
    push_all(kv, table, keys, [args.seed, 9], args.batch)
    kv.clock()
    return {"digest": before, "digest_after_push": digest(kv, table, keys, args.batch)}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- server-side timers -------------------------------------------------------------------------
class ServerTimers:
    """Seconds spent per save step in parts of the servers' save path: timers wrapped
    around functions of mpips.ckpt in this process (behaviour unchanged)."""

    def __init__(self):
        import mpips.ckpt as ckpt
        from mpips.ckpt import checkpoint, writer

        self.by_step: dict[int, dict[str, float]] = {}
        self.step = -1
        self._wrap(checkpoint, "_prepare", "prepare")
        self._wrap(checkpoint, "_delta_data", "rows")
        self._wrap(checkpoint, "_slice_data", "rows")
        self._wrap(checkpoint, "_commit", "commit")
        self._wrap(ckpt, "inspect_checkpoint", "inspect_checkpoint")
        self._wrap(ckpt, "manifest_digest", "manifest_digest")
        self._wrap(ckpt, "prepare_checkpoint_dir", "prepare_dir")
        self._wrap(ckpt, "commit", "manifest_write")
        self._wrap(ckpt, "prune", "prune")
        self._wrap(writer, "write_hdf5", "hdf5")
        self._wrap(writer, "fsync_and_hash", "fsync_hash")
        attempt = checkpoint.SaveCoordinator._attempt
        timers = self

        def timed_attempt(coordinator, group, order, *, retry):
            timers.step = int(order["step"])
            t0 = time.perf_counter()
            try:
                return attempt(coordinator, group, order, retry=retry)
            finally:
                timers.add("attempt", time.perf_counter() - t0)
        checkpoint.SaveCoordinator._attempt = timed_attempt

    def add(self, name: str, seconds: float) -> None:
        part = self.by_step.setdefault(self.step, {})
        part[name] = part.get(name, 0.0) + seconds

    def _wrap(self, module, attr: str, name: str) -> None:
        inner = getattr(module, attr)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                self.add(name, time.perf_counter() - t0)
        setattr(module, attr, wrapper)


# -- launch A: fill, full save, deltas, full save again ----------------------------------------
def save_work(kv, table, args, work: Path) -> dict:
    keys = table_keys(args)
    popularity = np.random.default_rng([args.seed, 3]).permutation(keys.size) + 1
    original = keys
    push_all(kv, table, keys, [args.seed, 4], args.batch)
    kv.clock()
    root, root_full = work / "ckpt", work / "ckpt-full"
    saves = [{"op": "full-save", "step": 1, "changed_rows": keys.size,
              "seconds": timed(lambda: kv.save_checkpoint(root, 1, {"bench": "incremental"},
                                                          incremental=False))}]
    for rnd in range(1, args.rounds + 1):
        step = rnd + 1
        changed = changed_keys(args, keys, popularity, rnd)
        push_all(kv, table, changed, [args.seed, 5, rnd], args.batch)
        kv.clock()
        seconds = timed(lambda: kv.save_checkpoint(root, step, {"bench": "incremental"},
                                                   incremental=True))
        saves.append({"op": "delta-save", "step": step, "changed_rows": int(changed.size),
                      "seconds": seconds})
        keys = np.union1d(keys, changed)
    del original, popularity
    step = args.rounds + 2
    saves.append({"op": "full-save", "step": step, "changed_rows": int(keys.size),
                  "seconds": timed(lambda: kv.save_checkpoint(root_full, step,
                                                              {"bench": "incremental"},
                                                              incremental=False))})
    np.save(work / "keys.npy", keys)
    return {"saves": saves, "keys": int(keys.size), **digests(kv, table, keys, args)}


def restore_work(kv, table, args, work: Path) -> dict:
    keys = np.load(work / "keys.npy")
    return {"keys": int(keys.size), **digests(kv, table, keys, args)}


def phase(args) -> None:
    """One launch's ranks: ``args.phase`` "save" (launch A) or "restore" (launch B); worker
    0 writes its figures to <work>/<phase>.json, servers theirs to <work>/<phase>-server-N.json."""
    import mpips
    from mpi4py import MPI

    work = Path(args.work)
    servers = args.servers if args.phase == "save" else args.restore_servers
    with mpips.init(servers=servers) as ps:
        table = ps.sparse_table("w", width=1, rule="adagrad", lr=LR, consistency="bsp")
        timers = ServerTimers() if ps.is_server and args.phase == "save" else None
        restores = {}
        if args.phase == "restore":
            for op, root in (("warm-up", work / "ckpt"), ("restore-full", work / "ckpt-full"),
                             ("restore-chain", work / "ckpt")):
                ps.comm.Barrier()
                t0 = time.perf_counter()
                found = ps.restore(root)
                seconds = ps.comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
                if found is None:
                    raise SystemExit(f"incremental: nothing restored from {root}")
                if op != "warm-up":  # the first restore loads h5py and the numba kernels
                    restores[op] = {"seconds": seconds, "step": found["checkpoint_step"],
                                    "depth": found.get("checkpoint_depth")}
        work_fn = save_work if args.phase == "save" else restore_work
        result = ps.run(lambda kv: work_fn(kv, table, args, work))
        if timers is not None:
            (work / f"save-server-{ps.server_rank}.json").write_text(
                json.dumps({str(k): v for k, v in timers.by_step.items()}))
        if ps.is_worker and ps.worker_rank == 0:
            (work / f"{args.phase}.json").write_text(json.dumps({**result, "restores": restores,
                                                                 "mpi": mpi_library()}))


def run_launch(args, work: Path, which: str, nprocs: int, warmup: bool) -> dict:
    from mpips.launch.launcher import launch

    argv = [os.path.abspath(__file__), *(sys.argv[1:] if "--phase" not in sys.argv else []),
            "--phase", which, "--work", str(work)]
    os.environ[LAUNCHED] = "1"
    code = launch(nprocs, argv, timeout=args.timeout, warmup=warmup)
    out = work / f"{which}.json"
    if code != 0 or not out.exists():
        raise SystemExit(f"incremental: the {which} launch on {nprocs} ranks failed "
                         f"(exit {code})")
    return json.loads(out.read_text())


# -- floors and sizes (the driver) --------------------------------------------------------------
def floor_write(path: Path, nbytes: int) -> float:
    """Seconds to write ``nbytes`` (numpy tofile, then fsync of the file and its directory)."""
    data = np.random.default_rng(nbytes).integers(0, 255, nbytes, np.uint8)
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        data.tofile(fh)
        fh.flush()
        os.fsync(fh.fileno())
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - t0
    path.unlink()
    return seconds


def floor_read(paths) -> float:
    """Seconds to read every file of ``paths`` in 16 MiB blocks."""
    buf = bytearray(16 << 20)
    t0 = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    return time.perf_counter() - t0


def step_dir(root: Path, step: int) -> Path:
    from mpips.ckpt import step_dir_name

    return root / step_dir_name(step)


def filesystem(path: Path) -> str:
    """The type of the file system ``path`` lies on (from /proc/mounts; "?" elsewhere)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "?"
    where = os.path.realpath(path)
    best = max((m for m in mounts if where == m[0] or where.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=None)
    return best[1] if best else "?"


def files_of(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file())


def chain_files(root: Path, step: int) -> list[Path]:
    """Every file a restore of ``step`` reads: its directory's and its parents' down to the base."""
    from mpips.ckpt import load_manifest

    out = []
    while True:
        directory = step_dir(root, step)
        out += files_of(directory)
        manifest = load_manifest(directory)
        if not manifest.delta:
            return out
        step = int(manifest.parent["step"])


def describe(directory: Path) -> dict:
    from mpips.ckpt import load_manifest

    manifest = load_manifest(directory)
    rows = sum(r.rows for s in manifest.shards for r in s.ranges.values())
    return {"bytes": sum(p.stat().st_size for p in files_of(directory)),
            "shard_bytes": manifest.total_bytes, "rows_written": int(rows),
            "delta": manifest.delta, "depth": manifest.depth}


def slowest(work: Path, servers: int, step: int) -> dict:
    """Per part of the servers' save of ``step``: the most seconds any server spent."""
    out: dict[str, float] = {}
    for index in range(servers):
        path = work / f"save-server-{index}.json"
        parts = json.loads(path.read_text()).get(str(step), {}) if path.exists() else {}
        for name, seconds in parts.items():
            out[name] = round(max(out.get(name, 0.0), seconds), 4)
    return out


def measure(args, work: Path) -> list[dict]:
    save = run_launch(args, work, "save", args.servers + 1, warmup=True)
    root, root_full = work / "ckpt", work / "ckpt-full"
    common = {"rows": args.rows, "change": args.change, "new_share": args.new_share,
              "zipf": args.zipf, "servers": args.servers, "fs": filesystem(work)}
    rows = []
    for s in save["saves"]:
        directory = step_dir(root_full if s["op"] == "full-save" and s["step"] > 1 else root,
                            s["step"])
        rows.append({"system": "mpips", **common, **s, "seconds": round(s["seconds"], 4),
                     "root": directory.parent.name, **describe(directory),
                     "servers_breakdown": slowest(work, args.servers, s["step"])})
    # floors: the same bytes, one writer, same file system, same run
    deltas = [r for r in rows if r["op"] == "delta-save"]
    for r in deltas:
        nbytes = r["changed_rows"] * ROW_BYTES
        rows.append({"system": "floor", "op": "write", **common, "of": "delta-save",
                     "step": r["step"], "changed_rows": r["changed_rows"], "bytes": nbytes,
                     "seconds": round(floor_write(work / "floor.bin", nbytes), 4)})
    for r in rows[:]:
        if r["system"] == "mpips" and r["op"] == "full-save":
            nbytes = r["changed_rows"] * ROW_BYTES
            rows.append({"system": "floor", "op": "write", **common, "of": "full-save",
                         "step": r["step"], "changed_rows": r["changed_rows"], "bytes": nbytes,
                         "seconds": round(floor_write(work / "floor.bin", nbytes), 4)})
    restore = run_launch(args, work, "restore", args.restore_servers + 1, warmup=False)
    last, full_step = args.rounds + 1, args.rounds + 2
    for op, paths, step in (("restore-full", files_of(step_dir(root_full, full_step)), full_step),
                            ("restore-chain", chain_files(root, last), last)):
        nbytes = sum(p.stat().st_size for p in paths)
        got = restore["restores"][op]
        rows.append({"system": "mpips", "op": op, **common,
                     "restore_servers": args.restore_servers, "step": got["step"],
                     "depth": got["depth"],
                     "files": len(paths), "bytes": nbytes, "seconds": round(got["seconds"], 4)})
        rows.append({"system": "floor", "op": "read", **common, "of": op, "files": len(paths),
                     "bytes": nbytes, "seconds": round(floor_read(paths), 4),
                     "note": "warm page cache, as the restore"})
    equal = (save["digest"], save["digest_after_push"]) == \
        (restore["digest"], restore["digest_after_push"])
    rows.append(summary(rows, common, args, save, restore, equal))
    return [{**r, "mpi": save["mpi"]} for r in rows]


def summary(rows, common, args, save, restore, equal: bool) -> dict:
    def median(system, op, field, of=None):
        return float(np.median([r[field] for r in rows if r["system"] == system and
                                r["op"] == op and r.get("of") == of]))
    full_b, delta_b = median("mpips", "full-save", "bytes"), median("mpips", "delta-save", "bytes")
    full_s = median("mpips", "full-save", "seconds")
    delta_s = median("mpips", "delta-save", "seconds")
    floor_delta = median("floor", "write", "seconds", "delta-save")
    floor_full = median("floor", "write", "seconds", "full-save")
    bytes_ratio, time_ratio = full_b / delta_b, full_s / delta_s
    chain = next(r for r in rows if r["system"] == "mpips" and r["op"] == "restore-chain")
    full_restore = next(r for r in rows if r["system"] == "mpips" and r["op"] == "restore-full")
    return {"system": "summary", **common, "restore_servers": args.restore_servers,
            "deltas": args.rounds, "full_bytes_median": int(full_b),
            "delta_bytes_median": int(delta_b), "full_seconds_median": round(full_s, 4),
            "delta_seconds_median": round(delta_s, 4),
            "bytes_ratio": round(bytes_ratio, 2), "time_ratio": round(time_ratio, 2),
            "goal_bytes_20x": bytes_ratio >= GOAL_BYTES, "goal_time_10x": time_ratio >= GOAL_TIME,
            "floor_delta_write_seconds_median": round(floor_delta, 4),
            "floor_full_write_seconds_median": round(floor_full, 4),
            "delta_fraction_of_floor": round(floor_delta / delta_s, 3),
            "full_fraction_of_floor": round(floor_full / full_s, 3),
            "floor_time_ratio": round(floor_full / floor_delta, 2),
            "restore_chain_seconds": chain["seconds"],
            "restore_full_seconds": full_restore["seconds"],
            "keys_pulled": save["keys"], "bitwise_equal": equal,
            "digest": save["digest"], "digest_restored": restore["digest"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.phase:
        phase(args)
        return 0
    if on_ranks():
        raise SystemExit("incremental.py launches itself twice, on different rank counts: "
                         "start it by hand (python benchmarks/incremental.py), not in mpiexec")
    work = Path(tempfile.mkdtemp(prefix="mpips-incremental-bench-", dir=args.dir))
    try:
        rows = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(rows, args.out)
    return 0 if rows[-1]["bitwise_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
