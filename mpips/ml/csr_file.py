"""mpips data files: training data as CSR rows in HDF5, read by row ranges. Pure module
(h5py and NumPy, no MPI).

A text file (LIBSVM, ratings, word2vec corpus) must be parsed whole by every rank; a data file
made once by ``mpips data convert`` lets a rank read just its rows (HDF5 hyperslabs).

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

mpips.ml.csr_write writes them (streaming) and converts text files. ``open_data`` validates
the attributes and shapes before use and ``DataFile.read_rows`` validates the rows it read
(indptr, id bounds and order, labels, finite values) before returning them: the arrays go to
numba kernels that do not check indices. Every problem is a DataFileError ``path: problem``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from . import corpus
from .dataset import SparseDataset
from .ratings import RatingSet
from ..errors import DataFileError

FORMAT = "csr"
VERSION = 1
KINDS = ("libsvm", "ratings", "corpus")
CHUNK_ELEMENTS = 1 << 17
"""Most elements in one HDF5 chunk (1 MiB of uint64); small files get smaller chunks."""
BLOCK_ROWS = 1 << 16
"""Rows verified (and written, mpips.ml.csr_write) at a time."""

ENTRIES, _ROWS, _PTR, _WORDS = "n_entries", "n_rows", "n_rows + 1", "distinct words"
STRING = h5py.string_dtype("utf-8")
INDPTR = ("indptr", np.int64, _PTR, "int64, n_rows + 1: row r holds entries "
          "indptr[r]:indptr[r+1] of indices (and values)")
SCHEMA = {
    "libsvm": [INDPTR,
               ("indices", np.uint64, ENTRIES, "uint64 0-based feature id of each entry, "
                "strictly increasing within a row, below the n_features attribute"),
               ("values", np.float32, ENTRIES, "float32 feature value of each entry"),
               ("labels", np.float32, _ROWS, "float32 label of each row (example): 0 or 1")],
    "ratings": [INDPTR,
                ("indices", np.uint64, ENTRIES, "uint64 item id of each rating"),
                ("values", np.float32, ENTRIES, "float32 rating"),
                ("row_ids", np.uint64, _ROWS, "uint64 user id of each row (one row per "
                 "user, rows sorted by user id)"),
                ("positions", np.uint64, ENTRIES, "uint64 position of each rating among the "
                 "text file's ratings (0-based): readers return ratings in file order")],
    "corpus": [INDPTR,
               ("indices", np.uint64, ENTRIES, "uint64 word key (mpips.ml.corpus.word_key) "
                "of each token; one row per line of the text"),
               ("word_keys", np.uint64, _WORDS, "uint64 word key of each distinct word, "
                "sorted"),
               ("words", STRING, _WORDS, "UTF-8 text of each distinct word, in word_keys "
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


# ============================================================================ reading

@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of a data file as stored (for ``mpips data info``)."""

    name: str
    shape: tuple
    dtype: str
    chunks: tuple | None
    fletcher32: bool
    description: str


def open_data(path, kind: str | None = None) -> "DataFile":
    """Open and validate data file ``path`` (attributes, datasets, shapes, dtypes). A
    DataFileError ``path: problem`` when it is missing, not HDF5, not an mpips data file,
    of a newer format, truncated or inconsistent, or (given ``kind``) of another kind."""
    data = DataFile(path)
    if kind is not None and data.kind != kind:
        data.close()
        raise DataFileError(data.path, f"holds {data.kind} rows, not {kind} (convert the text "
                                       f"with 'mpips data convert --kind {kind}')")
    return data


def is_data_file(path) -> bool:
    """Whether ``path`` names an HDF5 file (a data file to open with open_data, not text)."""
    try:
        return h5py.is_hdf5(os.fspath(path))
    except OSError:
        return False


class DataFile:
    """An open, validated mpips data file. A context manager; ``close()`` is safe twice."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = None
        self._word_keys = None
        if not os.path.isfile(self.path):
            raise DataFileError(self.path, "a directory, not a data file"
                                if os.path.isdir(self.path) else "no such file")
        if not is_data_file(self.path):
            raise DataFileError(self.path, "not an HDF5 file (convert text with "
                                           "'mpips data convert')")
        try:  # read-only and renamed into place whole: no lock needed (and NFS has none)
            self._file = h5py.File(self.path, "r", locking=False, rdcc_nbytes=4 << 20)
        except OSError as exc:
            raise self._error(f"HDF5 cannot open it (truncated or damaged: "
                              f"{_first_line(exc)})") from None
        try:
            self._check_attributes()
            self._check_datasets()
        except DataFileError:
            self.close()
            raise
        except (OSError, TypeError, ValueError, KeyError) as exc:  # HDF5 metadata it cannot read
            self.close()
            raise self._error(f"unreadable metadata ({_first_line(exc)})") from None

    def __enter__(self) -> "DataFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"DataFile({self.path!r}, kind={self.kind!r}, n_rows={self.n_rows})"

    def _error(self, problem: str) -> DataFileError:
        return DataFileError(self.path, problem)

    # ------------------------------------------------------------------ validation on open
    def _check_attributes(self) -> None:
        attrs = self._file.attrs
        if _text(attrs.get("mpips_data")) != FORMAT:
            raise self._error("an HDF5 file but not an mpips data file (no mpips_data='csr' "
                              "attribute)")
        version = _integer(attrs.get("version"))
        if version is None or version < 1:
            raise self._error(f"bad format version {attrs.get('version')!r}")
        if version > VERSION:
            raise self._error(f"written by a newer mpips (data format version {version}; this "
                              f"mpips reads version {VERSION})")
        self.version = version
        self.kind = _text(attrs.get("kind"))
        if self.kind not in KINDS:
            raise self._error(f"kind {attrs.get('kind')!r} is not one of {', '.join(KINDS)}")
        self.description = _text(attrs.get("description")) or ""
        counts = {name: _integer(attrs.get(name)) for name in ("n_rows", "n_entries")}
        if self.kind == "libsvm":
            counts["n_features"] = _integer(attrs.get("n_features"))
        for name, value in counts.items():
            if value is None or value < 0:
                raise self._error(f"attribute {name} is missing or not a non-negative integer "
                                  f"({attrs.get(name)!r})")
        self.n_rows, self.n_entries = counts["n_rows"], counts["n_entries"]
        self.n_features = counts.get("n_features")

    def _check_datasets(self) -> None:
        lengths = {_ROWS: self.n_rows, _PTR: self.n_rows + 1, ENTRIES: self.n_entries}
        for name, dtype, length, _ in SCHEMA[self.kind]:
            dset = self._file.get(name)
            if not isinstance(dset, h5py.Dataset):
                raise self._error(f"dataset {name!r} is missing ({self.kind} data files have "
                                  f"{', '.join(n for n, *_ in SCHEMA[self.kind])})")
            wanted = STRING if dtype is STRING else np.dtype(dtype)
            ok = h5py.check_string_dtype(dset.dtype) is not None if dtype is STRING \
                else dset.dtype == wanted
            if not ok or dset.ndim != 1:
                raise self._error(f"dataset {name!r} is {dset.dtype} {dset.shape}, expected "
                                  f"1-D {wanted}")
            expected = lengths.get(length, dset.shape[0])
            if dset.shape[0] != expected:
                raise self._error(f"dataset {name!r} has {dset.shape[0]} elements, expected "
                                  f"{length} = {expected}")
        if self.kind == "corpus" and self._file["words"].shape != self._file["word_keys"].shape:
            raise self._error(f"datasets 'words' {self._file['words'].shape} and 'word_keys' "
                              f"{self._file['word_keys'].shape} differ in length")
        ends = self._read("indptr", 0, 1), self._read("indptr", self.n_rows, self.n_rows + 1)
        if ends[0][0] != 0 or ends[1][0] != self.n_entries:
            raise self._error(f"dataset 'indptr' runs from {ends[0][0]} to {ends[1][0]}, "
                              f"expected 0 to n_entries = {self.n_entries}")

    def _read(self, name: str, lo: int, hi: int) -> np.ndarray:
        """Elements ``lo:hi`` of dataset ``name`` (one hyperslab); a checksum failure or a
        truncated file is a DataFileError."""
        try:
            return self._file[name][lo:hi]
        except OSError as exc:
            raise self._error(f"dataset {name!r} [{lo}:{hi}]: unreadable: checksum mismatch "
                              f"(the file changed after it was written) or a truncated file "
                              f"({_first_line(exc)})") from None

    # ------------------------------------------------------------------ public reading
    def datasets(self) -> list[DatasetInfo]:
        """Every dataset of the file's kind, as stored."""
        out = []
        for name, *_ in SCHEMA[self.kind]:
            dset = self._file[name]
            out.append(DatasetInfo(name, dset.shape, str(dset.dtype), dset.chunks,
                                   bool(dset.fletcher32),
                                   _text(dset.attrs.get("description")) or ""))
        return out

    def read_rows(self, lo: int, hi: int, *, words: bool = True):
        """Rows ``lo:hi`` as the kind's in-memory type, read by hyperslab and validated:
        libsvm: SparseDataset; ratings: RatingSet (those users' ratings in file order);
        corpus: (mpips.ml.corpus.Sentences, {key: word} of the words in those rows; {}
        with ``words=False``, which reads no word texts)."""
        lo, hi = int(lo), int(hi)
        if not 0 <= lo <= hi <= self.n_rows:
            raise ValueError(f"{self.path}: rows {lo}:{hi} are not within 0:{self.n_rows}")
        indptr = self._read("indptr", lo, hi + 1)
        self._check_indptr(indptr, lo)
        a, b = int(indptr[0]), int(indptr[-1])
        return _READERS[self.kind](self, indptr - a, a, b, lo, hi, words)

    def read_part(self, index: int, count: int, *, words: bool = True):
        """``read_rows`` of block ``index`` of ``count`` (``row_bounds``)."""
        return self.read_rows(*row_bounds(self.n_rows, index, count), words=words)

    def read_all(self):
        """Every row (``read_rows(0, n_rows)``)."""
        return self.read_rows(0, self.n_rows)

    def words(self, keys=None) -> dict[int, str]:
        """Corpus files: {key: word} of ``keys`` (default: every distinct word). A
        DataFileError for a key the file does not name."""
        if self.kind != "corpus":
            raise ValueError(f"{self.path}: a {self.kind} data file has no words")
        known = self._known_keys()
        if keys is None:
            at = np.arange(known.size)
        else:
            keys = np.unique(np.asarray(keys, np.uint64))
            at = np.searchsorted(known, keys)
            bad = at >= known.size
            bad[~bad] = known[at[~bad]] != keys[~bad]
            if bad.any():
                raise self._error(f"dataset 'indices': word key {int(keys[np.argmax(bad)])} is "
                                  f"not in 'word_keys'")
        if at.size == 0:
            return {}
        try:
            if at.size * 8 >= known.size:  # many: one read beats a point selection
                texts = self._file["words"].asstr()[int(at[0]):int(at[-1]) + 1]
                texts = texts[at - at[0]]
            else:
                texts = self._file["words"].asstr()[at]
        except (OSError, UnicodeDecodeError) as exc:
            raise self._error(f"dataset 'words': unreadable ({_first_line(exc)})") from None
        return {int(k): str(w) for k, w in zip(known[at], texts)}

    def verify(self) -> int:
        """Read and validate every row, BLOCK_ROWS at a time (every chunk checksum), and the
        words; returns the number of bytes of data read. A DataFileError for the first
        problem."""
        for lo in range(0, self.n_rows, BLOCK_ROWS):
            self.read_rows(lo, min(lo + BLOCK_ROWS, self.n_rows))
        if self.kind == "corpus":
            self.words()
        return sum(int(np.prod(d.shape)) * self._file[d.name].dtype.itemsize
                   for d in self.datasets())

    # ------------------------------------------------------------------ row validation
    def _check_indptr(self, indptr: np.ndarray, lo: int) -> None:
        outside = (indptr < 0) | (indptr > self.n_entries)
        if outside.any():
            row = lo + int(np.argmax(outside))
            raise self._error(f"dataset 'indptr', row {row}: {int(indptr[row - lo])} is "
                              f"outside [0, n_entries = {self.n_entries}]")
        falling = np.diff(indptr) < 0
        if falling.any():
            row = lo + int(np.argmax(falling))
            raise self._error(f"dataset 'indptr', row {row}: decreases ({int(indptr[row - lo])}"
                              f" then {int(indptr[row - lo + 1])})")

    def _fail(self, problem: str):
        """Raise the DataFileError of ``problem`` (the _check_* helpers' ``fail``)."""
        raise self._error(problem)

    def _known_keys(self) -> np.ndarray:
        if self._word_keys is None:
            keys = self._read("word_keys", 0, self._file["word_keys"].shape[0])
            if keys.size > 1 and (keys[1:] <= keys[:-1]).any():
                raise self._error("dataset 'word_keys': not strictly increasing")
            self._word_keys = keys
        return self._word_keys


# Per kind: rows lo:hi (entries a:b, ``indptr`` from 0) in memory; ``words``: corpus only.

def _read_libsvm_rows(data: DataFile, indptr, a: int, b: int, lo: int, hi: int, words: bool):
    indices, values = data._read("indices", a, b), data._read("values", a, b)
    labels = data._read("labels", lo, hi)
    check_libsvm_rows(indptr, indices, values, labels, data.n_features, data._fail, lo)
    return SparseDataset(indptr, indices, values, labels, data.n_features)


def _read_ratings_rows(data: DataFile, indptr, a: int, b: int, lo: int, hi: int, words: bool):
    items, ratings = data._read("indices", a, b), data._read("values", a, b)
    users = np.repeat(data._read("row_ids", lo, hi), np.diff(indptr))
    positions = data._read("positions", a, b)
    _check_finite(ratings, indptr, lo, "values", data._fail)
    order = np.argsort(positions, kind="stable")
    in_order = positions[order]
    bad = in_order >= data.n_entries
    bad[1:] |= in_order[1:] == in_order[:-1]
    if bad.any():
        entry = int(order[np.argmax(bad)])
        row = lo + int(np.searchsorted(indptr, entry, side="right")) - 1
        raise data._error(f"dataset 'positions', row {row}: position {int(positions[entry])} "
                          f"is repeated or not below n_entries = {data.n_entries}")
    return RatingSet(users[order], items[order], ratings[order])


def _read_corpus_rows(data: DataFile, indptr, a: int, b: int, lo: int, hi: int, words: bool):
    keys = data._read("indices", a, b)
    names = data.words(keys) if words else {}
    lengths = np.diff(indptr)
    limit = corpus.MAX_SENTENCE_WORDS
    pieces = (lengths + limit - 1) // limit  # sentences per line; none for a blank line
    row_of = np.repeat(np.arange(lengths.size), pieces)
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)
    starts = indptr[:-1][row_of] + (np.arange(row_of.size) - first) * limit
    starts = np.append(starts, keys.size).astype(np.int64)
    return corpus.Sentences(keys, starts), names


_READERS = {"libsvm": _read_libsvm_rows, "ratings": _read_ratings_rows,
            "corpus": _read_corpus_rows}


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
    _check_finite(values, indptr, lo, "values", fail)
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        row = int(np.argmax(bad))
        fail(f"dataset 'labels', row {lo + row}: label {labels[row]} is not 0 or 1")


def _check_finite(values, indptr, lo: int, name: str, fail) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        entry = int(np.argmax(bad))
        row = lo + int(np.searchsorted(indptr, entry, side="right")) - 1
        fail(f"dataset {name!r}, row {row}: value {values[entry]} is not finite")


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def _integer(value) -> int | None:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
