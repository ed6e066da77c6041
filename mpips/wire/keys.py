"""The one key validator: what every key list must be before it is used, encoded or sent (a
worker's request, a codec's message, a push filter's input). Pure module: no MPI.

A key list is a contiguous 1-D uint64 array, strictly increasing (sorted, no duplicates),
every key below the table's size (the whole uint64 space when none is given). Integer arrays
and Python ints convert when they are non-negative; anything else raises the mpips.errors
class that names the problem and the first bad position.
"""
from __future__ import annotations

import numpy as np

from ..errors import KeyOrderError, KeyRangeError, ValueShapeError
from ..kernels.keys import count_bad_keys, first_bad_key


def as_keys(keys, size: int | None = None, *, table: str | None = None,
            check_order: bool = True) -> np.ndarray:
    """``keys`` as a contiguous uint64 1-D array, checked strictly increasing and below
    ``size``; errors name ``table`` when given. With ``check_order=False`` only the type and
    shape are checked (for pulls, whose keys the servers check anyway)."""
    prefix = f"table {table!r}: " if table is not None else ""
    arr = keys if isinstance(keys, np.ndarray) else _python_keys(keys, prefix)
    if arr.ndim != 1:
        raise ValueShapeError(f"{prefix}keys must be 1-D, got shape {arr.shape}")
    if arr.dtype != np.uint64:
        arr = _to_uint64(arr, prefix)
    arr = np.ascontiguousarray(arr)
    if check_order:
        check_keys(arr, size, table=table)
    return arr


def check_keys(arr: np.ndarray, size: int | None = None, lo: int = 0, hi: int | None = None,
               *, table: str | None = None) -> None:
    """Raise KeyOrderError / KeyRangeError unless ``arr[lo:hi]`` (uint64) is strictly
    increasing, greater than ``arr[lo-1]`` and below ``size``. Errors name the position in
    the whole of ``arr``."""
    prefix = f"table {table!r}: " if table is not None else ""
    hi = arr.size if hi is None else hi
    part = arr[lo:hi]
    top = 2**64 - 1 if size is None else size - 1
    prev = np.uint64(arr[lo - 1]) if lo > 0 else np.uint64(0)
    bounds = (np.uint64(0), np.uint64(top), prev, lo > 0)
    if count_bad_keys(part, *bounds):
        bad = lo + first_bad_key(part, *bounds)
        key = int(arr[bad])
        if key > top:
            raise KeyRangeError(f"{prefix}key {key} at position {bad} is out of range, the "
                                f"table has keys 0..{top}")
        what = "duplicated" if key == int(arr[bad - 1]) else "smaller than the key before it"
        raise KeyOrderError(f"{prefix}key {key} at position {bad} is {what}; keys must be "
                            f"sorted and unique (np.unique gives both)")


def _python_keys(keys, prefix: str) -> np.ndarray:
    """A list/sequence of keys as an array. Python ints go straight to uint64, because
    np.asarray turns [0, 2**63] into float64 (no signed type holds both) and would round."""
    arr = np.asarray(keys)
    if arr.ndim == 1 and arr.dtype.kind in "fO" and arr.size and all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in keys):
        try:
            return np.array(keys, dtype=np.uint64)
        except OverflowError:
            bad = next(i for i, k in enumerate(keys) if not 0 <= int(k) < 2**64)
            raise KeyRangeError(f"{prefix}key {int(keys[bad])} at position {bad} is not a "
                                f"uint64") from None
    return arr


def _to_uint64(arr: np.ndarray, prefix: str) -> np.ndarray:
    if arr.size == 0:
        return arr.astype(np.uint64)
    if arr.dtype.kind not in "iu":
        raise KeyRangeError(f"{prefix}keys must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.min() < 0:
        pos = int(np.argmax(arr < 0))
        raise KeyRangeError(f"{prefix}key {int(arr[pos])} at position {pos} is negative")
    return arr.astype(np.uint64)
