"""The pure-Python LIBSVM parser: the reference that mpips.kernels.libsvm_text is tested
against, the parser of the few lines that kernel leaves to Python (odd spellings), and the
author of every error message (a malformed line is parsed here alone to word its error).
Pure module.

Python splits lines and tokens, NumPy converts and checks all numbers at once. Rules and
messages are mpips.ml.libsvm's: a malformed line raises :class:`LibsvmFormatError` whose
message starts with ``path:line:`` and says what is wrong.
"""
from __future__ import annotations

import os
from itertools import chain

import numpy as np

from .dataset import SparseDataset
from ..errors import LibsvmFormatError

#: File label value -> stored label.
LABEL_MAP = {-1.0: 0.0, 0.0: 0.0, 1.0: 1.0}


def read_libsvm_python(path, n_features: int | None = None,
                       zero_based="auto") -> SparseDataset:
    """mpips.ml.libsvm.read_libsvm done in Python alone (slow; needs ~50 bytes of memory per
    file byte): the reference for tests."""
    if zero_based not in ("auto", True, False):
        raise ValueError(f"zero_based must be 'auto', True or False, got {zero_based!r}")
    path = os.fspath(path)
    with open(path, "rb") as handle:
        parsed = ParsedText(path, decode(path, handle.read()))
    return parsed.dataset(parsed.zero_based() if zero_based == "auto" else zero_based,
                          n_features)


def parse_line(path: str, line: bytes, lineno: int, after: bytes = b"") -> "ParsedText":
    """One line (no ``\\n``) of file ``path``, line number ``lineno``, parsed (0 rows if it is
    blank). ``after``: the bytes that follow it in the file (a few are enough), quoted when
    the line is not UTF-8. Raises LibsvmFormatError like the whole file would."""
    return ParsedText(path, decode(path, line, lineno, after), lineno)


def decode(path: str, raw: bytes, first_lineno: int = 1, after: bytes = b"") -> str:
    """``raw`` (file ``path`` from line ``first_lineno`` on) as text; bytes that are not UTF-8
    are a format error at their line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + first_lineno
        quoted = (raw + after)[exc.start:exc.start + 4]
        raise LibsvmFormatError(f"{path}:{lineno}: bytes that are not UTF-8 text "
                                f"({quoted!r})") from None


class _Lines:
    """The non-blank lines of a text: line numbers, label texts and feature tokens."""

    def __init__(self, path: str, text: str, first_lineno: int = 1):
        self.path = path
        self.linenos: list[int] = []
        self.label_texts: list[str] = []
        self.tokens: list[list[str]] = []
        for lineno, line in enumerate(text.split("\n"), start=first_lineno):
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


class ParsedText:
    """LIBSVM text parsed into labels and CSR arrays; ``indices`` are the file's (int64),
    not yet feature ids. Raises LibsvmFormatError for a malformed line."""

    def __init__(self, path: str, text: str, first_lineno: int = 1):
        self.lines = _Lines(path, text, first_lineno)
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

    def check_rows(self) -> None:
        """The checks of each row alone: no negative index, indices increasing."""
        _check_increasing(self.lines, _to_feature_ids(self.lines, self.indices,
                                                      self.row_of_entry, True),
                          self.row_of_entry)

    def dataset(self, zero_based: bool, n_features: int | None) -> SparseDataset:
        lines, row_of_entry = self.lines, self.row_of_entry
        ids = _to_feature_ids(lines, self.indices, row_of_entry, zero_based)
        _check_increasing(lines, ids, row_of_entry)
        if n_features is None:
            n_features = int(ids.max()) + 1 if ids.size else 0
        _check_below(lines, ids, row_of_entry, n_features)
        return SparseDataset(self.indptr, ids.astype(np.uint64), self.values, self.labels,
                             n_features)


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
