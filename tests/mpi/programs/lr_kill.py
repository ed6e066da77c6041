"""sparse_lr with one rank SIGKILLed at a random moment of training.

    python tests/mpi/programs/lr_kill.py KILL_RANK AFTER SEED MAX_DELAY -- <sparse_lr options>

World rank KILL_RANK waits until it has seen AFTER committed checkpoints appear in
--checkpoint-dir, sleeps a random time in [0, MAX_DELAY) s (seeded by SEED) and kills
itself with SIGKILL, as the OOM killer or a failing node would. A relaunch (MPIPS_RANKS_LOST set by ``mpips launch
--relaunch``) kills nobody: it resumes and finishes.
"""
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

from mpi4py import MPI

import mpips.cli


def kill_later(checkpoint_dir: Path, after: int, delay: float) -> None:
    seen: set[str] = set()
    while len(seen) < after:
        seen.update(p.parent.name for p in checkpoint_dir.glob("step-*/MANIFEST.json"))
        time.sleep(0.005)
    time.sleep(delay)
    print(f"[lr_kill] rank {MPI.COMM_WORLD.Get_rank()} kills itself {delay:.3f} s after "
          f"checkpoint {max(seen)}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    kill_rank, after, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    max_delay = float(sys.argv[4])
    job_args = sys.argv[6:] if sys.argv[5] == "--" else sys.argv[5:]
    ckpt = Path(job_args[job_args.index("--checkpoint-dir") + 1])
    if MPI.COMM_WORLD.Get_rank() == kill_rank and not os.environ.get("MPIPS_RANKS_LOST"):
        delay = random.Random(seed).uniform(0, max_delay)
        threading.Thread(target=kill_later, args=(ckpt, after, delay), daemon=True).start()
    return mpips.cli.main(["run", "jobs/sparse_lr.py", *job_args])


if __name__ == "__main__":
    sys.exit(main())
