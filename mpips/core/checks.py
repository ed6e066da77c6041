"""Validation of what users hand to a KVWorker, before anything is sent. Pure module."""
from __future__ import annotations

import numpy as np

from ..errors import KeyOrderError, KeyRangeError, NonFiniteError, ValueShapeError
from ..kernels.keys import count_bad_keys, first_bad_key
from ..kernels.rows import count_nonfinite, first_nonfinite
from .spec import TableSpec


def as_keys(keys, spec: TableSpec, *, check_order: bool = True) -> np.ndarray:
    """``keys`` as a contiguous uint64 1-D array, checked strictly increasing and inside the
    table's key range; raises KeyOrderError / KeyRangeError naming the first bad position.
    With ``check_order=False`` only the type and shape are checked (for pulls, whose keys
    the servers check anyway: see KVWorker.wait)."""
    arr = keys if isinstance(keys, np.ndarray) else _python_keys(keys, spec)
    if arr.ndim != 1:
        raise ValueShapeError(f"table {spec.name!r}: keys must be 1-D, got shape {arr.shape}")
    if arr.dtype != np.uint64:
        arr = _to_uint64(arr, spec)
    arr = np.ascontiguousarray(arr)
    if check_order:
        check_keys(arr, spec)
    return arr


def check_keys(arr: np.ndarray, spec: TableSpec, lo: int = 0, hi: int | None = None) -> None:
    """Raise KeyOrderError / KeyRangeError unless ``arr[lo:hi]`` (uint64) is strictly
    increasing, greater than ``arr[lo-1]`` and inside the table's key range. Errors name the
    position in the whole of ``arr``."""
    hi = arr.size if hi is None else hi
    part = arr[lo:hi]
    prev = np.uint64(arr[lo - 1]) if lo > 0 else np.uint64(0)
    bounds = (np.uint64(0), np.uint64(spec.size - 1), prev, lo > 0)
    if count_bad_keys(part, *bounds):
        bad = lo + first_bad_key(part, *bounds)
        key = int(arr[bad])
        if key >= spec.size:
            raise KeyRangeError(f"table {spec.name!r}: key {key} at position {bad} is out of "
                                f"range, the table has keys 0..{spec.size - 1}")
        what = "duplicated" if key == int(arr[bad - 1]) else "smaller than the key before it"
        raise KeyOrderError(f"table {spec.name!r}: key {key} at position {bad} is {what}; "
                            f"keys must be sorted and unique (np.unique gives both)")


def check_finite(vals: np.ndarray, spec: TableSpec, lo: int = 0, hi: int | None = None) -> None:
    """Raise NonFiniteError if rows ``lo:hi`` of float32 (n, width) ``vals`` hold NaN or inf."""
    flat = vals[lo:hi].reshape(-1)
    if count_nonfinite(flat):
        bad = first_nonfinite(flat)
        raise NonFiniteError(f"table {spec.name!r}: value {flat[bad]} for key position "
                             f"{lo + bad // spec.width}; nothing was applied")


def check_push(keys: np.ndarray, vals: np.ndarray, spec: TableSpec, chunk: int,
               between=None) -> None:
    """``check_keys`` and ``check_finite`` on a converted push, ``chunk`` rows at a time,
    calling ``between()`` after each chunk (the worker keeps MPI progressing there)."""
    for lo in range(0, keys.size, chunk):
        hi = min(lo + chunk, keys.size)
        check_keys(keys, spec, lo, hi)
        check_finite(vals, spec, lo, hi)
        if between is not None:
            between()


def _python_keys(keys, spec: TableSpec) -> np.ndarray:
    """A list/sequence of keys as an array. Python ints go straight to uint64, because
    np.asarray turns [0, 2**63] into float64 (no signed type holds both) and would round."""
    arr = np.asarray(keys)
    if arr.ndim == 1 and arr.dtype.kind in "fO" and arr.size and all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in keys):
        try:
            return np.array(keys, dtype=np.uint64)
        except OverflowError:
            bad = next(i for i, k in enumerate(keys) if not 0 <= int(k) < 2**64)
            raise KeyRangeError(f"table {spec.name!r}: key {int(keys[bad])} at position {bad} "
                                f"is not a uint64") from None
    return arr


def _to_uint64(arr: np.ndarray, spec: TableSpec) -> np.ndarray:
    if arr.size == 0:
        return arr.astype(np.uint64)
    if arr.dtype.kind not in "iu":
        raise KeyRangeError(f"table {spec.name!r}: keys must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.min() < 0:
        pos = int(np.argmax(arr < 0))
        raise KeyRangeError(f"table {spec.name!r}: key {int(arr[pos])} at position {pos} is "
                            f"negative")
    return arr.astype(np.uint64)


def as_values(vals, num_keys: int, spec: TableSpec, *, finite: bool = True) -> np.ndarray:
    """``vals`` as a contiguous float32 (num_keys, width) array, checked to hold only finite
    values unless ``finite=False`` (the caller then checks with ``check_finite``)."""
    arr = np.asarray(vals)
    expected = (num_keys, spec.width)
    if arr.shape == (num_keys,) and spec.width == 1:
        arr = arr.reshape(num_keys, 1)
    if arr.shape != expected:
        raise ValueShapeError(f"table {spec.name!r}: values have shape {arr.shape}, expected "
                              f"{expected} for {num_keys} key(s) of width {spec.width}")
    if arr.dtype.kind not in "fiu":
        raise ValueShapeError(f"table {spec.name!r}: values must be numbers, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if finite:
        check_finite(arr, spec)
    return arr


def as_output(out, num_keys: int, spec: TableSpec) -> np.ndarray:
    """A float32 (num_keys, width) C-contiguous array to receive pulled values."""
    shape = (num_keys, spec.width)
    if out is None:
        return np.empty(shape, np.float32)
    if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.flags.c_contiguous
            and out.size == num_keys * spec.width):
        raise ValueShapeError(f"table {spec.name!r}: out must be a C-contiguous float32 array "
                              f"of {num_keys * spec.width} values")
    return out.reshape(shape)
