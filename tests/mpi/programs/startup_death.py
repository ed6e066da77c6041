"""A job for ``mpips run`` (tests/mpi/test_startup.py) whose rank $STARTUP_DEATH_RANK (default
1) SIGKILLs itself at a chosen moment of its start-up, $STARTUP_DEATH_AT:

* ``import`` -- while ``mpips run`` loads this module, before MPI_Init;
* ``mpi_init`` -- inside MPI_Init: a helper process SIGKILLs the rank $STARTUP_DEATH_DELAY
  seconds (default 0) after the rank mapped libmpi (MPI_Init holds the interpreter, so the rank
  cannot kill itself there);
* ``init`` -- inside ``mpips.init``, right after the communicators are split.

A relaunch (MPIPS_RANKS_LOST set) kills nobody: every worker pushes once and prints DONE.
"""
import os
import signal
import subprocess
import sys

import numpy as np

AT = os.environ.get("STARTUP_DEATH_AT", "")
VICTIM = int(os.environ.get("STARTUP_DEATH_RANK", "1"))
RELAUNCHED = bool(os.environ.get("MPIPS_RANKS_LOST"))


def _world_rank() -> int:
    """This rank's number before MPI_Init, from the launcher's environment."""
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return -1


def _die(when: str) -> None:
    print(f"DYING {when}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if AT == "import" and not RELAUNCHED and _world_rank() == VICTIM:
    _die("import")

KILL_IN_MPI_INIT = """
import os, signal, sys, time
pid, delay = int(sys.argv[1]), float(sys.argv[2])
for _ in range(60000):
    try:
        with open(f"/proc/{pid}/maps") as maps:
            if "libmpi." in maps.read():
                break
    except OSError:
        sys.exit(0)
    time.sleep(0.001)
time.sleep(delay)
print("DYING mpi_init", flush=True)
os.kill(pid, signal.SIGKILL)
"""

if AT == "mpi_init" and not RELAUNCHED and _world_rank() == VICTIM:
    subprocess.Popen([sys.executable, "-c", KILL_IN_MPI_INIT, str(os.getpid()),
                      os.environ.get("STARTUP_DEATH_DELAY", "0")])

if AT == "init" and not RELAUNCHED:
    import mpips.session.ps

    class DyingTopology(mpips.session.ps.Topology):
        def __init__(self, comm, num_servers):
            super().__init__(comm, num_servers)
            if comm.Get_rank() == VICTIM:
                _die("init")

    mpips.session.ps.Topology = DyingTopology


def main(ps, args):
    table = ps.dense_table("t", 8)
    ps.run(lambda kv: kv.wait(kv.push(table, np.arange(8), np.ones(8))))
    if ps.rank == 0:
        print(f"DONE on {ps.size} ranks", flush=True)
