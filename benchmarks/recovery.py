"""Time from a SIGKILLed rank to training again, over N kills, next to bare MPI (issue 8).

Each kill runs sparse_lr on --ranks ranks with a checkpoint every epoch; one rank (servers
and workers in turn) SIGKILLs itself at a random moment (benchmarks/lr_kill.py). Two paths:

- ``live`` (a worker, in a ULFM launch): the job carries on without it. ``detect_s``: kill ->
  a server has retired it; ``recovery_s``: kill -> the other workers have shrunk their
  communicator and train on (``... carry on without it``).
- ``relaunch`` (a server; any rank without ULFM): ``leave_s``: kill -> the launch has ended,
  every survivor gone with exit code 76 (ULFM) or torn down by mpiexec; ``resume_s``: -> the
  relaunch on one rank fewer has restored the newest checkpoint ("resuming from" on worker
  0): MPI start, imports, tables, restore; ``recovery_s`` = leave_s + resume_s.

The floor, measured in the same run the same way with bare mpi4py: one of --ranks ranks
SIGKILLs itself while the others wait on it; ``live``: they revoke, shrink and Allreduce on
the shrunk communicator (ULFM only); ``relaunch``: they exit, and a bare launch of one rank
fewer reaches its first Barrier.

With --replicas 1 (Open MPI), the launch keeps a replica of each key range (async tables,
no checkpoints) and servers and workers are killed in turn; both paths are live. A server
(``live-server``): ``detect_s``: kill -> the first survivor logs the death; ``recovery_s``:
kill -> the segment's new server serves it and every worker has resent what the dead server
had not answered (training again). A worker: ``live`` as above.

Prints JSON lines (one per kill, then a summary per system and path with median and max)
and appends them to --out.
"""
from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from jsonlines import emit  # noqa: E402

from mpips.launch.launcher import lost_a_rank  # noqa: E402
from mpips.launch.mpiexec import (OPEN_MPI, detect_implementation, find_mpiexec,  # noqa: E402
                                  mpiexec_command)
from mpips.launch.processes import terminate_tree  # noqa: E402

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
BARE_LIVE = """
import os, signal, sys, time
import numpy as np
from mpi4py import MPI
comm = MPI.COMM_WORLD.Dup()
comm.Set_errhandler(MPI.ERRORS_RETURN)
comm.Barrier()
if comm.Get_rank() == comm.Get_size() - 1:
    time.sleep(0.2)
    print(f"bare rank kills itself at {time.time():.6f}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
try:
    comm.Recv(np.empty(1), source=comm.Get_size() - 1)
except MPI.Exception:
    comm.Revoke()
    alive = comm.Shrink()
    alive.allreduce(1)
    if alive.Get_rank() == 0:
        print("bare: carry on without it", file=sys.stderr, flush=True)
    os._exit(0)  # Finalize after a failure can hang (Open MPI 5.0.11): see mpips.mpi.fault.leave
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
    p.add_argument("--replicas", type=int, choices=(0, 1), default=0,
                   help="1: kill servers and workers of a launch with replicas (both live)")
    p.add_argument("--timeout", type=float, default=300, help="per launch, seconds")
    p.add_argument("--out", default=str(HERE / "results" / "recovery.jsonl"))
    return p.parse_args(argv)


def popen(nprocs: int, argv: list[str], ft: bool, env_extra=None) -> subprocess.Popen:
    command, env = mpiexec_command(nprocs, argv, ft=ft)
    env.update(env_extra or {}, PYTHONPATH=str(HERE.parent))
    return subprocess.Popen(command, env=env, cwd=HERE.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def watch(proc: subprocess.Popen, needles, timeout: float) -> tuple[dict, str, float]:
    """Read the launch's stderr to its end: ({needle: wall-clock time it first appeared},
    the stderr text, the time the launch ended). A launch past ``timeout`` is killed (a
    reader thread, so a silent hang cannot block this), and the benchmark stops."""
    seen, lines = {}, []

    def read() -> None:
        for line in proc.stderr:
            now = time.time()
            lines.append(line)
            for needle in needles:
                if needle in line and needle not in seen:
                    seen[needle] = now
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        terminate_tree(proc)
        raise SystemExit(f"recovery: a launch hung for {timeout} s:\n{''.join(lines)[-3000:]}")
    ended = time.time()
    reader.join(10)
    return seen, "".join(lines), ended


def first_line_at(proc: subprocess.Popen, needle: str, timeout: float) -> float:
    """Wall-clock time ``needle`` first appears on the launch's stderr (after its end)."""
    seen, _, _ = watch(proc, (needle,), timeout)
    if needle not in seen:
        raise SystemExit(f"recovery: the relaunch never printed {needle!r} (exit {proc.returncode})")
    return seen[needle]


LIVE_DONE, SERVER_SAW = "carry on without it", "died: serving the others"


def lr_job(args) -> list[str]:
    """The sparse_lr options every measured launch shares."""
    return ["--servers", str(args.servers), "--synthetic", str(args.synthetic), "--features",
            "5000", "--epochs", str(args.epochs), "--batch-size", "128", "--quiet"]


def one_live_kill(args, index: int) -> dict:
    """In a launch with replicas, a server (even ``index``) or a worker (odd) dies at a
    random moment of training; the job carries on without it."""
    workers = args.ranks - args.servers
    server = index % 2 == 0
    rank = workers + (index // 2) % args.servers if server else (index // 2) % workers
    at = random.Random(index).uniform(0.1, 1.0)
    job = [*lr_job(args), "--replicas", "1", "--consistency", "async", "--hashed-keys"]
    if server:  # the taking over, and every worker resending
        back = ["took over", *[f"worker {w}] server(s)" for w in range(workers)]]
        detected = " died:"
    else:  # a server retired the worker, the other workers shrank their communicator
        back, detected = [SERVER_SAW, LIVE_DONE], SERVER_SAW
    proc = popen(args.ranks, ["-m", "mpips", "run", "benchmarks/lr_kill.py", "--kill-rank",
                              str(rank), "--kill-at", f"{at:.3f}", "--kill-max-delay", "0",
                              *job], True)
    seen, err, _ = watch(proc, (detected, *back), args.timeout)
    killed = KILLED_AT.search(err)
    if proc.returncode != 0 or killed is None or not all(n in seen for n in back):
        raise SystemExit(f"recovery: kill {index} (rank {rank}) did not end live (exit "
                         f"{proc.returncode}):\n{err[-2000:]}")
    t_kill = float(killed.group(1))
    return {"system": "mpips", "path": "live-server" if server else "live", "kill": index,
            "rank": rank, "kill_at_s": round(at, 3), "launch_exit": proc.returncode,
            "detect_s": round(seen[detected] - t_kill, 4),
            "recovery_s": round(max(seen[n] for n in back) - t_kill, 4)}


def one_kill(args, index: int, ft: bool, work: Path) -> dict:
    ckpt = work / f"ck{index}"
    rank = index % args.ranks  # servers and workers in turn
    job = [*lr_job(args), "--checkpoint-dir", str(ckpt), "--resume"]
    after = 1 + index % max(1, args.epochs - 3)
    first = popen(args.ranks, ["-m", "mpips", "run", "benchmarks/lr_kill.py", "--kill-rank",
                               str(rank), "--kill-after", str(after), "--kill-seed", str(index),
                               *job], ft)
    seen, err, t_end = watch(first, (LIVE_DONE, SERVER_SAW, "lost rank"), args.timeout)
    killed = KILLED_AT.search(err)
    if killed is None:
        raise SystemExit(f"recovery: kill {index} did not happen (exit {first.returncode}):\n"
                         f"{err[-2000:]}")
    t_kill = float(killed.group(1))
    row = {"system": "mpips", "kill": index, "rank": rank, "after_checkpoints": after,
           "launch_exit": first.returncode}
    if first.returncode == 0 and LIVE_DONE in seen:  # a worker died; the others carried on
        return {**row, "path": "live", "detect_s": round(seen[SERVER_SAW] - t_kill, 4),
                "recovery_s": round(max(seen[LIVE_DONE], seen[SERVER_SAW]) - t_kill, 4)}
    if not lost_a_rank(first.returncode):
        raise SystemExit(f"recovery: kill {index} ended neither live nor as a lost rank "
                         f"(exit {first.returncode}):\n{err[-2000:]}")
    relaunch = popen(args.ranks - 1, ["jobs/sparse_lr.py", *job], ft,
                     {"MPIPS_RANKS_LOST": "1"})
    t_resumed = first_line_at(relaunch, "resuming from", args.timeout)
    if relaunch.returncode != 0:
        raise SystemExit(f"recovery: relaunch after kill {index} failed ({relaunch.returncode})")
    return {**row, "path": "relaunch", "leave_s": round(t_end - t_kill, 4),
            "resume_s": round(t_resumed - t_end, 4), "recovery_s": round(t_resumed - t_kill, 4)}


def bare_floor(args, index: int, ft: bool) -> dict:
    first = popen(args.ranks, ["-c", BARE_KILL], ft)
    _, err, t_end = watch(first, (), args.timeout)
    killed = KILLED_AT.search(err)
    if killed is None:
        raise SystemExit(f"recovery: the bare kill did not happen:\n{err[-2000:]}")
    t_resumed = first_line_at(popen(args.ranks - 1, ["-c", BARE_START], ft), "resuming from",
                              args.timeout)
    t_kill = float(killed.group(1))
    return {"system": "bare-mpi", "path": "relaunch", "kill": index,
            "launch_exit": first.returncode, "leave_s": round(t_end - t_kill, 4),
            "resume_s": round(t_resumed - t_end, 4), "recovery_s": round(t_resumed - t_kill, 4)}


def bare_live_floor(args, index: int) -> dict:
    seen, err, _ = watch(popen(args.ranks, ["-c", BARE_LIVE], True), ("bare: " + LIVE_DONE,),
                         args.timeout)
    killed = KILLED_AT.search(err)
    if killed is None or not seen:
        raise SystemExit(f"recovery: the bare live recovery did not happen:\n{err[-2000:]}")
    return {"system": "bare-mpi", "path": "live", "kill": index,
            "recovery_s": round(min(seen.values()) - float(killed.group(1)), 4)}


def summary(rows: list[dict], system: str, path: str, common: dict) -> dict | None:
    mine = [r for r in rows if r["system"] == system and r["path"] == path]
    if not mine:
        return None
    out = {"summary": True, "system": system, "path": path, "kills": len(mine), **common}
    for key in ("detect_s", "leave_s", "resume_s", "recovery_s"):
        values = [r[key] for r in mine if key in r]
        if values:
            out[f"{key}_median"] = round(statistics.median(values), 4)
            out[f"{key}_max"] = round(max(values), 4)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    implementation = detect_implementation(find_mpiexec())
    ft = implementation == OPEN_MPI
    if args.replicas and not ft:
        raise SystemExit("recovery: --replicas 1 needs Open MPI's ULFM (a dead server ends an "
                         "MPICH launch)")
    common = {"benchmark": "recovery", "mpi": implementation, "ulfm": ft, "ranks": args.ranks,
              "servers": args.servers, "replicas": args.replicas}
    subprocess.run([sys.executable, "-m", "mpips", "warmup"], check=True, capture_output=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpips-recovery-") as tmp:
        for index in range(args.kills):
            if args.replicas:
                measured = [bare_live_floor(args, index), one_live_kill(args, index)]
            else:
                floors = [bare_floor(args, index, ft)] + ([bare_live_floor(args, index)]
                                                          if ft else [])
                measured = [*floors, one_kill(args, index, ft, Path(tmp))]
            for row in measured:
                rows.append({**common, **row})
                emit([rows[-1]], args.out)
    summaries = [summary(rows, system, path, common) for system in ("bare-mpi", "mpips")
                 for path in ("live", "live-server", "relaunch")]
    emit([row for row in summaries if row], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
