"""Loading a large LIBSVM data set on several workers: every rank parsing the whole text (what
sparse_lr --read whole does), each rank parsing its byte range (--read parts), and each rank
reading its rows of an mpips data file (.h5, hyperslabs), next to the floor: reading the
rank's share of the text's bytes with no parsing at all.

    python benchmarks/data_load.py                       # 1 GB text, 4 ranks
    python benchmarks/data_load.py --megabytes 200 --ranks 2

Makes (once, kept under --dir) a synthetic LIBSVM file of about --megabytes MB
(mpips.ml.synthetic, 40 features per row of 10M) and its data file (``mpips data convert``,
timed), then per mode launches --ranks ranks (mpips launch) that each load their part and
report the seconds (the slowest rank's) and their peak resident memory above what the
interpreter held before loading (ru_maxrss). One JSON line per mode, appended to
benchmarks/results/data_load.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.jsonlines import emit  # noqa: E402

MODES = ("whole", "parts", "h5", "floor")
FEATURES, NNZ, CHUNK_ROWS = 10_000_000, 40, 200_000


def make_text(path: Path, megabytes: float, seed: int) -> int:
    """A synthetic LIBSVM file of about ``megabytes`` MB; returns its rows."""
    from mpips.ml.libsvm import write_libsvm
    from mpips.ml.synthetic import make_sparse_classification

    target, rows, part = megabytes * 1e6, 0, path.with_suffix(".part")
    chunk_rows = min(CHUNK_ROWS, max(1000, int(megabytes * 1000)))  # ~300 bytes a row
    with open(path, "wb") as out:
        while out.tell() < target:
            chunk = make_sparse_classification(chunk_rows, FEATURES, NNZ, seed + rows)
            write_libsvm(chunk, part)
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out)
            rows += chunk.n_rows
    part.unlink()
    return rows


def rank_main(mode: str, text: str, data: str) -> None:
    """On each rank of a launch: load this rank's part, print ``LOAD <json>`` (rank 0, for
    all ranks)."""
    import numpy as np
    from mpi4py import MPI

    from mpips.ml.csr_file import open_data
    from mpips.ml.libsvm import read_libsvm
    from mpips.ml.libsvm_part import part_range, read_libsvm_part

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    comm.Barrier()
    began = time.perf_counter()
    if mode == "whole":
        rows = read_libsvm(text).shard(rank, size).n_rows
    elif mode == "parts":
        part = read_libsvm_part(text, rank, size)
        rows = part.dataset(False, FEATURES).n_rows
    elif mode == "h5":
        with open_data(data, "libsvm") as file:
            rows = file.read_part(rank, size).n_rows
    else:  # the floor: this rank's bytes of the text, read and not parsed
        lo, hi = part_range(os.path.getsize(text), rank, size)
        with open(text, "rb") as handle:
            handle.seek(lo)
            rows = int(np.fromfile(handle, np.uint8, hi - lo).size > 0)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mine = np.array([seconds, (peak - before) / 1024.0, rows], np.float64)
    every = np.empty((size, 3), np.float64)
    comm.Gather(mine, every, root=0)
    if rank == 0:
        print("LOAD " + json.dumps({"seconds": float(every[:, 0].max()),
                                    "peak_mib_per_rank": [round(x, 1) for x in every[:, 1]],
                                    "rows": int(every[:, 2].sum())}), flush=True)


def drop_caches_hint() -> str:
    return "page cache warm (the file was just written or read)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--megabytes", type=float, default=1000.0, help="text size (default 1000)")
    p.add_argument("--ranks", type=int, default=4, help="ranks that load (default 4)")
    p.add_argument("--dir", default="/tmp/mpips-data-load", help="where the files are made")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated, of " +
                   ", ".join(MODES))
    p.add_argument("--out", default=str(HERE / "results" / "data_load.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    p.add_argument("--rank", nargs=3, metavar=("MODE", "TEXT", "H5"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rank:
        rank_main(*args.rank)
        return 0
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= set(MODES) or args.megabytes <= 0 or args.ranks < 1:
        p.error(f"--modes must name some of {', '.join(MODES)}; --megabytes and --ranks > 0")
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / f"synthetic-{args.megabytes:g}MB-{args.seed}.svm"
    data = text.with_suffix(".h5")
    made = time.perf_counter()
    if not text.exists():
        make_text(text, args.megabytes, args.seed)
        print(f"made {text} in {time.perf_counter() - made:.1f} s", file=sys.stderr)
    convert_seconds = None
    if not data.exists():
        from mpips.ml.csr_write import convert
        convert_seconds = convert(text, data, "libsvm").seconds
    common = {"bench": "data_load", "text_bytes": text.stat().st_size,
              "h5_bytes": data.stat().st_size, "ranks": args.ranks,
              "convert_seconds": convert_seconds, "cache": drop_caches_hint()}
    rows = []
    for mode in modes:
        cmd = [sys.executable, "-m", "mpips", "launch", "-n", str(args.ranks), "--", str(
            Path(__file__).resolve()), "--rank", mode, str(text), str(data)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
        lines = [line[5:] for line in proc.stdout.splitlines() if line.startswith("LOAD ")]
        if proc.returncode != 0 or not lines:
            print(proc.stdout[-2000:] + proc.stderr[-2000:], file=sys.stderr)
            return 1
        rows.append({**common, "mode": mode, **json.loads(lines[-1])})
    floor = next((r["seconds"] for r in rows if r["mode"] == "floor"), None)
    whole = next((r["seconds"] for r in rows if r["mode"] == "whole"), None)
    for row in rows:
        row["x_floor"] = round(row["seconds"] / floor, 2) if floor else None
        row["speedup_vs_whole"] = round(whole / row["seconds"], 1) if whole else None
    emit(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
