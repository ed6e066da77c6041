"""Roles of the ranks of one SPMD launch: servers and workers (MPI layer)."""
from __future__ import annotations

import os
import sys

import numpy as np
from mpi4py import MPI

from ..core.partition import Layout


class Topology:
    """Split ``comm`` into servers (its last ``num_servers`` ranks) and workers.

    Collective over ``comm``. The layout is checked before any communication, so an
    impossible layout raises LayoutError on every rank alike and nothing hangs.
    ``data`` is a private duplicate of ``comm`` for mpips traffic (errors are returned as
    exceptions on it); ``group`` is the communicator of this rank's role;
    ``ranks_on_node`` counts the ranks of ``comm`` that share this rank's node and
    ``node_place`` is this rank's place among them, servers first; ``node_bound`` says
    whether something (the launcher, srun) gave the node's ranks different CPU sets.
    """

    def __init__(self, comm: MPI.Intracomm, num_servers: int):
        self.layout = Layout(comm.Get_size(), num_servers)
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.is_server = self.layout.is_server(self.rank)
        self.data = comm.Dup()
        self.data.Set_errhandler(MPI.ERRORS_RETURN)
        self.group = self.data.Split(1 if self.is_server else 0, self.rank)
        node = self.data.Split_type(MPI.COMM_TYPE_SHARED,
                                    key=self.rank + (0 if self.is_server else self.size))
        self.ranks_on_node = node.Get_size()
        self.node_place = node.Get_rank()
        self.node_bound = _cpu_sets_differ(node)
        node.Free()
        self.server_index = self.layout.server_index(self.rank)
        self.worker_index = self.layout.worker_index(self.rank)

    @property
    def num_servers(self) -> int:
        return self.layout.num_servers

    @property
    def num_workers(self) -> int:
        return self.layout.num_workers

    @property
    def label(self) -> str:
        """How this rank names itself in logs: ``rank 3/5 server 1``."""
        role = (f"server {self.server_index}" if self.is_server else f"worker {self.worker_index}")
        return f"rank {self.rank}/{self.size} {role}"

    def log(self, message: str) -> None:
        """Print one line to stderr, labelled with this rank and role."""
        print(f"[mpips {self.label}] {message}", file=sys.stderr, flush=True)

    def free(self) -> None:
        """Free the communicators; collective over the launch; safe to call twice."""
        for name in ("group", "data"):
            comm = getattr(self, name)
            if comm is not None and comm != MPI.COMM_NULL:
                comm.Free()
            setattr(self, name, None)


CPU_SET_WORDS = 16
"""uint64 words of a CPU set as the kernel's sched_getaffinity allows (CPU_SETSIZE 1024)."""


def _cpu_sets_differ(node: MPI.Intracomm) -> bool:
    """Whether the ranks of ``node`` have different CPU sets: one buffer Allreduce (no
    pickling) of each set and its complement with bitwise AND, so the sets are all alike
    exactly when every bit is set in one of the two results. Collective over ``node``."""
    bits = np.zeros(CPU_SET_WORDS * 64, np.uint8)
    bits[[c for c in os.sched_getaffinity(0) if c < bits.size]] = 1
    mask = np.packbits(bits).view(np.uint64)
    both = np.concatenate([mask, ~mask])
    agreed = np.empty_like(both)
    node.Allreduce(both, agreed, op=MPI.BAND)
    return not bool(np.all(agreed[:CPU_SET_WORDS] | agreed[CPU_SET_WORDS:] == ~np.uint64(0)))
