"""SPMD program for tests/mpi/test_kv.py: mpips.mpi.topology tells whether the ranks of a
node have the same CPU sets (one buffer Allreduce). Prints ``SETS <rank> <alike> <after>``:
the answer with the launch's sets, then after rank 1 bound itself to one CPU."""
import os

from mpi4py import MPI

from mpips.mpi.topology import _cpu_sets_differ

world = MPI.COMM_WORLD
alike = _cpu_sets_differ(world)
if world.Get_rank() == 1:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
print(f"SETS {world.Get_rank()} {alike} {_cpu_sets_differ(world)}", flush=True)
