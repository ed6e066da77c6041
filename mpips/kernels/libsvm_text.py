"""LIBSVM text (the bytes of a file or of a byte range) scanned into CSR arrays by numba.

mpips.ml.libsvm_part drives these kernels; mpips.ml.libsvm_python (the pure-Python parser
they replace) is their reference and parses the lines they leave to Python. Rules: lines end
at ``\\n``; ``#`` starts a comment; tokens split on space, tab, ``\\r``, ``\\v``, ``\\f``; a
line without tokens is skipped; the first token is the label, the others ``index:value``.

``parse_lines`` fills preallocated arrays (sized by ``count_lines_and_colons``) and stops, with
status PYTHON, at the start of any line it does not fully understand: a malformed line (Python
words the error), a label other than -1/0/1, an index that is not ``[+-]digits`` (int64, not
negative), indices not increasing, a byte that is not printable ASCII outside a comment, or a
non-ASCII byte in a comment (UTF-8 is checked by Python). The caller parses that one line
in Python and calls again after it. A value that is printable ASCII but not a decimal the
exact fast path converts (long mantissa, big exponent, ``inf``, ``1_0``, ...) is stored as NaN
(no exact value is NaN) and counted in ``stats[SLOW]``: the caller converts those few with
Python's ``float`` afterwards. Floats are exact: a decimal mantissa below 2**53 times or
divided by 10**k, k <= 22 (both exact doubles: one correctly rounded operation, Clinger's fast
path), equals Python's ``float(text)``; the float32 stored is that double rounded to nearest.
"""
import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)
_inline = numba.njit(cache=True, nogil=True, inline="always")

#: parse_lines statuses: all lines done; stopped at a line for Python; out of output room
#: (the arrays were not sized by count_lines_and_colons) or bad arguments.
DONE, PYTHON, FULL = 0, 1, 2
#: stats slots: largest file index (-1 without entries), entries with index 0, NaN values.
LARGEST, ZEROS, SLOW = 0, 1, 2

_POW10 = np.array([float(10 ** k) for k in range(23)])  # exact doubles
_EXACT_MANTISSA = 2 ** 53
_INT64_MAX = 2 ** 63 - 1
_INT64_TENTH = _INT64_MAX // 10
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NEWLINE, _HASH, _COLON = 10, 35, 58
_FAST, _SLOW, _ODD = 0, 1, 2  # number kinds: converted; leave to float(); leave the line


def stats_array() -> np.ndarray:
    """A fresh ``stats`` array for parse_lines (no entries yet)."""
    stats = np.zeros(3, np.int64)
    stats[LARGEST] = -1
    return stats


@_jit
def count_lines_and_colons(buf):
    """(number of ``\\n`` bytes, number of ``:`` bytes) in ``buf`` (uint8 1-D). Rows are at
    most newlines + 1 and entries at most colons."""
    newlines = 0
    colons = 0
    for i in range(buf.size):
        c = buf[i]
        newlines += c == _NEWLINE
        colons += c == _COLON
    return newlines, colons


@_jit
def line_end(buf, pos):
    """Position of the first ``\\n`` at or after ``pos`` in ``buf`` (uint8 1-D), or
    ``buf.size``."""
    for i in range(max(pos, 0), buf.size):
        if buf[i] == _NEWLINE:
            return i
    return buf.size


@_inline
def _is_space(c):
    return c == 32 or (9 <= c <= 13 and c != _NEWLINE)


@_inline
def _ends_token(c):
    return c == 32 or (9 <= c <= 13) or c == _HASH


@_inline
def _rest_of_token(buf, pos, n):
    """(end of the token at ``pos``, kind): _SLOW if its bytes are printable ASCII without a
    colon (float() may take it), else _ODD."""
    kind = _SLOW
    while pos < n and not _ends_token(buf[pos]):
        c = buf[pos]
        if c == _COLON or c < 32 or c >= 127:
            kind = _ODD
        pos += 1
    return pos, kind


@_inline
def _number(buf, pos, n):
    """(value, end, kind) of the token at ``pos``: kind _FAST with its exact double value, or
    _SLOW / _ODD (value 0) as _rest_of_token says; an empty token is _ODD."""
    if pos >= n or _ends_token(buf[pos]):
        return 0.0, pos, _ODD  # empty
    negative = False
    if pos < n and (buf[pos] == 43 or buf[pos] == 45):
        negative = buf[pos] == 45
        pos += 1
    mantissa = 0
    digits = 0
    scale = 0
    exact = True
    while pos < n and 48 <= buf[pos] <= 57:
        if mantissa < _EXACT_MANTISSA:
            mantissa = mantissa * 10 + np.int64(buf[pos] - 48)
        else:
            exact = False
        digits += 1
        pos += 1
    if pos < n and buf[pos] == 46:
        pos += 1
        while pos < n and 48 <= buf[pos] <= 57:
            if mantissa < _EXACT_MANTISSA:
                mantissa = mantissa * 10 + np.int64(buf[pos] - 48)
                scale -= 1
            else:
                exact = False
            digits += 1
            pos += 1
    exponent = 0
    if digits > 0 and pos < n and (buf[pos] == 101 or buf[pos] == 69):
        pos += 1
        sign = 1
        if pos < n and (buf[pos] == 43 or buf[pos] == 45):
            sign = 1 - 2 * (buf[pos] == 45)
            pos += 1
        exponent_digits = 0
        while pos < n and 48 <= buf[pos] <= 57:
            if exponent < 100000:
                exponent = exponent * 10 + np.int64(buf[pos] - 48)
            exponent_digits += 1
            pos += 1
        if exponent_digits == 0:
            digits = 0  # "1e", "1e+": not a number (float() says so)
        exponent *= sign
    if digits == 0 or (pos < n and not _ends_token(buf[pos])):
        end, kind = _rest_of_token(buf, pos, n)
        return 0.0, end, kind
    power = scale + exponent
    if mantissa == 0:
        value = 0.0
    elif not exact or mantissa >= _EXACT_MANTISSA or power < -22 or power > 22:
        return 0.0, pos, _SLOW
    elif power >= 0:
        value = np.float64(mantissa) * _POW10[power]
    else:
        value = np.float64(mantissa) / _POW10[-power]
    return (-value if negative else value), pos, _FAST


@_inline
def _index(buf, pos, n):
    """(value, end) of ``[+-]digits`` at ``pos`` followed by ``:`` (end is at the colon);
    value -1 if the token is not that, overflows int64 or is negative."""
    negative = False
    if pos < n and (buf[pos] == 43 or buf[pos] == 45):
        negative = buf[pos] == 45
        pos += 1
    value = 0
    digits = 0
    while pos < n and 48 <= buf[pos] <= 57:
        digit = np.int64(buf[pos] - 48)
        if value >= _INT64_TENTH and (value > _INT64_TENTH or digit > _INT64_MAX % 10):
            return -1, pos  # value * 10 + digit would overflow
        value = value * 10 + digit
        digits += 1
        pos += 1
    if digits == 0 or pos >= n or buf[pos] != _COLON or (negative and value != 0):
        return -1, pos
    return value, pos


@_inline
def _skip_comment(buf, pos, n):
    """Position after the comment at ``pos`` (at its ``\\n`` or ``n``), or -1 if it holds a
    non-ASCII byte (UTF-8 is Python's to check)."""
    while pos < n and buf[pos] != _NEWLINE:
        if buf[pos] >= 128:
            return -1
        pos += 1
    return pos


@_jit
def parse_lines(buf, pos, row, entry, labels, line_starts, indptr, indices, values, stats):
    """Parse the lines of ``buf`` from ``pos`` (a line start) into row ``row`` and entry
    ``entry`` on; returns (status, pos, row, entry): DONE at the end of ``buf``, PYTHON at the
    start of a line left to Python, FULL if an output array has no room or an argument is
    negative (see module doc). Every index is checked: no input can make it write or read
    out of bounds.

    buf: uint8 1-D. Outputs, written at [row:] / [entry:]: labels float32 (0/1 for file
    labels -1/0 and 1), line_starts int64 (position in ``buf`` of each row's line), indptr
    int64 (size >= labels.size + 1; indptr[row] must hold ``entry``), indices int64 (file
    indices, >= 0, increasing within a row), values float32 (NaN: see module doc);
    stats int64[3] (LARGEST, ZEROS, SLOW), updated.
    """
    n = buf.size
    if pos < 0 or row < 0 or entry < 0 or stats.size < 3:
        return FULL, pos, row, entry
    largest = stats[LARGEST]
    zeros = stats[ZEROS]
    slow = stats[SLOW]
    status = DONE
    while pos < n:
        start = pos
        first = entry
        while pos < n and _is_space(buf[pos]):
            pos += 1
        if pos < n and buf[pos] == _HASH:
            pos = _skip_comment(buf, pos, n)
            if pos < 0:
                pos, status = start, PYTHON
                break
        if pos >= n or buf[pos] == _NEWLINE:
            pos += 1
            continue
        if row >= labels.size or row >= line_starts.size or row + 1 >= indptr.size:
            pos, status = start, FULL
            break
        label, pos, kind = _number(buf, pos, n)
        if kind != _FAST or not (label == 1.0 or label == 0.0 or label == -1.0):
            pos, status = start, PYTHON
            break
        last = np.int64(-1)
        line_slow = 0
        line_zeros = 0
        while True:
            while pos < n and _is_space(buf[pos]):
                pos += 1
            if pos >= n or buf[pos] == _NEWLINE or buf[pos] == _HASH:
                break
            index, pos = _index(buf, pos, n)
            if index <= last:  # -1 (not an index) or not increasing
                status = PYTHON
                break
            value, pos, kind = _number(buf, pos + 1, n)
            if kind == _ODD or (kind == _FAST and abs(value) > _FLOAT32_MAX):
                status = PYTHON
                break
            if entry >= indices.size or entry >= values.size:
                status = FULL
                break
            indices[entry] = index
            values[entry] = np.float32(value) if kind == _FAST else np.float32(np.nan)
            if kind == _SLOW:
                line_slow += 1
            entry += 1
            last = index
            if index == 0:
                line_zeros = 1
        if status != DONE:
            pos, entry = start, first
            break
        if pos < n and buf[pos] == _HASH:
            pos = _skip_comment(buf, pos, n)
            if pos < 0:
                pos, entry, status = start, first, PYTHON
                break
        pos += 1  # past the newline (or the end)
        largest = max(largest, last)
        slow += line_slow
        zeros += line_zeros
        labels[row] = 1.0 if label == 1.0 else 0.0
        line_starts[row] = start
        row += 1
        indptr[row] = entry
    stats[LARGEST] = largest
    stats[ZEROS] = zeros
    stats[SLOW] = slow
    return status, min(pos, n), row, entry
