"""Validation of what users hand to a KVWorker, before anything is sent. Pure module."""
from __future__ import annotations

import numpy as np

from ..errors import NonFiniteError, ValueShapeError
from ..kernels.rows import count_nonfinite, first_nonfinite
from ..wire.keys import as_keys as keys_of
from ..wire.keys import check_keys as check_key_order
from .spec import TableSpec


def as_keys(keys, spec: TableSpec, *, check_order: bool = True) -> np.ndarray:
    """``keys`` as a contiguous uint64 1-D array for ``spec``'s table (mpips.wire.keys, the
    one key validator: strictly increasing, inside the table's key range); with
    ``check_order=False`` only the type and shape (for pulls: see KVWorker.wait)."""
    return keys_of(keys, spec.size, table=spec.name, check_order=check_order)


def check_keys(arr: np.ndarray, spec: TableSpec, lo: int = 0, hi: int | None = None) -> None:
    """mpips.wire.keys.check_keys for ``spec``'s table: ``arr[lo:hi]`` strictly increasing,
    after ``arr[lo-1]``, inside the key range; errors name positions in the whole of ``arr``."""
    check_key_order(arr, spec.size, lo, hi, table=spec.name)


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
