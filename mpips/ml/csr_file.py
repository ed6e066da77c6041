"""mpips data files: training data as CSR rows in HDF5, read by row ranges. Pure module
(h5py and NumPy, no MPI).

A text file (LIBSVM, ratings, word2vec corpus) must be parsed whole by every rank; a data file
made once by ``mpips data convert`` lets a rank read just its rows (HDF5 hyperslabs).

Their layout and row checks are mpips.ml.csr_format; mpips.ml.csr_write writes them
(streaming) and converts text files. ``open_data`` validates the attributes and shapes before
use and ``DataFile.read_rows`` validates the rows it read before returning them. Every problem
is a DataFileError ``path: problem``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from . import corpus
from .csr_format import (BLOCK_ROWS, ENTRIES, FORMAT, KINDS, PTR, ROWS, SCHEMA, STRING, VERSION,
                         check_finite, check_libsvm_rows, row_bounds)
from .dataset import SparseDataset
from .ratings import RatingSet
from ..errors import DataFileError

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
        lengths = {ROWS: self.n_rows, PTR: self.n_rows + 1, ENTRIES: self.n_entries}
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
    check_finite(ratings, indptr, lo, "values", data._fail)
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
