"""How the MPI benchmarks start: run on the ranks of an mpiexec/srun launch, or, started by
hand, launch themselves through mpips.launch.launcher; and the MPI library they name in their
results."""
from __future__ import annotations

import os
import sys

LAUNCHED = "MPIPS_BENCH_LAUNCHED"


def on_ranks() -> bool:
    """Whether this process is a rank of an MPI launch (mpiexec, srun, or a benchmark's own)."""
    return os.environ.get(LAUNCHED) == "1" or "OMPI_COMM_WORLD_SIZE" in os.environ \
        or "PMI_SIZE" in os.environ


def run_on_ranks(script: str, nprocs: int, bench, args) -> int:
    """``bench(args)`` on this rank when it is part of an MPI launch, else launch ``script``
    (with this process's arguments) on ``nprocs`` ranks; returns the exit code."""
    if on_ranks():
        bench(args)
        return 0
    from mpips.launch.launcher import launch

    os.environ[LAUNCHED] = "1"
    return launch(nprocs, [os.path.abspath(script), *sys.argv[1:]])


def mpi_library() -> str:
    """The MPI library's name and version, e.g. "Open MPI v5.0.11"."""
    from mpi4py import MPI

    return " ".join(MPI.Get_library_version().strip("\x00 \n").split(",")[0].split()[:3])
