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

Files are written streaming (rows appended to resizable datasets) into ``OUT.tmp-<pid>``,
synced and renamed over OUT. ``open_data`` validates the attributes and shapes before use and
``DataFile.read_rows`` validates the rows it read (indptr, id bounds and order, labels,
finite values) before returning them: the arrays go to numba kernels that do not check
indices. Every problem is a DataFileError ``path: problem``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import h5py
import numpy as np

from . import corpus
from .dataset import SparseDataset
from .libsvm import read_libsvm
from .ratings import RatingSet, read_ratings
from ..errors import DataFileError

FORMAT = "csr"
VERSION = 1
KINDS = ("libsvm", "ratings", "corpus")
CHUNK_ELEMENTS = 1 << 17
"""Most elements in one HDF5 chunk (1 MiB of uint64); small files get smaller chunks."""
BLOCK_ROWS = 1 << 16
"""Rows parsed, written or verified at a time."""

_ENTRIES, _ROWS, _PTR, _WORDS = "n_entries", "n_rows", "n_rows + 1", "distinct words"
_STR = h5py.string_dtype("utf-8")
INDPTR = ("indptr", np.int64, _PTR, "int64, n_rows + 1: row r holds entries "
          "indptr[r]:indptr[r+1] of indices (and values)")
SCHEMA = {
    "libsvm": [INDPTR,
               ("indices", np.uint64, _ENTRIES, "uint64 0-based feature id of each entry, "
                "strictly increasing within a row, below the n_features attribute"),
               ("values", np.float32, _ENTRIES, "float32 feature value of each entry"),
               ("labels", np.float32, _ROWS, "float32 label of each row (example): 0 or 1")],
    "ratings": [INDPTR,
                ("indices", np.uint64, _ENTRIES, "uint64 item id of each rating"),
                ("values", np.float32, _ENTRIES, "float32 rating"),
                ("row_ids", np.uint64, _ROWS, "uint64 user id of each row (one row per "
                 "user, rows sorted by user id)"),
                ("positions", np.uint64, _ENTRIES, "uint64 position of each rating among the "
                 "text file's ratings (0-based): readers return ratings in file order")],
    "corpus": [INDPTR,
               ("indices", np.uint64, _ENTRIES, "uint64 word key (mpips.ml.corpus.word_key) "
                "of each token; one row per line of the text"),
               ("word_keys", np.uint64, _WORDS, "uint64 word key of each distinct word, "
                "sorted"),
               ("words", _STR, _WORDS, "UTF-8 text of each distinct word, in word_keys "
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


# ============================================================================ writing

class _Writer:
    """One data file being written: datasets grow as rows are appended; ``commit`` sets the
    attributes and renames the temporary file over the target, ``abort`` removes it."""

    def __init__(self, path, kind: str, entries_hint: int, rows_hint: int):
        self.path = os.fspath(path)
        self.tmp = f"{self.path}.tmp-{os.getpid()}"
        self.kind, self.n_rows, self.n_entries = kind, 0, 0
        self.file = h5py.File(self.tmp, "w")
        try:
            for name, dtype, length, description in SCHEMA[kind]:
                hint = entries_hint if length == _ENTRIES else rows_hint
                dset = self.file.create_dataset(name, (0,), dtype=dtype, maxshape=(None,),
                                                chunks=(_chunk_length(hint),),
                                                fletcher32=dtype is not _STR)
                dset.attrs["description"] = description
            self._append("indptr", np.zeros(1, np.int64))
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None:
            self.abort()

    def _append(self, name: str, data) -> None:
        dset = self.file[name]
        at = dset.shape[0]
        dset.resize((at + len(data),))
        if len(data):
            dset[at:] = data

    def add_rows(self, lengths: np.ndarray, **arrays) -> None:
        """Rows with ``lengths`` entries each; ``arrays`` per entry or per row, by dataset."""
        lengths = np.asarray(lengths, np.int64)
        self._append("indptr", self.n_entries + np.cumsum(lengths))
        for name, data in arrays.items():
            self._append(name, data)
        self.n_rows += int(lengths.size)
        self.n_entries += int(lengths.sum())

    def commit(self, description: str, **attrs) -> int:
        """Finish the file: attributes, close, fsync, rename. Returns its size in bytes."""
        root = self.file.attrs
        root["mpips_data"], root["version"], root["kind"] = FORMAT, VERSION, self.kind
        root["n_rows"], root["n_entries"] = np.int64(self.n_rows), np.int64(self.n_entries)
        root["description"] = description
        for name, value in attrs.items():
            root[name] = value
        self.file.close()
        with open(self.tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.tmp, self.path)
        return os.path.getsize(self.path)

    def abort(self) -> None:
        self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def _chunk_length(expected: int) -> int:
    """Elements per chunk of a dataset expected to hold about ``expected`` (a small file
    gets small chunks: HDF5 allocates whole chunks)."""
    return int(min(CHUNK_ELEMENTS, max(1024, expected)))


def _description(kind: str, source: str | None) -> str:
    origin = f" converted from {source}" if source else ""
    return (f"mpips data file (format {FORMAT} version {VERSION}, kind {kind}){origin}: CSR "
            f"rows, {ROW_TEXT[kind]}; see the datasets' descriptions")


def write_dataset_file(path, chunks: Iterable[SparseDataset], *, size_hint: int = 0,
                       source: str | None = None) -> int:
    """Write LIBSVM rows, given as consecutive SparseDataset chunks (one in memory at a time),
    as a libsvm data file; n_features is the largest of the chunks'. ``size_hint``: about
    how many entries (sizes the HDF5 chunks). Returns the file's size in bytes.
    ValueError (before anything is renamed) for rows a reader would refuse."""
    with _Writer(path, "libsvm", size_hint, size_hint // 16) as out:
        n_features = 0
        for chunk in chunks:
            _check_libsvm(chunk.indptr, chunk.indices, chunk.values, chunk.labels,
                          chunk.n_features, _raise_value_error, out.n_rows)
            out.add_rows(chunk.row_lengths(), indices=chunk.indices, values=chunk.values,
                         labels=chunk.labels)
            n_features = max(n_features, chunk.n_features)
        if n_features >= 2**64:
            raise ValueError(f"n_features {n_features} does not fit in uint64")
        return out.commit(_description("libsvm", source), n_features=np.uint64(n_features))


def write_ratings_file(path, ratings: RatingSet, *, source: str | None = None) -> int:
    """Write ``ratings`` as a ratings data file (rows: users sorted by id, each user's ratings
    in file order). Returns the file's size in bytes."""
    order = np.argsort(ratings.users, kind="stable")
    users = ratings.users[order]
    if not np.isfinite(ratings.ratings).all():
        raise ValueError("ratings must be finite")
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if users.size else \
        np.zeros(0, np.int64)
    ends = np.r_[starts[1:], users.size].astype(np.int64)
    with _Writer(path, "ratings", ratings.n, starts.size) as out:
        for lo in range(0, starts.size, BLOCK_ROWS):
            hi = min(lo + BLOCK_ROWS, starts.size)
            take = order[starts[lo]:ends[hi - 1]]
            out.add_rows(ends[lo:hi] - starts[lo:hi], indices=ratings.items[take],
                         values=ratings.ratings[take], row_ids=users[starts[lo:hi]],
                         positions=take.astype(np.uint64))
        return out.commit(_description("ratings", source))


def write_corpus_file(path, lines: Iterable[str], *, size_hint: int = 0,
                      source: str | None = None) -> int:
    """Write a word2vec corpus, one row per line (tokens split on whitespace, as
    mpips.ml.corpus.read_sentences does), as a corpus data file; ``size_hint``: about how
    many tokens. Returns its size in bytes.
    Two words with one key (a 64-bit hash collision) keep the first word's text."""
    names: dict[str, int] = {}
    with _Writer(path, "corpus", size_hint, size_hint // 64) as out:
        block: list[list[str]] = []
        for line in lines:
            block.append(line.split())
            if len(block) == BLOCK_ROWS:
                _add_lines(out, block, names)
                block = []
        _add_lines(out, block, names)
        by_key: dict[int, str] = {}
        for word, key in names.items():
            by_key.setdefault(key, word)
        keys = np.array(sorted(by_key), np.uint64)
        out._append("word_keys", keys)
        out._append("words", np.array([by_key[int(k)] for k in keys], dtype=object))
        return out.commit(_description("corpus", source))


def _add_lines(out: _Writer, block: list[list[str]], names: dict[str, int]) -> None:
    keys = []
    for tokens in block:
        for token in tokens:
            key = names.get(token)
            if key is None:
                key = names[token] = corpus.word_key(token)
            keys.append(key)
    out.add_rows(np.fromiter(map(len, block), np.int64, len(block)),
                 indices=np.array(keys, np.uint64))


# ---------------------------------------------------------------------- text sources

def _libsvm_chunks(path, rows: int = BLOCK_ROWS) -> Iterator[SparseDataset]:
    """A LIBSVM file's rows as consecutive SparseDataset chunks of ``rows`` rows.

    For now the text is read whole (mpips.ml.libsvm.read_libsvm) and cut; switch to
    ``read_libsvm_part`` (one part in memory at a time) once it exists. The 0/1-based
    decision and n_features need the whole file: parts must be read 1-based unless some part
    has an index 0 (a first pass), and write_dataset_file records n_features after the last
    chunk."""
    data = read_libsvm(path)
    for lo in range(0, data.n_rows, rows):
        yield data.slice_rows(lo, lo + rows)


def _corpus_lines(path) -> Iterator[str]:
    """The lines of a text file, one at a time, exactly as ``read_sentences`` splits the
    decoded text (str.splitlines; bytes that are not UTF-8 replaced)."""
    with open(path, "rb") as handle:
        for raw in handle:  # ends at b"\n"; splitlines() then splits the rest as the text reader
            yield from raw.decode("utf-8", errors="replace").splitlines()


def _convert_libsvm(src: str, out: str) -> int:
    return write_dataset_file(out, _libsvm_chunks(src), size_hint=os.path.getsize(src) // 8,
                              source=os.path.basename(src))


def _convert_ratings(src: str, out: str) -> int:
    return write_ratings_file(out, read_ratings(src), source=os.path.basename(src))


def _convert_corpus(src: str, out: str) -> int:
    return write_corpus_file(out, _corpus_lines(src), size_hint=os.path.getsize(src) // 6,
                             source=os.path.basename(src))


CONVERTERS = {"libsvm": _convert_libsvm, "ratings": _convert_ratings, "corpus": _convert_corpus}
"""Per kind: (text path, data file path) -> bytes written; the text reader's format errors
(``path:line: what``) pass through."""


@dataclass(frozen=True)
class Converted:
    """What ``convert`` wrote."""

    path: str
    kind: str
    n_rows: int
    n_entries: int
    n_bytes: int
    seconds: float


def convert(src, out, kind: str = "libsvm", *, overwrite: bool = False) -> Converted:
    """Convert text file ``src`` of ``kind`` to data file ``out`` (atomically). Raises the
    text reader's format error for a malformed line, FileNotFoundError for a missing
    ``src``, FileExistsError for an existing ``out`` unless ``overwrite``."""
    if kind not in CONVERTERS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    src, out = os.fspath(src), os.fspath(out)
    if not os.path.isfile(src):
        raise FileNotFoundError(f"{src}: " + ("a directory, not a file" if os.path.isdir(src)
                                              else "no such file"))
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out}: exists (pass overwrite to replace it)")
    began = time.perf_counter()
    n_bytes = CONVERTERS[kind](src, out)
    with open_data(out) as data:
        rows, entries = data.n_rows, data.n_entries
    return Converted(out, kind, rows, entries, n_bytes, time.perf_counter() - began)


# ============================================================================ reading

def _raise_value_error(problem: str):
    raise ValueError(problem)


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of a data file as stored (for ``mpips data info``)."""

    name: str
    shape: tuple
    dtype: str
    chunks: tuple | None
    fletcher32: bool
    description: str


def open_data(path) -> "DataFile":
    """Open and validate data file ``path`` (attributes, datasets, shapes, dtypes). A
    DataFileError ``path: problem`` when it is missing, not HDF5, not an mpips data file,
    of a newer format, truncated or inconsistent."""
    return DataFile(path)


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
            raise self._error(f"HDF5 cannot open it (truncated or damaged: {_first_line(exc)})") from None
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
        lengths = {_ROWS: self.n_rows, _PTR: self.n_rows + 1, _ENTRIES: self.n_entries}
        for name, dtype, length, _ in SCHEMA[self.kind]:
            dset = self._file.get(name)
            if not isinstance(dset, h5py.Dataset):
                raise self._error(f"dataset {name!r} is missing ({self.kind} data files have "
                                  f"{', '.join(n for n, *_ in SCHEMA[self.kind])})")
            wanted = _STR if dtype is _STR else np.dtype(dtype)
            ok = h5py.check_string_dtype(dset.dtype) is not None if dtype is _STR \
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

    def read_rows(self, lo: int, hi: int):
        """Rows ``lo:hi`` as the kind's in-memory type, read by hyperslab and validated:
        libsvm: SparseDataset; ratings: RatingSet (those users' ratings in file order);
        corpus: (mpips.ml.corpus.Sentences, {key: word} of the words in those rows)."""
        lo, hi = int(lo), int(hi)
        if not 0 <= lo <= hi <= self.n_rows:
            raise ValueError(f"{self.path}: rows {lo}:{hi} are not within 0:{self.n_rows}")
        indptr = self._read("indptr", lo, hi + 1)
        self._check_indptr(indptr, lo)
        a, b = int(indptr[0]), int(indptr[-1])
        return _READERS[self.kind](self, indptr - a, a, b, lo, hi)

    def read_part(self, index: int, count: int):
        """``read_rows`` of block ``index`` of ``count`` (``row_bounds``)."""
        return self.read_rows(*row_bounds(self.n_rows, index, count))

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


def _read_libsvm_rows(data: DataFile, indptr, a: int, b: int, lo: int, hi: int):
    indices, values = data._read("indices", a, b), data._read("values", a, b)
    labels = data._read("labels", lo, hi)
    _check_libsvm(indptr, indices, values, labels, data.n_features, data._fail, lo)
    return SparseDataset(indptr, indices, values, labels, data.n_features)


def _read_ratings_rows(data: DataFile, indptr, a: int, b: int, lo: int, hi: int):
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


def _read_corpus_rows(data: DataFile, indptr, a: int, b: int, lo: int, hi: int):
    keys = data._read("indices", a, b)
    names = data.words(keys)
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


def _check_libsvm(indptr, indices, values, labels, n_features: int, fail, lo: int) -> None:
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
