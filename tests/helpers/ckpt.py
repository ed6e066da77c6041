"""Shared data and tools of the checkpoint tests; also the crash-injection writer.

``python -m tests.helpers.ckpt PLAN.json`` runs the crash trials of PLAN (see
``run_crash_trials``) and prints one JSON result line per trial.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpips.ckpt import TableMeta, save_checkpoint, split_table
from mpips.ckpt import durable
from mpips.core.spec import TableSpec
from tests.helpers.data import REPO_ROOT


@dataclass
class Whole:
    """A whole table as the original arrays a checkpoint must reproduce bit for bit."""

    meta: TableMeta
    keys: np.ndarray | None
    values: np.ndarray
    state: dict


def ckpt_cli(*args) -> subprocess.CompletedProcess:
    """``python -m mpips ckpt ARGS`` run as a user would, from the repository root."""
    return subprocess.run([sys.executable, "-m", "mpips", "ckpt", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          check=False)


def make_tables(seed: int = 0, scale: int = 1) -> list[Whole]:
    """Dense width 2 AdaGrad, dense width 1 sum, sparse width 2 AdaGrad (keys include 0 and
    2**64-1; placed by hashed position), sparse width 1 SGD with 3 small keys placed by range
    (so most servers hold none)."""
    rng = np.random.default_rng(seed)
    out = []
    for name, kind, size, width, rule, n in [("emb", "dense", 1000 * scale, 2, "adagrad", 0),
                                             ("bias", "dense", 37, 1, "sum", 0),
                                             ("w", "sparse", 2**64, 2, "adagrad", 3000 * scale),
                                             ("few", "sparse", 2**64, 1, "sgd", 3)]:
        spec = TableSpec(name, kind, len(out), 1, size, width, rule, {"lr": 0.05}
                         if rule != "sum" else {}, init=0.5 if rule == "sgd" else 0.0,
                         placement="range" if name == "few" else "")
        meta = TableMeta.from_spec(spec)
        if kind == "dense":
            keys, rows = None, size
        elif name == "few":
            keys = np.array([1, 5, 9], np.uint64)
            rows = 3
        else:
            raw = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
            keys = np.unique(np.concatenate([raw, np.array([0, 2**64 - 1], np.uint64)]))
            rows = keys.size
        values = rng.standard_normal((rows, width)).astype(np.float32)
        state = {s: rng.random((rows, width), dtype=np.float32) for s in meta.state_names}
        out.append(Whole(meta, keys, values, state))
    return out


def slices_by_server(tables: list[Whole], num_servers: int):
    """[[SliceData of every table] for each server]."""
    per_table = [split_table(t.meta, num_servers, t.values, keys=t.keys, state=t.state)
                 for t in tables]
    return [[per_table[t][s] for t in range(len(tables))] for s in range(num_servers)]


def save(root, step: int, num_servers: int, tables: list[Whole], **kwargs) -> Path:
    return save_checkpoint(root, step, slices_by_server(tables, num_servers), {"step": step},
                           **kwargs)


def file_hashes(root) -> dict[str, str]:
    """Relative path → sha256 of every file under ``root``."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_only(path):
    """Make the directory ``path`` read-only, for root too (chattr +i); returns the undo."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    subprocess.run(["chattr", "+i", str(path)], check=True)
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def flip_bit_in_chunk(path: Path, dataset: str, chunk: int = 0, byte: int = 3, bit: int = 4) -> int:
    """Flip one bit inside a stored chunk of ``dataset`` (located with h5py); returns offset."""
    import h5py

    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(chunk)
    offset = info.byte_offset + byte
    assert byte < info.size
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([old ^ (1 << bit)]))
    return offset


# ------------------------------------------------------------------- crash-injection writer

def _write_and_exit(root: str, step: int, tables: list[Whole], num_servers: int,
                    kill_at: int | None) -> None:
    """Child process: save ``step`` (SIGKILLing itself at protocol point ``kill_at``)."""
    calls = []

    def hook(label):
        calls.append(label)
        if kill_at is not None and len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    durable.crash_hook = hook
    save(root, step, num_servers, tables)
    print(json.dumps({"points": calls}), flush=True)
    os._exit(0)


def _trial(root: str, step: int, tables, num_servers: int, kill_at=None, delay=None) -> dict:
    read_fd, write_fd = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        os.dup2(write_fd, 1)
        try:
            _write_and_exit(root, step, tables, num_servers, kill_at)
        finally:
            os._exit(3)
    os.close(write_fd)
    if delay is not None:
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return {"root": root, "kill_at": kill_at, "delay": delay, "killed": killed,
            "seconds": time.perf_counter() - t0,
            "points": json.loads(text)["points"] if text.strip() else None}


def run_crash_trials(plan: dict) -> list[dict]:
    """Plan: ``calibrate_root``, ``roots`` (one per trial), ``step``, ``num_servers``, ``seed``.
    A calibration run counts the protocol points and times a full save; then one trial per
    protocol point kills the writer exactly there, and the remaining trials kill it after a
    random delay within the save's duration."""
    from mpips.kernels.fletcher import fletcher32

    fletcher32(np.zeros(8, np.uint8))  # load the kernel once, before the forks
    step, servers = plan["step"], plan["num_servers"]
    tables = make_tables(seed=step, scale=plan.get("scale", 30))
    calib = _trial(plan["calibrate_root"], step, tables, servers)
    points, duration = len(calib["points"]), calib["seconds"]
    rng = random.Random(plan["seed"])
    results = []
    for i, root in enumerate(plan["roots"]):
        if i < points:
            results.append(_trial(root, step, tables, servers, kill_at=i + 1))
        else:
            results.append(_trial(root, step, tables, servers,
                                  delay=rng.uniform(0, 1.2 * duration)))
    return [calib] + results


if __name__ == "__main__":
    for line in run_crash_trials(json.loads(Path(sys.argv[1]).read_text())):
        print(json.dumps(line), flush=True)
