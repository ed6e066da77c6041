"""Which slice a table gets on a rank: mpips.store.dense_slice for dense tables (collective:
an RMA window), mpips.store.sparse_slice for sparse ones (MPI layer).
"""
from __future__ import annotations

from mpi4py import MPI

from ..core.spec import TableSpec
from .dense_slice import DenseSlice
from .slice import Slice
from .sparse_slice import SparseSlice


def make_slice(spec: TableSpec, server_index: int, comm: MPI.Intracomm | None,
               rma: str = "get") -> Slice:
    """The slice of ``spec`` this rank holds (empty on workers). Collective over ``comm``
    for dense tables (window creation; ``rma`` "shared" or "get", see mpips.mpi.onesided);
    ``comm`` None makes a local slice in plain memory (a replica's copy of a segment)."""
    if spec.kind == "dense":
        return DenseSlice(spec, server_index, comm, rma)
    return SparseSlice(spec, server_index)
