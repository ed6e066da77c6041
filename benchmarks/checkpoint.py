"""Checkpoint write and restore bandwidth of mpips next to dd moving the same bytes, same run.

A dense float32 table of --gib GiB (width 1, "sum" rule: values only) is saved as --servers
shards (written one after the other by this process, each durably: fsync + sha256) and
restored as --restore-servers key ranges with mpips.ckpt.read_table straight into one
preallocated array (fletcher32 checked on every chunk). The floor is dd in the same run:

- write: ``dd if=/dev/zero of=F bs=16M conv=fsync`` of the table's bytes;
- restore: ``dd if=SHARD of=/dev/null bs=16M`` of every shard file the restore reads, i.e.
  the same bytes from the same files in the same cache state.

Reads are measured --reads times per written checkpoint, dd and mpips in turn (the order
alternates from round to round), in two cache states: "evicted" after posix_fadvise(DONTNEED)
on every shard (clean pages leave the page cache; without root it cannot be dropped, and a
VM's host may still cache the disk) and "warm" with the shards in the page cache.

    python benchmarks/checkpoint.py --gib 1 --servers 2 --repeat 3

Prints one JSON object per measurement (system mpips|dd, op write|restore, cache, bytes,
seconds, gb_per_s, fraction_of_dd against the dd of the same round), then one summary per
op and cache (system "summary": medians of both over every round, their ratio, and whether it
reaches the goal of 0.5), and appends them all to --out.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpips.ckpt import TableMeta, read_table, save_checkpoint, split_table  # noqa: E402
from jsonlines import emit  # noqa: E402  (benchmarks/jsonlines.py, next to this script)
from mpips.kernels.fletcher import fletcher32  # noqa: E402
from mpips.core.partition import RangePartition  # noqa: E402

MIB = 1 << 20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gib", type=float, default=1.0, help="table size in GiB (default 1.0)")
    p.add_argument("--servers", type=int, default=2, help="shards written (default 2)")
    p.add_argument("--restore-servers", type=int, default=None,
                   help="key ranges restored (default: --servers)")
    p.add_argument("--compression", choices=("none", "gzip", "lzf"), default="none",
                   help="dataset compression (default none: a bandwidth run)")
    p.add_argument("--chunk-mib", type=float, default=4.0, help="HDF5 chunk size in MiB")
    p.add_argument("--repeat", type=int, default=1,
                   help="write this many checkpoints, each with fresh files (default 1)")
    p.add_argument("--reads", type=int, default=3,
                   help="rounds of reads of each written checkpoint (default 3)")
    p.add_argument("--dir", default=None, help="scratch directory (default: a new temp dir)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "checkpoint.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    return p.parse_args(argv)


def evict(paths) -> None:
    """Drop the clean cached pages of these files (no root needed, unlike drop_caches)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def dd(*operands) -> None:
    subprocess.run(["dd", *operands, "status=none"], check=True)


def make_table(nbytes: int) -> tuple[TableMeta, np.ndarray]:
    n = nbytes // 4
    values = np.empty((n, 1), np.float32)
    rng = np.random.default_rng(0)
    step = 16 * MIB
    for start in range(0, n, step):
        values[start:start + step, 0] = rng.random(min(step, n - start), dtype=np.float32)
    return TableMeta("table", "dense", n, 1, "sum", {}, 0.0, 0, ()), values


GOAL = 0.5
"""Issue #6: write and restore at least at half of dd's bandwidth."""


def measure(args, work: Path) -> list[tuple[str, str, str, int, float]]:
    """(system, op, cache, round, seconds) of one written checkpoint and its rounds of reads."""
    nbytes = max(1, round(args.gib * 1024)) * MIB
    bs = min(16 * MIB, nbytes)
    meta, values = make_table(nbytes)
    fletcher32(np.zeros(8, np.uint8))  # load the numba kernel outside the timed restore
    slices = split_table(meta, args.servers, values)
    compression = None if args.compression == "none" else args.compression
    results = []

    ddfile = work / "dd.bin"
    os.sync()
    results.append(("dd", "write", "-", 0, timed(lambda: dd(
        "if=/dev/zero", f"of={ddfile}", f"bs={bs}", f"count={nbytes // bs}", "conv=fsync"))))
    ddfile.unlink()
    os.sync()
    path = None

    def save():
        nonlocal path
        path = save_checkpoint(work / "ckpt", 1, [[s] for s in slices], {"bench": "checkpoint"},
                               compression=compression, chunk_bytes=int(args.chunk_mib * MIB))
    results.append(("mpips", "write", "-", 0, timed(save)))
    out = np.empty_like(values)
    ranges = RangePartition(meta.size, args.restore_servers or args.servers).ranges()
    shards = sorted(path.glob("shard-*.h5"))

    def restore():
        for r in ranges:
            read_table(path, "table", r, out_values=out[r.begin:r.end], dense_keys=False)

    def dd_shards():
        for shard in shards:
            dd(f"if={shard}", "of=/dev/null", f"bs={bs}")
    for rnd in range(args.reads):
        for cache in ("evicted", "warm"):
            order = [("dd", dd_shards), ("mpips", restore)]
            for system, read in order if rnd % 2 == 0 else order[::-1]:
                if cache == "evicted":
                    evict(shards)
                out.fill(0)  # mpips writes into touched memory, as a restoring server does
                results.append((system, "restore", cache, rnd, timed(read)))
                if system == "mpips" and not np.array_equal(out, values):
                    raise SystemExit("benchmark: restored table differs from the saved one")
    return results


def rows_of(args, results, file_bytes: int, repeat: int) -> list[dict]:
    nbytes = max(1, round(args.gib * 1024)) * MIB
    floors = {(op, cache, rnd): s for system, op, cache, rnd, s in results if system == "dd"}
    return [{"system": system, "op": op, "cache": cache, "round": rnd, "repeat": repeat,
             "bytes": nbytes, "seconds": round(seconds, 6),
             "gb_per_s": round(nbytes / seconds / 1e9, 3),
             "fraction_of_dd": round(floors[op, cache, rnd] / seconds, 3), **_setup(args),
             "file_bytes": file_bytes if system == "mpips" or op == "restore" else nbytes,
             "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            for system, op, cache, rnd, seconds in results]


def summaries(args, rows: list[dict]) -> list[dict]:
    """Per op and cache: the median seconds of dd and of mpips over every round and repeat."""
    out = []
    for op, cache in dict.fromkeys((r["op"], r["cache"]) for r in rows):
        median = {system: float(np.median([r["seconds"] for r in rows if r["system"] == system
                                           and r["op"] == op and r["cache"] == cache]))
                  for system in ("dd", "mpips")}
        fraction = round(median["dd"] / median["mpips"], 3)
        out.append({"system": "summary", "op": op, "cache": cache,
                    "samples": sum(r["op"] == op and r["cache"] == cache and
                                   r["system"] == "mpips" for r in rows),
                    "dd_seconds_median": round(median["dd"], 6),
                    "mpips_seconds_median": round(median["mpips"], 6),
                    "fraction_of_dd": fraction, "goal": GOAL, "meets_goal": fraction >= GOAL,
                    **_setup(args), "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return out


def _setup(args) -> dict:
    return {"servers": args.servers, "restore_servers": args.restore_servers or args.servers,
            "compression": args.compression, "chunk_mib": args.chunk_mib,
            "note": "page cache not dropped (no root): 'evicted' = posix_fadvise DONTNEED"}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.repeat < 1 or args.reads < 1:
        raise SystemExit("checkpoint.py: --repeat and --reads must be at least 1")
    every = []
    for repeat in range(args.repeat):
        work = Path(tempfile.mkdtemp(prefix="mpips-ckpt-bench-", dir=args.dir))
        try:
            results = measure(args, work)
            file_bytes = sum(p.stat().st_size for p in (work / "ckpt").rglob("shard-*.h5"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows = rows_of(args, results, file_bytes, repeat)
        emit(rows, args.out, stamp=False)
        every += rows
    emit(summaries(args, every), args.out, stamp=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
