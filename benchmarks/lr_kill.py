"""sparse_lr with ranks SIGKILLed at a random moment of training (a job for ``mpips run``).

    mpips run benchmarks/lr_kill.py --kill-rank R[,R...] --kill-after K [--kill-seed S]
        [--kill-max-delay SECONDS] <sparse_lr options, --checkpoint-dir DIR included>

Rank R (of the launch; each of them, when several are named) waits until it has seen K committed checkpoints appear in
--checkpoint-dir, sleeps a random time in [0, --kill-max-delay) s (seeded by --kill-seed)
and kills itself with SIGKILL, as the OOM killer or a failing node would, printing the
wall-clock time of the kill (benchmarks/recovery.py reads it). A relaunch (MPIPS_RANKS_LOST
set by ``mpips launch --relaunch`` or slurm/train.sbatch) kills nobody: it resumes and
finishes. With --audit each worker also counts its acknowledged steps in a table and logs
``AUDIT <worker> <steps acknowledged> <count the servers hold>``, for tests to check that
none was lost or doubled.
With --kill-at SECONDS the kill comes that long after training starts (``ps.run``) instead
(a launch with --replicas 1 carries on without the server). Used by benchmarks/recovery.py,
tests/mpi/test_fault.py and tests/slurm.
"""
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from mpips.jobs import lr_training, sparse_lr


def add_arguments(parser) -> None:
    sparse_lr.add_arguments(parser)
    kill = parser.add_argument_group("fault injection")
    kill.add_argument("--kill-rank", type=_ranks, required=True, metavar="R[,R...]",
                      help="rank(s) that kill themselves (at the same moment)")
    kill.add_argument("--kill-after", type=int, default=1, metavar="K",
                      help="after seeing K checkpoints committed (default 1)")
    kill.add_argument("--kill-at", type=float, default=None, metavar="SECONDS",
                      help="instead: this many seconds after training starts (no checkpoints "
                           "needed; for launches with --replicas 1)")
    kill.add_argument("--kill-seed", type=int, default=0, help="seed of the random delay")
    kill.add_argument("--kill-max-delay", type=float, default=0.05, metavar="SECONDS",
                      help="random delay after the K-th checkpoint (default 0.05)")
    kill.add_argument("--audit", action="store_true",
                      help="count acknowledged steps in a table 'audit' and print them")


def _ranks(text: str) -> list[int]:
    try:
        ranks = [int(r) for r in text.split(",")]
    except ValueError:
        raise ValueError(f"--kill-rank takes ranks like 3 or 2,3, got {text!r}") from None
    if any(r < 0 for r in ranks):
        raise ValueError(f"--kill-rank {text}: ranks are >= 0")
    return ranks


def kill_later(rank: int, checkpoint_dir: Path | None, after: int, delay: float) -> None:
    """SIGKILL this process ``delay`` s after the ``after``-th checkpoint appeared (or, with
    no ``checkpoint_dir``, ``delay`` s from now)."""
    seen: set[str] = set()
    while checkpoint_dir is not None and len(seen) < after:
        seen.update(p.parent.name for p in checkpoint_dir.glob("step-*/MANIFEST.json"))
        time.sleep(0.005)
    time.sleep(delay)
    since = f"checkpoint {max(seen)}" if seen else "training started"
    print(f"[lr_kill] rank {rank} kills itself {delay:.3f} s after {since} at "
          f"{time.time():.6f}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def audit_steps(table) -> None:
    """After every step whose pushes were acknowledged, push +1 to ``table`` at this worker's
    key, wait, and print ``AUDIT <worker> <steps acknowledged>``: a log of acknowledged
    pushes to check the checkpoints against."""
    plain_step, done = lr_training.sgd_step, [0]

    def audited_step(kv, tables, batch, l2):
        loss = plain_step(kv, tables, batch, l2)
        key = np.array([kv.worker_rank], np.uint64)
        kv.wait(kv.push(table, key, np.ones((1, 1), np.float32)))
        done[0] += 1
        held = int(kv.wait(kv.pull(table, key))[0])  # what the servers hold now
        print(f"AUDIT {kv.worker_rank} {done[0]} {held}", flush=True)
        return loss
    lr_training.sgd_step = audited_step


def main(ps, args):
    if not args.checkpoint_dir and args.kill_at is None:
        raise SystemExit("lr_kill: needs --checkpoint-dir (it kills after checkpoints) or "
                         "--kill-at SECONDS")
    if args.audit:
        audit_steps(ps.dense_table("audit", ps.num_workers))
    if ps.rank in args.kill_rank and not os.environ.get("MPIPS_RANKS_LOST"):
        delay = random.Random(args.kill_seed).uniform(0, args.kill_max_delay)
        if args.kill_at is not None:
            delay += args.kill_at
        killer = threading.Thread(target=kill_later, daemon=True, args=(
            ps.rank, Path(args.checkpoint_dir) if args.kill_at is None else None,
            args.kill_after, delay))
        run = ps.run

        def run_and_kill(work):  # --kill-at counts from the start of training, not of
            killer.start()       # the set-up (a death there is a lost rank: exit 76)
            return run(work)
        ps.run = run_and_kill
    return sparse_lr.main(ps, args)
