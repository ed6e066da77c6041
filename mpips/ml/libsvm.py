"""Read (and write) LIBSVM / SVMlight text files of binary classification data. Pure module.

One example per line: ``<label> <index>:<value> <index>:<value> ...`` with indices strictly
increasing within the line. Labels -1/+1 or 0/1 become 0.0/1.0. ``#`` starts a comment;
blank lines are skipped (w8a ends with one). Indices are 1-based unless the file uses index
0 (``zero_based="auto"``) or the caller says otherwise; they come out 0-based. A data set
that comes as a training and a test file is read as one (``read_libsvm_pair``); an MPI rank
reads just its byte range of a file (``read_libsvm_part``, mpips.ml.libsvm_part).

Parsing is a numba kernel over the file's bytes (mpips.kernels.libsvm_text: 150-350 MB/s on
one core, memory about the file plus the arrays); the few lines it leaves to Python and every
error go through mpips.ml.libsvm_python. Values are exactly ``float32(float(text))``; those
the kernel cannot convert exactly (mantissas of 16+ digits, exponents beyond 22) Python does
(a file of 17-digit ``repr`` floats reads at ~40 MB/s). A malformed line raises
:class:`mpips.errors.LibsvmFormatError` whose message starts with ``path:line:`` and says
what is wrong (the first malformed line of the file).
"""
from __future__ import annotations

import os

import numpy as np

from .dataset import SparseDataset
from .libsvm_part import LibsvmPart, read_libsvm_part
from ..errors import LibsvmFormatError

__all__ = ["SparseDataset", "read_libsvm", "read_libsvm_pair", "write_libsvm",
           "read_libsvm_part", "LibsvmPart", "LibsvmFormatError"]


def read_libsvm(path, n_features: int | None = None, zero_based="auto") -> SparseDataset:
    """Read a LIBSVM file into a :class:`SparseDataset` with 0-based feature ids.

    ``n_features``: the number of features (every id must be below it); default: largest
    id + 1. ``zero_based``: True if the file's indices start at 0, False if at 1, "auto" to
    decide from the file (zero-based exactly when some index is 0).
    Raises LibsvmFormatError (``path:line: what``) for the first malformed line.
    """
    if zero_based not in ("auto", True, False):
        raise ValueError(f"zero_based must be 'auto', True or False, got {zero_based!r}")
    part = read_libsvm_part(path)
    zero_based = part.has_zero_index if zero_based == "auto" else zero_based
    return part.dataset(zero_based, n_features, spend=True)


def read_libsvm_pair(train_path, test_path) -> tuple[SparseDataset, SparseDataset]:
    """(train, test) of a LIBSVM data set that comes as two files (a9a and a9a.t), read alike:
    0-based exactly when some index of either file is 0, and ``n_features`` the largest id of
    either + 1 (a test row may name features the training rows never do). Raises
    LibsvmFormatError (``path:line: what``) for the first malformed line of either file."""
    train, test = read_libsvm_part(train_path), read_libsvm_part(test_path)
    zero_based = train.has_zero_index or test.has_zero_index
    n_features = max(train.largest_id(zero_based), test.largest_id(zero_based)) + 1
    return (train.dataset(zero_based, n_features, spend=True),
            test.dataset(zero_based, n_features, spend=True))


def write_libsvm(dataset: SparseDataset, path, *, zero_based: bool = False) -> None:
    """Write ``dataset`` as a LIBSVM file (labels -1/+1, indices 1-based unless
    ``zero_based``). ``read_libsvm(path, n_features=dataset.n_features)`` reads it back."""
    offset = 0 if zero_based else 1
    ids = (dataset.indices + np.uint64(offset)).tolist()
    values = dataset.values.tolist()
    with open(os.fspath(path), "w", encoding="utf-8") as handle:
        for row in range(dataset.n_rows):
            lo, hi = dataset.indptr[row], dataset.indptr[row + 1]
            entries = " ".join(f"{ids[j]}:{values[j]:.9g}" for j in range(lo, hi))
            label = "+1" if dataset.labels[row] > 0.5 else "-1"
            handle.write(f"{label} {entries}\n" if entries else f"{label}\n")
