"""mpips: a parameter server for MPI clusters.

    import mpips
    with mpips.init(servers=2) as ps:          # collective over COMM_WORLD
        w = ps.sparse_table("w", rule="adagrad", lr=0.1)
        ps.run(lambda kv: kv.wait(kv.push(w, keys, grads)))

Names other than the errors load on first use: the MPI-dependent ones (init, PS, KVWorker)
so that the pure modules (mpips.core.partition, mpips.wire.message, mpips.kernels, ...) import on
machines without MPI, and the numpy/numba ones (TableSpec, UpdateRule, register_rule) so that
``import mpips`` stays cheap: ``mpips run`` holds the stop signals before anything heavy loads
(mpips.launch.startup).
"""
__version__ = "0.1.0"  # before any import: mpips.ckpt writes it into checkpoints

from .errors import (EXIT_RANK_LOST, EXIT_STOPPED, KeyOrderError, KeyRangeError, LayoutError,
                     LibsvmFormatError, MessageError, MpipsError, NonFiniteError, RankLost,
                     TableError, UsageError, ValueShapeError)

_LAZY_NAMES = {"init": "session.ps", "PS": "session.ps", "KVWorker": "worker.kvworker",
               "TableSpec": "core.spec", "UpdateRule": "core.rules",
               "register_rule": "core.rules", "make_filter": "wire.filters",
               "register_filter": "wire.filters", "PushFilter": "wire.filters"}

__all__ = ["init", "PS", "KVWorker", "TableSpec", "UpdateRule", "register_rule", "make_filter",
           "register_filter", "PushFilter",
           "MpipsError", "LayoutError", "KeyOrderError", "KeyRangeError", "ValueShapeError",
           "NonFiniteError", "MessageError", "LibsvmFormatError", "TableError", "UsageError",
           "RankLost", "EXIT_RANK_LOST", "EXIT_STOPPED", "__version__"]


def __getattr__(name):
    if name in _LAZY_NAMES:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mpips' has no attribute {name!r}")
