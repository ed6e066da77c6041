"""The layout of mpips data files (training data as CSR rows in HDF5) and the checks every
row of one passes, shared by their reader (mpips.ml.csr_file) and writer (mpips.ml.csr_write).
Pure module (NumPy, h5py for the string type).

Layout, format version 1. Root attributes: ``mpips_data = "csr"``, ``version = 1``, ``kind``
("libsvm", "ratings" or "corpus"), ``n_rows``, ``n_entries``, ``n_features`` (libsvm only)
and ``description``. One-dimensional datasets, chunked (at most CHUNK_ELEMENTS elements per
chunk) with fletcher32 checksums, each with a ``description`` attribute:

* ``indptr`` int64 (n_rows + 1): row r holds entries ``indptr[r]:indptr[r + 1]``;
* ``indices`` uint64 (n_entries) and, but for corpus, ``values`` float32 (n_entries);
* libsvm, one row per example: indices are 0-based feature ids (strictly increasing in a
  row, below n_features), ``labels`` float32 0/1 per row;
* ratings, one row per user, rows sorted by user id: ``row_ids`` uint64 user id per row,
  indices are item ids, values the ratings, ``positions`` uint64 the place of each rating
  among the text file's ratings, so that a reader hands out a row range's ratings in the
  file's order (all rows: exactly the RatingSet that mpips.ml.ratings.read_ratings reads);
* corpus, one row per line of the text (blank lines are empty rows, so row ranges are
  read_sentences' line blocks): indices are word keys (mpips.ml.corpus.word_key), no values;
  ``word_keys`` uint64 (sorted) and ``words`` (variable-length UTF-8) name the distinct
  words. A line longer than MAX_SENTENCE_WORDS is cut into sentences when read, as the text
  reader does. ``words`` alone has no checksum: HDF5 filters cannot apply to variable-length
  strings (a damaged word misnames a vector; it cannot make a kernel index out of bounds).

Rows are checked (indptr, id bounds and order, labels, finite values) by the reader before it
returns them and by the writer before it writes them: the arrays go to numba kernels that do
not check indices.
"""
from __future__ import annotations

import h5py
import numpy as np

FORMAT = "csr"
VERSION = 1
KINDS = ("libsvm", "ratings", "corpus")
CHUNK_ELEMENTS = 1 << 17
"""Most elements in one HDF5 chunk (1 MiB of uint64); small files get smaller chunks."""
BLOCK_ROWS = 1 << 16
"""Rows verified (and written, mpips.ml.csr_write) at a time."""

ENTRIES, ROWS, PTR, WORDS = "n_entries", "n_rows", "n_rows + 1", "distinct words"
STRING = h5py.string_dtype("utf-8")
INDPTR = ("indptr", np.int64, PTR, "int64, n_rows + 1: row r holds entries "
          "indptr[r]:indptr[r+1] of indices (and values)")
SCHEMA = {
    "libsvm": [INDPTR,
               ("indices", np.uint64, ENTRIES, "uint64 0-based feature id of each entry, "
                "strictly increasing within a row, below the n_features attribute"),
               ("values", np.float32, ENTRIES, "float32 feature value of each entry"),
               ("labels", np.float32, ROWS, "float32 label of each row (example): 0 or 1")],
    "ratings": [INDPTR,
                ("indices", np.uint64, ENTRIES, "uint64 item id of each rating"),
                ("values", np.float32, ENTRIES, "float32 rating"),
                ("row_ids", np.uint64, ROWS, "uint64 user id of each row (one row per "
                 "user, rows sorted by user id)"),
                ("positions", np.uint64, ENTRIES, "uint64 position of each rating among the "
                 "text file's ratings (0-based): readers return ratings in file order")],
    "corpus": [INDPTR,
               ("indices", np.uint64, ENTRIES, "uint64 word key (mpips.ml.corpus.word_key) "
                "of each token; one row per line of the text"),
               ("word_keys", np.uint64, WORDS, "uint64 word key of each distinct word, "
                "sorted"),
               ("words", STRING, WORDS, "UTF-8 text of each distinct word, in word_keys "
                "order (no checksum: variable-length)")],
}
"""Per kind: (dataset, dtype, length, description) of every dataset it must have."""
ROW_TEXT = {"libsvm": "one row per example", "ratings": "one row per user, sorted by user id",
            "corpus": "one row per line of the text"}


def row_bounds(n_rows: int, index: int, count: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of block ``index`` of ``count`` contiguous near-equal blocks: the
    bounds ``np.linspace(0, n_rows, count + 1)`` truncated, as mpips.ml.corpus.read_sentences
    cuts a text file's lines (so a .h5 part is the text part)."""
    if not 0 <= index < count:
        raise ValueError(f"part {index} is not in [0, {count})")
    bounds = np.linspace(0, n_rows, count + 1).astype(np.int64)
    return int(bounds[index]), int(bounds[index + 1])


def check_libsvm_rows(indptr, indices, values, labels, n_features: int, fail, lo: int) -> None:
    """``fail('dataset, row N: what')`` for the first entry a SparseDataset of a data file
    may not hold (rows numbered from ``lo``)."""
    row_of = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    over = indices >= np.uint64(n_features) if n_features < 2**64 else np.zeros(0, bool)
    if over.any():
        entry = int(np.argmax(over))
        fail(f"dataset 'indices', row {lo + int(row_of[entry])}: feature id "
             f"{int(indices[entry])} is not below n_features = {n_features}")
    same_row = row_of[1:] == row_of[:-1]
    bad = same_row & (indices[1:] <= indices[:-1])
    if bad.any():
        entry = int(np.argmax(bad)) + 1
        fail(f"dataset 'indices', row {lo + int(row_of[entry])}: feature ids not strictly "
             f"increasing ({int(indices[entry - 1])} then {int(indices[entry])})")
    check_finite(values, indptr, lo, "values", fail)
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        row = int(np.argmax(bad))
        fail(f"dataset 'labels', row {lo + row}: label {labels[row]} is not 0 or 1")


def check_finite(values, indptr, lo: int, name: str, fail) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        entry = int(np.argmax(bad))
        row = lo + int(np.searchsorted(indptr, entry, side="right")) - 1
        fail(f"dataset {name!r}, row {row}: value {values[entry]} is not finite")
