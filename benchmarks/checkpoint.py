"""Checkpoint write and restore bandwidth of mpips next to dd moving the same bytes, same run.

A dense float32 table of --gib GiB (width 1, "sum" rule: values only) is saved as --servers
shards (written one after the other by this process, each durably: fsync + sha256) and
restored as --restore-servers key ranges with mpips.ckpt.read_table straight into one
preallocated array (fletcher32 checked on every chunk). The floor is dd in the same run:
``dd if=/dev/zero of=F bs=16M conv=fsync`` for writes, ``dd if=F of=/dev/null bs=16M`` for
reads. The page cache cannot be dropped without root, so reads are measured twice: "evicted"
after posix_fadvise(DONTNEED) on every file read (clean pages leave the cache; on a VM the
host may still cache the disk) and "warm" with the files in the page cache.

    python benchmarks/checkpoint.py --gib 1 --servers 2

Prints one JSON object per measurement (system mpips|dd, op write|restore, cache, bytes,
seconds, gb_per_s, fraction_of_dd) and appends them to --out.
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
from mpips.partition import RangePartition  # noqa: E402

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
                   help="measure everything this many times (fresh files each time)")
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


def measure(args, work: Path) -> list[dict]:
    nbytes = max(1, round(args.gib * 1024)) * MIB
    bs = min(16 * MIB, nbytes)
    meta, values = make_table(nbytes)
    fletcher32(np.zeros(8, np.uint8))  # load the numba kernel outside the timed restore
    slices = split_table(meta, args.servers, values)
    ddfile = work / "dd.bin"
    compression = None if args.compression == "none" else args.compression
    results = []

    os.sync()
    results.append(("dd", "write", "-", timed(lambda: dd("if=/dev/zero", f"of={ddfile}", f"bs={bs}",
                                                      f"count={nbytes // bs}", "conv=fsync"))))
    os.sync()
    path = None

    def save():
        nonlocal path
        path = save_checkpoint(work / "ckpt", 1, [[s] for s in slices], {"bench": "checkpoint"},
                               compression=compression, chunk_bytes=int(args.chunk_mib * MIB))
    results.append(("mpips", "write", "-", timed(save)))
    out = np.empty_like(values)
    ranges = RangePartition(meta.size, args.restore_servers or args.servers).ranges()

    def restore():
        for r in ranges:
            read_table(path, "table", r, out_values=out[r.begin:r.end], dense_keys=False)
    shards = sorted(path.glob("shard-*.h5"))
    for cache in ("evicted", "warm"):
        if cache == "evicted":
            evict([ddfile, *shards])
        results.append(("dd", "restore", cache, timed(lambda: dd(f"if={ddfile}", "of=/dev/null",
                                                                  f"bs={bs}"))))
        if cache == "evicted":
            evict(shards)
        out.fill(0)
        results.append(("mpips", "restore", cache, timed(restore)))
    if not np.array_equal(out, values):
        raise SystemExit("benchmark: restored table differs from the saved one")
    file_bytes = sum(p.stat().st_size for p in shards)
    return [_row(args, system, op, cache, nbytes, seconds, results, file_bytes)
            for system, op, cache, seconds in results]


def _row(args, system, op, cache, nbytes, seconds, results, file_bytes) -> dict:
    floor = next(s for sy, o, c, s in results if sy == "dd" and o == op and c == cache)
    return {"system": system, "op": op, "cache": cache, "bytes": nbytes,
            "seconds": round(seconds, 4), "gb_per_s": round(nbytes / seconds / 1e9, 3),
            "fraction_of_dd": round(floor / seconds, 3), "servers": args.servers,
            "restore_servers": args.restore_servers or args.servers,
            "compression": args.compression, "chunk_mib": args.chunk_mib,
            "file_bytes": file_bytes if system == "mpips" else nbytes,
            "note": "page cache not dropped (no root): 'evicted' = posix_fadvise DONTNEED",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def main(argv=None) -> int:
    args = parse_args(argv)
    for repeat in range(args.repeat):
        work = Path(tempfile.mkdtemp(prefix="mpips-ckpt-bench-", dir=args.dir))
        try:
            rows = [{**row, "repeat": repeat} for row in measure(args, work)]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        emit(rows, args.out, stamp=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
