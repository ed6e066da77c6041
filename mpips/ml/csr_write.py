"""Writing mpips data files (the layout: mpips.ml.csr_format) and converting text files to
them. Pure module (h5py and NumPy, no MPI).

Rows are appended, a block at a time, to resizable chunked datasets of ``OUT.tmp-<pid>``,
which is synced and renamed over OUT when complete (a crash leaves OUT as it was). Each
writer checks the rows it is handed as a reader would, so it never writes a file that
``open_data`` refuses. ``convert`` reads a text file with the project's readers (their
``path:line: what`` errors pass through); LIBSVM comes in row chunks (``_libsvm_chunks``: one byte-range part of the text in memory at a time),
corpus lines one at a time; ratings are read whole, since grouping them by user needs them all.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import h5py
import numpy as np

from . import corpus
from .csr_file import open_data
from .csr_format import (BLOCK_ROWS, CHUNK_ELEMENTS, ENTRIES, FORMAT, KINDS, ROW_TEXT, SCHEMA,
                         VERSION, check_libsvm_rows)
from .dataset import SparseDataset
from .libsvm import read_libsvm
from .libsvm_part import read_libsvm_part
from .ratings import RatingSet, read_ratings


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
                hint = entries_hint if length == ENTRIES else rows_hint
                text = h5py.check_string_dtype(np.dtype(dtype)) is not None  # no filters
                dset = self.file.create_dataset(name, (0,), dtype=dtype, maxshape=(None,),
                                                chunks=(_chunk_length(hint),),
                                                fletcher32=not text)
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
            check_libsvm_rows(chunk.indptr, chunk.indices, chunk.values, chunk.labels,
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

PART_BYTES = 64 << 20
"""Bytes of LIBSVM text parsed at a time when converting (mpips.ml.libsvm_part)."""


def _libsvm_chunks(path, rows: int = BLOCK_ROWS) -> Iterator[SparseDataset]:
    """A LIBSVM file's rows as consecutive SparseDataset chunks of at most ``rows`` rows, one
    byte-range part (PART_BYTES) in memory at a time. Two passes: the first finds the index
    base (0-based when some index is 0) and n_features, which the whole file decides; the
    second yields the rows."""
    count = max(1, -(-os.path.getsize(path) // PART_BYTES))
    zero_based, largest = False, -1
    for index in range(count):
        part = read_libsvm_part(path, index, count)
        zero_based = zero_based or part.has_zero_index
        largest = max(largest, part.largest_index)
    n_features = max(largest + (1 if zero_based else 0), 0)
    for index in range(count):
        data = read_libsvm_part(path, index, count).dataset(zero_based, n_features, spend=True)
        for lo in range(0, data.n_rows, rows):
            yield data.slice_rows(lo, lo + rows)


def _shuffled_libsvm_chunks(path, seed: int, rows: int = BLOCK_ROWS) -> Iterator[SparseDataset]:
    """The rows of a LIBSVM file in a seeded random order (the whole file in memory)."""
    data = read_libsvm(path)
    data = data.take(np.random.default_rng(seed).permutation(data.n_rows))
    for lo in range(0, data.n_rows, rows):
        yield data.slice_rows(lo, lo + rows)


def _corpus_lines(path) -> Iterator[str]:
    """The lines of a text file, one at a time, exactly as ``read_sentences`` splits the
    decoded text (str.splitlines; bytes that are not UTF-8 replaced)."""
    with open(path, "rb") as handle:
        for raw in handle:  # ends at b"\n"; splitlines() then splits the rest as the text reader
            yield from raw.decode("utf-8", errors="replace").splitlines()


def _convert_libsvm(src: str, out: str, shuffle: int | None = None) -> int:
    chunks = _libsvm_chunks(src) if shuffle is None else _shuffled_libsvm_chunks(src, shuffle)
    return write_dataset_file(out, chunks, size_hint=os.path.getsize(src) // 8,
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


def convert(src, out, kind: str = "libsvm", *, overwrite: bool = False,
            shuffle: int | None = None) -> Converted:
    """Convert text file ``src`` of ``kind`` to data file ``out`` (atomically). ``shuffle``:
    a seed to write LIBSVM rows in a random order (for files sorted by label, like w8a, that
    jobs read in blocks of consecutive rows; reads the whole text into memory). Raises the
    text reader's format error for a malformed line, FileNotFoundError for a missing
    ``src``, FileExistsError for an existing ``out`` unless ``overwrite``."""
    if kind not in CONVERTERS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if shuffle is not None and kind != "libsvm":
        raise ValueError(f"shuffle is for libsvm files, not {kind}")
    src, out = os.fspath(src), os.fspath(out)
    if not os.path.isfile(src):
        raise FileNotFoundError(f"{src}: " + ("a directory, not a file" if os.path.isdir(src)
                                              else "no such file"))
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out}: exists (pass overwrite to replace it)")
    began = time.perf_counter()
    n_bytes = _convert_libsvm(src, out, shuffle) if kind == "libsvm" else \
        CONVERTERS[kind](src, out)
    with open_data(out) as data:
        rows, entries = data.n_rows, data.n_entries
    return Converted(out, kind, rows, entries, n_bytes, time.perf_counter() - began)


def _raise_value_error(problem: str):
    raise ValueError(problem)
