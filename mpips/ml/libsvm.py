"""Read (and write) LIBSVM / SVMlight text files of binary classification data. Pure module.

One example per line: ``<label> <index>:<value> <index>:<value> ...`` with indices strictly
increasing within the line. Labels -1/+1 or 0/1 become 0.0/1.0. ``#`` starts a comment;
blank lines are skipped (w8a ends with one). Indices are 1-based unless the file uses index
0 (``zero_based="auto"``) or the caller says otherwise; they come out 0-based. A data set
that comes as a training and a test file is read as one (``read_libsvm_pair``).

Parsing is vectorised: Python only splits lines and tokens, NumPy converts and checks all
numbers at once (w8a, 50k rows and 580k entries, reads in well under a second). Any malformed
line raises :class:`mpips.errors.LibsvmFormatError` whose message starts with
``path:line:`` and says what is wrong.
"""
from __future__ import annotations

import os
from itertools import chain

import numpy as np

from .dataset import SparseDataset
from ..errors import LibsvmFormatError

__all__ = ["SparseDataset", "read_libsvm", "read_libsvm_pair", "write_libsvm",
           "LibsvmFormatError"]

#: File label value -> stored label.
LABEL_MAP = {-1.0: 0.0, 0.0: 0.0, 1.0: 1.0}


class _Lines:
    """The non-blank lines of one file: line numbers, label texts and feature tokens."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.linenos: list[int] = []
        self.label_texts: list[str] = []
        self.tokens: list[list[str]] = []
        for lineno, line in enumerate(text.split("\n"), start=1):
            if "#" in line:
                line = line[:line.index("#")]
            parts = line.split()
            if parts:
                self.linenos.append(lineno)
                self.label_texts.append(parts[0])
                self.tokens.append(parts[1:])

    def tokens_around(self, position: int) -> str:
        """'current follows previous' for flat entry ``position`` (for error messages)."""
        flat = list(chain.from_iterable(self.tokens))
        return f"{flat[position]!r} follows {flat[position - 1]!r}"

    def fail(self, row: int, what: str) -> LibsvmFormatError:
        """The error for row ``row`` (0-based among non-blank lines)."""
        return LibsvmFormatError(f"{self.path}:{self.linenos[row]}: {what}")


def read_libsvm(path, n_features: int | None = None, zero_based="auto") -> SparseDataset:
    """Read a LIBSVM file into a :class:`SparseDataset` with 0-based feature ids.

    ``n_features``: the number of features (every id must be below it); default: largest
    id + 1. ``zero_based``: True if the file's indices start at 0, False if at 1, "auto" to
    decide from the file (zero-based exactly when some index is 0).
    Raises LibsvmFormatError (``path:line: what``) for the first malformed line.
    """
    if zero_based not in ("auto", True, False):
        raise ValueError(f"zero_based must be 'auto', True or False, got {zero_based!r}")
    parsed = _Parsed(path)
    return parsed.dataset(parsed.zero_based() if zero_based == "auto" else zero_based,
                          n_features)


def read_libsvm_pair(train_path, test_path) -> tuple[SparseDataset, SparseDataset]:
    """(train, test) of a LIBSVM data set that comes as two files (a9a and a9a.t), read alike:
    0-based exactly when some index of either file is 0, and ``n_features`` the largest id of
    either + 1 (a test row may name features the training rows never do). Raises
    LibsvmFormatError (``path:line: what``) for the first malformed line of either file."""
    train, test = _Parsed(train_path), _Parsed(test_path)
    zero_based = train.zero_based() or test.zero_based()
    n_features = max(train.largest(zero_based), test.largest(zero_based)) + 1
    return train.dataset(zero_based, n_features), test.dataset(zero_based, n_features)


class _Parsed:
    """One LIBSVM file parsed into labels and CSR arrays, feature ids not yet converted."""

    def __init__(self, path):
        path = os.fspath(path)
        self.lines = _Lines(path, _read_text(path))
        self.labels = _parse_labels(self.lines)
        counts = np.fromiter(map(len, self.lines.tokens), np.int64, len(self.lines.tokens))
        self.indptr = np.zeros(counts.size + 1, np.int64)
        np.cumsum(counts, out=self.indptr[1:])
        self.row_of_entry = np.repeat(np.arange(counts.size), counts)
        self.indices, self.values = _parse_entries(self.lines, self.row_of_entry)

    def zero_based(self) -> bool:
        """Whether the file's indices look 0-based (some index is 0)."""
        return bool(self.indices.size) and not self.indices.all()

    def largest(self, zero_based: bool) -> int:
        """The largest feature id (-1 without entries)."""
        if not self.indices.size:
            return -1
        return int(self.indices.max()) - (0 if zero_based else 1)

    def dataset(self, zero_based: bool, n_features: int | None) -> SparseDataset:
        lines, row_of_entry = self.lines, self.row_of_entry
        ids = _to_feature_ids(lines, self.indices, row_of_entry, zero_based)
        _check_increasing(lines, ids, row_of_entry)
        if n_features is None:
            n_features = int(ids.max()) + 1 if ids.size else 0
        _check_below(lines, ids, row_of_entry, n_features)
        return SparseDataset(self.indptr, ids.astype(np.uint64), self.values, self.labels,
                             n_features)


def _read_text(path: str) -> str:
    """The file as text; bytes that are not UTF-8 are a format error at their line."""
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + 1
        raise LibsvmFormatError(f"{path}:{lineno}: bytes that are not UTF-8 text "
                                f"({raw[exc.start:exc.start + 4]!r})") from None


def _parse_labels(lines: _Lines) -> np.ndarray:
    """Labels as float32 0/1; -1/+1 and 0/1 accepted (in any numeric spelling)."""
    labels = np.empty(len(lines.label_texts), np.float32)
    for row, text in enumerate(lines.label_texts):
        try:
            labels[row] = LABEL_MAP[float(text)]
        except (ValueError, KeyError):
            if ":" in text:
                raise lines.fail(row, f"missing label (line starts with {text!r})") from None
            raise lines.fail(row, f"label {text!r} is not -1, +1, 0 or 1") from None
    return labels


def _parse_entries(lines: _Lines, row_of_entry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``index:value`` tokens at once: (int64 file indices, float32 finite values)."""
    tokens = list(chain.from_iterable(lines.tokens))
    joined = " ".join(tokens)
    position = _first_non_pair(joined, len(tokens))
    if position is not None:
        raise lines.fail(int(row_of_entry[position]),
                         f"token {tokens[position]!r} is not index:value")
    numbers = joined.replace(":", " ").split()
    index_texts, value_texts = numbers[0::2], numbers[1::2]
    indices = _convert(lines, row_of_entry, index_texts, np.int64, "feature index")
    values = _convert(lines, row_of_entry, value_texts, np.float64, "value")
    bad = ~np.isfinite(values) | (np.abs(values) > np.finfo(np.float32).max)
    if bad.any():
        position = int(np.argmax(bad))
        raise lines.fail(int(row_of_entry[position]),
                         f"value {value_texts[position]!r} is not a finite float32")
    return indices, values.astype(np.float32)


def _first_non_pair(joined: str, n_tokens: int) -> int | None:
    """Position of the first of the space-joined tokens that is not ``text:text`` (exactly one
    colon, something on both sides), or None. Vectorised over the bytes (UTF-8 multi-byte
    characters never contain the bytes of ' ' or ':')."""
    text = np.frombuffer(joined.encode(), np.uint8)
    space, colon = text == ord(" "), text == ord(":")
    token_of_byte = np.cumsum(space)
    bad = np.bincount(token_of_byte[colon], minlength=n_tokens) != 1
    at = np.flatnonzero(colon)
    edge = np.concatenate([[True], space, [True]])  # edge[i + 1]: byte i is a separator
    bare = edge[at] | edge[at + 2]  # nothing before or after the colon
    bad[token_of_byte[at[bare]]] = True
    return int(np.argmax(bad)) if bad.any() else None


def _convert(lines: _Lines, row_of_entry, texts: list[str], dtype, what: str) -> np.ndarray:
    """``texts`` as a ``dtype`` array; the first text that does not convert is an error."""
    kind = int if dtype is np.int64 else float
    try:
        return np.fromiter(map(kind, texts), dtype, len(texts))
    except (ValueError, OverflowError):
        pass
    for position, text in enumerate(texts):  # error path only: find the culprit
        problem = _conversion_problem(text, dtype)
        if problem:
            raise lines.fail(int(row_of_entry[position]), f"{what} {text!r} {problem}")
    raise AssertionError("conversion failed but every text converts")  # pragma: no cover


def _conversion_problem(text: str, dtype) -> str | None:
    """Why ``text`` does not convert to ``dtype`` (as Python's int/float parse it), or None."""
    try:
        number = int(text) if dtype is np.int64 else float(text)
    except ValueError:
        return "is not an integer" if dtype is np.int64 else "is not a number"
    if dtype is np.int64 and not -2**63 <= number < 2**63:
        return "does not fit in int64"
    return None


def _to_feature_ids(lines: _Lines, indices, row_of_entry, zero_based) -> np.ndarray:
    """0-based feature ids from the file's indices; negative (or 0 when 1-based) is an error."""
    negative = indices < 0
    if negative.any():
        position = int(np.argmax(negative))
        raise lines.fail(int(row_of_entry[position]),
                         f"negative feature index {int(indices[position])}")
    has_zero = bool(indices.size) and not indices.all()
    if zero_based == "auto":
        zero_based = has_zero
    if zero_based:
        return indices
    if has_zero:
        position = int(np.argmin(indices != 0))
        raise lines.fail(int(row_of_entry[position]),
                         "feature index 0 in a file read as 1-based (zero_based=False)")
    return indices - 1


def _check_increasing(lines: _Lines, ids, row_of_entry) -> None:
    """Within each row, ids must be strictly increasing (sorted and unique)."""
    bad = (ids[1:] <= ids[:-1]) & (row_of_entry[1:] == row_of_entry[:-1])
    if bad.any():
        position = int(np.argmax(bad)) + 1
        raise lines.fail(int(row_of_entry[position]),
                         f"feature indices not increasing: {lines.tokens_around(position)}")


def _check_below(lines: _Lines, ids, row_of_entry, n_features: int) -> None:
    """Every id must be below ``n_features``."""
    bad = ids >= n_features
    if bad.any():
        position = int(np.argmax(bad))
        raise lines.fail(int(row_of_entry[position]),
                         f"feature id {int(ids[position])} (0-based) is not below "
                         f"n_features={n_features}")


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
