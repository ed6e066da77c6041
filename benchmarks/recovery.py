"""Time from a SIGKILLed rank to training again, over N kills, next to bare MPI (issue 8).

Each kill runs sparse_lr on --ranks ranks with a checkpoint every epoch; one rank (servers
and workers in turn) SIGKILLs itself at a random moment (benchmarks/lr_kill.py). Measured:

- ``leave_s``: kill -> the launch has ended, every survivor gone with exit code 76 (Open MPI:
  ULFM notices the death, mpips.fault revokes and leaves; MPICH: mpiexec tears it down);
- ``resume_s``: that moment -> the relaunch on one rank fewer has restored the newest
  checkpoint ("resuming from" on worker 0): MPI start, imports, tables, restore;
- ``recovery_s`` = leave_s + resume_s.

The floor, measured in the same run the same way: a bare mpi4py program where one of
--ranks ranks SIGKILLs itself while the others wait on it (``leave_s``), and a bare launch
of one rank fewer reaching its first Barrier (``resume_s``).

Prints JSON lines (one per kill, then a summary with median and max of each) and appends
them to --out. There is no live recovery yet (replicas, issue 8): this is the relaunch path.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from jsonlines import emit  # noqa: E402

from mpips.launcher import (OPEN_MPI, detect_implementation, find_mpiexec,  # noqa: E402
                            lost_a_rank, mpiexec_command)

KILLED_AT = re.compile(r"kills itself.* at (\d+\.\d+)")
BARE_KILL = """
import os, signal, sys, time
import numpy as np
from mpi4py import MPI
comm = MPI.COMM_WORLD
comm.Barrier()
if comm.Get_rank() == comm.Get_size() - 1:
    time.sleep(0.2)
    print(f"bare rank kills itself at {time.time():.6f}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
try:
    comm.Recv(np.empty(1), source=comm.Get_size() - 1)
except MPI.Exception:
    sys.exit(76)
"""
BARE_START = ("from mpi4py import MPI; import sys; MPI.COMM_WORLD.Barrier(); "
              "print('resuming from nothing', file=sys.stderr, flush=True)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="kills measured (default 20)")
    p.add_argument("--ranks", type=int, default=4, help="ranks of each launch (default 4)")
    p.add_argument("--servers", type=int, default=2, help="servers (default 2)")
    p.add_argument("--synthetic", type=int, default=12000, help="sparse_lr rows (default 12000)")
    p.add_argument("--epochs", type=int, default=8, help="sparse_lr epochs (default 8)")
    p.add_argument("--timeout", type=float, default=300, help="per launch, seconds")
    p.add_argument("--out", default=str(HERE / "results" / "recovery.jsonl"))
    return p.parse_args(argv)


def popen(nprocs: int, argv: list[str], ft: bool, env_extra=None) -> subprocess.Popen:
    command, env = mpiexec_command(nprocs, argv, ft=ft)
    env.update(env_extra or {}, PYTHONPATH=str(HERE.parent))
    return subprocess.Popen(command, env=env, cwd=HERE.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def ended_at(proc: subprocess.Popen, timeout: float) -> tuple[float, str]:
    """(wall-clock time the launch ended, its stderr)."""
    _, err = proc.communicate(timeout=timeout)
    return time.time(), err


def first_line_at(proc: subprocess.Popen, needle: str, timeout: float) -> float:
    """Wall-clock time ``needle`` first appears on the launch's stderr (then wait for its end)."""
    deadline, seen = time.time() + timeout, None
    for line in proc.stderr:
        if seen is None and needle in line:
            seen = time.time()
        if time.time() > deadline:
            break
    proc.wait(timeout=max(1.0, deadline - time.time()))
    if seen is None:
        raise SystemExit(f"recovery: the relaunch never printed {needle!r} (exit {proc.returncode})")
    return seen


def one_kill(args, index: int, ft: bool, work: Path) -> dict:
    ckpt = work / f"ck{index}"
    rank = index % args.ranks  # servers and workers in turn
    job = ["--servers", str(args.servers), "--synthetic", str(args.synthetic), "--features",
           "5000", "--epochs", str(args.epochs), "--batch-size", "128", "--quiet",
           "--checkpoint-dir", str(ckpt), "--resume"]
    after = 1 + index % max(1, args.epochs - 3)
    first = popen(args.ranks, ["-m", "mpips", "run", "benchmarks/lr_kill.py", "--kill-rank",
                               str(rank), "--kill-after", str(after), "--kill-seed", str(index),
                               *job], ft)
    t_end, err = ended_at(first, args.timeout)
    killed = KILLED_AT.search(err)
    if not lost_a_rank(first.returncode) or killed is None:
        raise SystemExit(f"recovery: kill {index} did not end the launch as a lost rank "
                         f"(exit {first.returncode}):\n{err[-2000:]}")
    relaunch = popen(args.ranks - 1, ["jobs/sparse_lr.py", *job], ft,
                     {"MPIPS_RANKS_LOST": "1"})
    t_resumed = first_line_at(relaunch, "resuming from", args.timeout)
    if relaunch.returncode != 0:
        raise SystemExit(f"recovery: relaunch after kill {index} failed ({relaunch.returncode})")
    t_kill = float(killed.group(1))
    return {"system": "mpips", "kill": index, "rank": rank, "after_checkpoints": after,
            "launch_exit": first.returncode, "leave_s": round(t_end - t_kill, 4),
            "resume_s": round(t_resumed - t_end, 4), "recovery_s": round(t_resumed - t_kill, 4)}


def bare_floor(args, index: int, ft: bool) -> dict:
    first = popen(args.ranks, ["-c", BARE_KILL], ft)
    t_end, err = ended_at(first, args.timeout)
    killed = KILLED_AT.search(err)
    if killed is None:
        raise SystemExit(f"recovery: the bare kill did not happen:\n{err[-2000:]}")
    t_resumed = first_line_at(popen(args.ranks - 1, ["-c", BARE_START], ft), "resuming from",
                              args.timeout)
    t_kill = float(killed.group(1))
    return {"system": "bare-mpi", "kill": index, "launch_exit": first.returncode,
            "leave_s": round(t_end - t_kill, 4), "resume_s": round(t_resumed - t_end, 4),
            "recovery_s": round(t_resumed - t_kill, 4)}


def summary(rows: list[dict], system: str, common: dict) -> dict:
    mine = [r for r in rows if r["system"] == system]
    out = {"summary": True, "system": system, "kills": len(mine), **common}
    for key in ("leave_s", "resume_s", "recovery_s"):
        values = [r[key] for r in mine]
        out[f"{key}_median"] = round(statistics.median(values), 4)
        out[f"{key}_max"] = round(max(values), 4)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    implementation = detect_implementation(find_mpiexec())
    ft = implementation == OPEN_MPI
    common = {"benchmark": "recovery", "mpi": implementation, "ulfm": ft, "ranks": args.ranks,
              "servers": args.servers, "path": "relaunch from checkpoint (no replicas)"}
    subprocess.run([sys.executable, "-m", "mpips", "warmup"], check=True, capture_output=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpips-recovery-") as tmp:
        for index in range(args.kills):
            for row in (bare_floor(args, index, ft), one_kill(args, index, ft, Path(tmp))):
                rows.append({**common, **row})
                emit([rows[-1]], args.out)
    emit([summary(rows, "bare-mpi", common), summary(rows, "mpips", common)], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
