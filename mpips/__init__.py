"""mpips: a parameter server for MPI clusters.

    import mpips
    with mpips.init(servers=2) as ps:          # collective over COMM_WORLD
        w = ps.sparse_table("w", rule="adagrad", lr=0.1)
        ps.run(lambda kv: kv.wait(kv.push(w, keys, grads)))
"""
from .errors import (KeyOrderError, KeyRangeError, LayoutError, LibsvmFormatError,
                     MessageError, MpipsError, NonFiniteError, TableError, ValueShapeError)
from .handlers import UpdateRule, register_rule
from .ps import PS, init
from .spec import TableSpec
from .worker import KVWorker

__version__ = "0.1.0"

__all__ = ["init", "PS", "KVWorker", "TableSpec", "UpdateRule", "register_rule",
           "MpipsError", "LayoutError", "KeyOrderError", "KeyRangeError", "ValueShapeError",
           "NonFiniteError", "MessageError", "LibsvmFormatError", "TableError", "__version__"]
