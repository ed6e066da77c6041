"""mpips: a parameter server for MPI clusters.

    import mpips
    with mpips.init(servers=2) as ps:          # collective over COMM_WORLD
        w = ps.sparse_table("w", rule="adagrad", lr=0.1)
        ps.run(lambda kv: kv.wait(kv.push(w, keys, grads)))

The MPI-dependent names (init, PS, KVWorker) load on first use, so the pure modules
(mpips.partition, mpips.message, mpips.kernels, ...) import on machines without MPI.
"""
from .errors import (EXIT_RANK_LOST, KeyOrderError, KeyRangeError, LayoutError,
                     LibsvmFormatError, MessageError, MpipsError, NonFiniteError, RankLost,
                     TableError, UsageError, ValueShapeError)
from .handlers import UpdateRule, register_rule
from .spec import TableSpec

__version__ = "0.1.0"

_MPI_NAMES = {"init": "ps", "PS": "ps", "KVWorker": "worker"}

__all__ = ["init", "PS", "KVWorker", "TableSpec", "UpdateRule", "register_rule",
           "MpipsError", "LayoutError", "KeyOrderError", "KeyRangeError", "ValueShapeError",
           "NonFiniteError", "MessageError", "LibsvmFormatError", "TableError", "UsageError",
           "RankLost",
           "EXIT_RANK_LOST", "__version__"]


def __getattr__(name):
    if name in _MPI_NAMES:
        import importlib

        value = getattr(importlib.import_module(f".{_MPI_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mpips' has no attribute {name!r}")
