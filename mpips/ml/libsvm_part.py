"""A LIBSVM file, or one byte-range part of it, parsed by the numba kernels of
mpips.kernels.libsvm_text. Pure module (NumPy and numba, no MPI).

Part ``index`` of ``count`` owns the lines that START in bytes
``[size*index//count, size*(index+1)//count)`` of the file: a line crossing a boundary belongs
to the part it starts in, so every line belongs to exactly one part and the parts' datasets,
concatenated in order, are the whole file's. A part reads its range plus the tail of its
last line, never the rest of the file. The parts of an MPI job agree on the index base (0-based
if any part ``has_zero_index``) and on ``n_features`` (the largest id of any part + 1) before
calling :meth:`LibsvmPart.dataset`.

Memory: the part's bytes plus the output arrays (about 12 bytes per entry and 20 per line).
Lines the kernel leaves to Python, and every error, go through mpips.ml.libsvm_python, which
words the message; error messages name the file's global line numbers (only an error counts
the newlines before a part's start).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .dataset import SparseDataset
from .libsvm_python import parse_line
from ..errors import LibsvmFormatError
from ..kernels import libsvm_text as kernel

_CHUNK = 1 << 20  # bytes read at a time when looking for a newline or counting lines
_SLOW_ROWS = 8192  # rows whose values Python converts at a time


@dataclass(eq=False)
class LibsvmPart:
    """The rows of one part: ``labels`` float32 0/1, ``indptr`` int64, ``indices`` int64 (the
    file's indices, not yet feature ids), ``values`` float32; ``offset`` is the file position
    of the part's first byte and ``line_starts`` (int64) each row's line start after it."""

    path: str
    offset: int
    labels: np.ndarray
    line_starts: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    largest_index: int  # the largest file index, -1 without entries
    has_zero_index: bool  # some file index is 0

    @property
    def n_rows(self) -> int:
        """Number of rows (non-blank lines) of the part."""
        return int(self.labels.size)

    def largest_id(self, zero_based: bool) -> int:
        """The largest 0-based feature id (-1 without entries): ``n_features`` is one more."""
        if self.largest_index < 0:
            return -1
        return self.largest_index - (0 if zero_based else 1)

    def first_line(self) -> int:
        """The file's line number (1-based) of the part's first byte. Reads the file before
        the part."""
        return _count_newlines(self.path, self.offset) + 1

    def line_of_row(self, row: int) -> int:
        """The file's line number of row ``row``. Reads the file up to that row."""
        return _count_newlines(self.path, self.offset + int(self.line_starts[row])) + 1

    def dataset(self, zero_based: bool, n_features: int | None = None, *,
                spend: bool = False) -> SparseDataset:
        """The rows as a SparseDataset with 0-based feature ids; ``n_features`` default: largest
        id + 1. Raises LibsvmFormatError (``path:line: what``) for the first index 0 of a file
        read as 1-based, else the first id not below ``n_features``. The dataset shares the
        part's arrays; ``spend=True`` lets it take the indices too (shifted in place, the part
        is unusable after) instead of copying them when 1-based."""
        if zero_based not in (True, False):
            raise ValueError(f"zero_based must be True or False, got {zero_based!r}")
        if not zero_based and self.has_zero_index:
            self._raise_at_entry(int(np.argmin(self.indices != 0)), zero_based, n_features)
        largest = self.largest_id(zero_based)
        if n_features is None:
            n_features = largest + 1
        elif largest >= n_features and self.largest_index >= 0:
            first = int(np.argmax(self.indices >= n_features + (0 if zero_based else 1)))
            self._raise_at_entry(first, zero_based, n_features)
        ids = self.indices
        if not zero_based:
            ids = np.subtract(ids, 1, out=ids if spend else None)
        return SparseDataset(self.indptr, ids.view(np.uint64), self.values, self.labels,
                             n_features)

    def _raise_at_entry(self, entry: int, zero_based: bool, n_features) -> None:
        row = int(np.searchsorted(self.indptr, entry, side="right")) - 1
        raise _line_error(self.path, self.offset + int(self.line_starts[row]), zero_based,
                          n_features)


def part_range(size: int, index: int, count: int) -> tuple[int, int]:
    """The bytes ``[lo, hi)`` in which part ``index`` of ``count`` has its lines start."""
    if not (isinstance(index, (int, np.integer)) and isinstance(count, (int, np.integer))
            and 0 <= index < count):
        raise ValueError(f"part index must be in [0, count), got index={index!r}, "
                         f"count={count!r}")
    return size * int(index) // int(count), size * (int(index) + 1) // int(count)


def read_libsvm_part(path, index: int = 0, count: int = 1) -> LibsvmPart:
    """Parse part ``index`` of ``count`` of LIBSVM file ``path`` (see the module doc); part 0
    of 1 is the whole file. Raises LibsvmFormatError (``path:line: what``, the file's line
    number) for the first malformed line of the part."""
    path = os.fspath(path)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        lo, hi = part_range(size, index, count)
        start = _line_start(handle, size, lo)
        end = max(start, _line_start(handle, size, hi))
        handle.seek(start)
        buf = np.fromfile(handle, np.uint8, end - start) if end > start else np.empty(0, np.uint8)
    if buf.size != end - start:
        raise OSError(f"{path}: read {buf.size} bytes of {end - start} (file changed?)")
    return _Parse(path, start, buf).part()


class _Parse:
    """The kernel's pass over one buffer, with Python taking the lines it leaves."""

    def __init__(self, path: str, offset: int, buf: np.ndarray):
        self.path, self.offset, self.buf = path, offset, buf
        newlines, colons = kernel.count_lines_and_colons(buf)
        lines = newlines + 1
        self.labels = np.empty(lines, np.float32)
        self.line_starts = np.empty(lines, np.int64)
        self.indptr = np.zeros(lines + 1, np.int64)
        self.indices = np.empty(colons, np.int64)
        self.values = np.empty(colons, np.float32)
        self.stats = kernel.stats_array()
        self.row = self.entry = 0

    def part(self) -> LibsvmPart:
        pos = 0
        while True:
            status, pos, self.row, self.entry = kernel.parse_lines(
                self.buf, pos, self.row, self.entry, self.labels, self.line_starts,
                self.indptr, self.indices, self.values, self.stats)
            if status == kernel.DONE:
                break
            if status != kernel.PYTHON:
                raise AssertionError(f"libsvm kernel status {status} (outputs too small)")
            pos = self._python_line(pos)
        if self.stats[kernel.SLOW]:
            self._convert_slow_values()
        return self._trimmed()

    def _python_line(self, pos: int) -> int:
        """Parse the line at ``pos`` in Python, store its row; returns the next line's start."""
        end = kernel.line_end(self.buf, pos)
        parsed = self._parsed(pos, end)
        if parsed.labels.size:
            k = parsed.indices.size
            row, entry = self.row, self.entry
            if row >= self.labels.size or entry + k > self.indices.size:
                raise AssertionError("libsvm outputs too small for a line parsed in Python")
            self.labels[row] = parsed.labels[0]
            self.line_starts[row] = pos
            self.indices[entry:entry + k] = parsed.indices
            self.values[entry:entry + k] = parsed.values
            self.row, self.entry = row + 1, entry + k
            self.indptr[self.row] = self.entry
            if k:
                self.stats[kernel.LARGEST] = max(self.stats[kernel.LARGEST],
                                                 int(parsed.indices[-1]))
                self.stats[kernel.ZEROS] += int(parsed.indices[0] == 0)
        return end + 1

    def _parsed(self, pos: int, end: int):
        """The line ``buf[pos:end]`` parsed in Python with its row checks. A malformed line
        raises its error, unless an earlier row (a value left to float()) is malformed."""
        try:
            parsed = parse_line(self.path, self.buf[pos:end].tobytes(), 0)
            parsed.check_rows()
            return parsed
        except LibsvmFormatError:
            if self.stats[kernel.SLOW]:
                self._convert_slow_values()  # raises for an earlier malformed line
            raise _line_error(self.path, self.offset + pos) from None

    def _convert_slow_values(self) -> None:
        """Replace the NaN values of the rows done so far (values the kernel left to Python's
        float) by their float32(float(text)); raises for the first malformed line. Those
        lines are printable ASCII with one colon per token (the kernel checked)."""
        values, indptr = self.values[:self.entry], self.indptr[:self.row + 1]
        slow = np.flatnonzero(np.isnan(values))
        rows = np.unique(np.searchsorted(indptr, slow, side="right") - 1)
        for block in range(0, rows.size, _SLOW_ROWS):  # bounded memory for Python's objects
            self._convert_rows(rows[block:block + _SLOW_ROWS])
        self.stats[kernel.SLOW] = 0

    def _convert_rows(self, rows: np.ndarray) -> None:
        texts = []
        for row in rows.tolist():
            start = int(self.line_starts[row])
            line = self.buf[start:kernel.line_end(self.buf, start)].tobytes()
            tokens = line.split(b"#", 1)[0].split()[1:]
            texts.extend(token.partition(b":")[2] for token in tokens)
        indptr = self.indptr
        lengths = indptr[rows + 1] - indptr[rows]
        at = np.repeat(indptr[rows] - np.cumsum(lengths) + lengths, lengths)
        at += np.arange(at.size)
        if len(texts) != at.size:
            raise AssertionError("libsvm kernel and Python disagree on the entries of a line")
        try:
            converted = np.fromiter(map(float, texts), np.float64, len(texts))
        except ValueError:
            converted = np.full(1, np.nan)
        if not (np.abs(converted) <= np.finfo(np.float32).max).all():  # NaN too
            self._raise_first_bad(rows)
        self.values[at] = converted

    def _raise_first_bad(self, rows) -> None:
        """Raise the error of the first of ``rows`` that the Python parser rejects."""
        for row in rows.tolist():
            start = int(self.line_starts[row])
            line = self.buf[start:kernel.line_end(self.buf, start)].tobytes()
            try:
                parse_line(self.path, line, 0)
            except LibsvmFormatError:
                raise _line_error(self.path, self.offset + start) from None
        raise AssertionError("a value float() rejects but the Python parser accepts")

    def _trimmed(self) -> LibsvmPart:
        rows, entries = self.row, self.entry

        def cut(array, n):  # a view, or a copy when most of the array is unused
            return array[:n].copy() if n < array.size // 2 else array[:n]

        return LibsvmPart(self.path, self.offset, cut(self.labels, rows),
                          cut(self.line_starts, rows), cut(self.indptr, rows + 1),
                          cut(self.indices, entries), cut(self.values, entries),
                          int(self.stats[kernel.LARGEST]), bool(self.stats[kernel.ZEROS]))


def _line_error(path: str, file_pos: int, zero_based: bool = True,
                n_features: int | None = None) -> LibsvmFormatError:
    """The error of the malformed line at ``file_pos`` (its start), worded by the Python parser
    with the file's line number; ``zero_based`` and ``n_features`` as the dataset reads it."""
    lineno = _count_newlines(path, file_pos) + 1
    with open(path, "rb") as handle:
        handle.seek(file_pos)
        line = b""
        while b"\n" not in line:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            line += chunk
        line, newline, after = line.partition(b"\n")
        after = (newline + after + handle.read(3))[:3]
    try:
        parse_line(path, line, lineno, after).dataset(zero_based, n_features)
    except LibsvmFormatError as error:
        return error
    raise AssertionError(f"{path}:{lineno}: the libsvm kernel rejects a line Python accepts")


def _line_start(handle, size: int, pos: int) -> int:
    """The first line start at or after ``pos`` (``size`` if none): reads from ``pos - 1`` to
    the next newline."""
    if pos <= 0:
        return 0
    if pos >= size:
        return size
    handle.seek(pos - 1)
    at = pos - 1
    while True:
        chunk = handle.read(_CHUNK)
        if not chunk:
            return size
        found = chunk.find(b"\n")
        if found >= 0:
            return at + found + 1
        at += len(chunk)


def _count_newlines(path: str, end: int) -> int:
    """Number of ``\\n`` bytes in the first ``end`` bytes of the file."""
    count = 0
    with open(path, "rb") as handle:
        while end > 0:
            chunk = handle.read(min(_CHUNK, end))
            if not chunk:
                break
            count += chunk.count(b"\n")
            end -= len(chunk)
    return count
