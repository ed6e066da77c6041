"""mpips.kernels.libsvm_text: exact floats (bit for bit Python's float then float32), the
lines it leaves to Python, and agreement with the pure-Python parser (the reference)."""
import numpy as np
import pytest

from mpips.kernels import libsvm_text as K
from mpips.ml.libsvm_python import ParsedText

F32_MAX = float(np.finfo(np.float32).max)


def run(text: bytes, rows: int | None = None, entries: int | None = None):
    """parse_lines over ``text`` from its start: (status, pos, labels, indptr, indices, values,
    line_starts, stats), the arrays cut to what was filled."""
    buf = np.frombuffer(text, np.uint8).copy()
    newlines, colons = K.count_lines_and_colons(buf)
    rows = newlines + 1 if rows is None else rows
    entries = colons if entries is None else entries
    labels, starts = np.empty(rows, np.float32), np.empty(rows, np.int64)
    indptr, stats = np.zeros(rows + 1, np.int64), K.stats_array()
    indices, values = np.empty(entries, np.int64), np.empty(entries, np.float32)
    status, pos, row, entry = K.parse_lines(buf, 0, 0, 0, labels, starts, indptr, indices,
                                            values, stats)
    return (status, pos, labels[:row], indptr[:row + 1], indices[:entry], values[:entry],
            starts[:row], stats)


def python_float32(text: str) -> np.float32:
    with np.errstate(over="ignore"):
        return np.float32(float(text))


def bits(x) -> int:
    return int(np.asarray(x, np.float32).view(np.uint32))


def spellings(seed: int, n: int) -> list[str]:
    """``n`` float texts of many shapes: repr, %g/%e/%f at several precisions, float32
    round-trips, random digit strings with random point and exponent."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n):
        x = float(rng.standard_normal() * 10.0 ** int(rng.integers(-40, 39)))
        kind = int(rng.integers(8))
        if kind == 0:
            texts.append(repr(x))
        elif kind == 1:
            texts.append(f"{x:.{int(rng.integers(1, 18))}g}")
        elif kind == 2:
            texts.append(f"{x:.{int(rng.integers(0, 12))}e}".replace("e", "eE"[kind % 2]))
        elif kind == 3:
            texts.append(f"{x:.{int(rng.integers(0, 25))}f}")
        elif kind == 4:
            texts.append(repr(float(np.float32(x))))
        else:  # digits, maybe a point, maybe an exponent, maybe a sign
            digits = "".join(map(str, rng.integers(0, 10, int(rng.integers(1, 22)))))
            point = int(rng.integers(0, len(digits) + 1))
            text = digits[:point] + "." + digits[point:] if rng.random() < 0.7 else digits
            if rng.random() < 0.5:
                text += "eE"[int(rng.integers(2))] + ("", "+", "-")[int(rng.integers(3))]
                text += str(int(rng.integers(0, 40)))
            texts.append(("", "+", "-")[int(rng.integers(3))] + text)
    return texts


HAND_PICKED = ["1", "1.", ".5", "-0", "-0.0", "+0", "0", "1e-45", "3.4028235e38",
               "3.4028234e38", "1.17549435e-38", "1.4e-45", "12345678901234567890",
               "1234567890123456789.0123", "0.12345678901234567890", "9007199254740993",
               "9007199254740992", "9007199254740991", "1E5", "+3", "-3", "2.5e+3", "2.5E-3",
               "00000000000000000000000001", "0.000000000000000000000001", "1e22", "1e23",
               "1e-22", "1e-23", "0e999", "-0e-999", "123456789e-30", "4.9e-324", "0.1",
               "0.2", "0.3", "16777217", "16777216.5", "3.4028235677973366e38", "1.e5"]


@pytest.mark.parametrize("seed", range(4))
def test_values_are_bit_for_bit_pythons_float32(seed):
    """Every value the kernel converts equals float32(float(text)) bit for bit; a text it
    leaves to Python is NaN, counted in stats[SLOW]; a finite value beyond float32 stops the
    line for Python."""
    texts = HAND_PICKED + spellings(seed, 4000)
    converted = 0
    for text in texts:
        status, _, _, _, _, values, _, stats = run(f"+1 1:{text}\n".encode())
        expected = python_float32(text)
        if status == K.PYTHON:
            assert abs(float(text)) > F32_MAX, text
            continue
        assert status == K.DONE and values.size == 1, text
        if np.isnan(values[0]):
            assert stats[K.SLOW] == 1, text
        else:
            assert bits(values[0]) == bits(expected), (text, values[0], expected)
            converted += 1
    assert converted > len(texts) // 2  # the fast path is the common one


@pytest.mark.parametrize("text", ["1", "1.", ".5", "-0", "1E5", "+3", "0.125730217",
                                  "-1.30400002", "9007199254740991", "1e22", "1e-22",
                                  "0e999", "0.0000000000000000000001"])
def test_common_spellings_take_the_exact_path(text):
    status, _, _, _, _, values, _, stats = run(f"-1 7:{text}\n".encode())
    assert status == K.DONE and stats[K.SLOW] == 0
    assert bits(values[0]) == bits(python_float32(text))


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1_0", "0x10", "1e", "1e+", ".",
                                  "+", "infinity", "1e23", "1e-23", "9007199254740993",
                                  "12345678901234567890", "1e-45", "1e39"])
def test_other_value_texts_are_left_to_python_as_nan(text):
    status, _, _, _, indices, values, _, stats = run(f"+1 2:{text} 3:1\n".encode())
    assert status == K.DONE and indices.tolist() == [2, 3]
    assert np.isnan(values[0]) and values[1] == 1 and stats[K.SLOW] == 1


def test_a_file_of_comments_blank_lines_crlf_and_no_last_newline():
    text = (b"# header: 1:2\n"
            b"+1 1:0.5 3:2   # trailing comment 9:9\r\n"
            b"\n \t\r\n"
            b"-1\n"
            b"1 2:1e-3\x0b4:7\x0c\n"
            b"0 0:-7\n"
            b"-1.0\t1:1\t4:1")
    status, pos, labels, indptr, indices, values, starts, stats = run(text)
    assert status == K.DONE and pos == len(text)
    assert labels.tolist() == [1, 0, 1, 0, 0]
    assert indptr.tolist() == [0, 2, 2, 4, 5, 7]
    assert indices.tolist() == [1, 3, 2, 4, 0, 1, 4]
    assert values.tolist() == [0.5, 2, np.float32(1e-3), 7, -7, 1, 1]
    lines = text.split(b"\n")
    assert [text[s:].split(b"\n")[0] for s in starts.tolist()] == [lines[i] for i in
                                                                    (1, 4, 5, 6, 7)]
    assert stats.tolist() == [4, 1, 0]  # largest index, rows with index 0, NaN values


@pytest.mark.parametrize("line", [
    b"2 1:1", b"abc 1:1", b"1:1 2:1", b"+1 1:1 5", b"+1 1:1 :5", b"+1 3:", b"+1 3:1:2",
    b"+1 1::2", b"+1 a:1", b"+1 1.5:1", b"+1 99999999999999999999:1", b"+1 9223372036854775808:1",
    b"+1 -3:1", b"+1 3:1 2:1", b"+1 3:1 3:1", b"+1 1e39x:1", b"+1 1_0:1",
    b"+1 \xc3\xa9:1", b"+1 1:1\xc2\xa02:1", b"+1 1:1\x1c2:1", b"+1 1:1 # caf\xc3\xa9",
    b"# caf\xc3\xa9", b"+1 1:\x00", b"\x00", b"+1.0000000000000000000001 1:1",
    b"2e0 1:1",
])
def test_lines_left_to_python_stop_at_their_start(line):
    text = b"+1 1:1\n" + line + b"\n-1 2:1\n"
    status, pos, labels, indptr, *_ = run(text)
    assert (status, pos, labels.size, indptr.tolist()) == (K.PYTHON, 7, 1, [0, 1])


def test_largest_int64_index_and_minus_zero():
    status, _, _, _, indices, _, _, stats = run(b"+1 -0:1 +5:1 9223372036854775807:2\n")
    assert status == K.DONE and indices.tolist() == [0, 5, 2 ** 63 - 1]
    assert stats[K.LARGEST] == 2 ** 63 - 1 and stats[K.ZEROS] == 1


def test_full_when_the_outputs_are_too_small():
    status, pos, labels, *_ = run(b"+1 1:1\n-1 1:1 2:1\n", entries=2)
    assert (status, pos, labels.size) == (K.FULL, 7, 1)
    status, pos, labels, *_ = run(b"+1 1:1\n-1 1:1 2:1\n", rows=1)
    assert (status, pos, labels.size) == (K.FULL, 7, 1)


def test_resumes_after_a_line_python_took():
    text = b"+1 1:1\n+1 1_0:1\n-1 2:5\n"
    buf = np.frombuffer(text, np.uint8).copy()
    labels, starts = np.empty(4, np.float32), np.empty(4, np.int64)
    indptr, indices, values = np.zeros(5, np.int64), np.empty(3, np.int64), np.empty(3, np.float32)
    stats = K.stats_array()
    status, pos, row, entry = K.parse_lines(buf, 0, 0, 0, labels, starts, indptr, indices,
                                            values, stats)
    assert (status, pos, row, entry) == (K.PYTHON, 7, 1, 1)
    end = K.line_end(buf, pos)
    assert text[pos:end] == b"+1 1_0:1"
    labels[1], starts[1], indices[1], values[1], indptr[2] = 1, pos, 10, 1, 2  # Python's row
    status, pos, row, entry = K.parse_lines(buf, end + 1, 2, 2, labels, starts, indptr, indices,
                                            values, stats)
    assert (status, pos, row, entry) == (K.DONE, len(text), 3, 3)
    assert indices.tolist() == [1, 10, 2] and indptr[:4].tolist() == [0, 1, 2, 3]


def test_count_lines_and_colons_and_line_end():
    buf = np.frombuffer(b"a:b\nc\n::\n", np.uint8).copy()
    assert K.count_lines_and_colons(buf) == (3, 3)
    assert [K.line_end(buf, p) for p in (0, 3, 4, 9)] == [3, 3, 5, 9]
    assert K.count_lines_and_colons(np.empty(0, np.uint8)) == (0, 0)


def random_valid_text(rng) -> str:
    lines = []
    for _ in range(int(rng.integers(0, 30))):
        kind = rng.random()
        if kind < 0.1:
            lines.append(rng.choice(["", "  ", "# comment 1:2", "\t\r"]))
            continue
        label = str(rng.choice(["+1", "-1", "1", "0", "-1.0", "1e0"]))
        ids = np.sort(rng.choice(60, int(rng.integers(0, 8)), replace=False))
        texts = spellings(int(rng.integers(1 << 30)), ids.size)
        entries = [f"{i}:{t}" for i, t in zip(ids.tolist(), texts)
                   if np.isfinite(float(t)) and abs(float(t)) <= F32_MAX]
        sep = str(rng.choice([" ", "\t", "  "]))
        lines.append(sep.join([label] + entries) + str(rng.choice(["", " ", "\r", " # c"])))
    return "\n".join(lines) + str(rng.choice(["", "\n"]))


@pytest.mark.parametrize("seed", range(30))
def test_random_valid_texts_match_the_python_parser(seed):
    text = random_valid_text(np.random.default_rng(seed))
    status, _, labels, indptr, indices, values, _, stats = run(text.encode())
    assert status == K.DONE
    reference = ParsedText("x", text)
    np.testing.assert_array_equal(labels, reference.labels)
    np.testing.assert_array_equal(indptr, reference.indptr)
    np.testing.assert_array_equal(indices, reference.indices)
    slow = np.isnan(values)
    assert stats[K.SLOW] == slow.sum()
    assert (values.view(np.uint32) == reference.values.view(np.uint32))[~slow].all()


def test_bad_arguments_are_refused_not_followed():
    buf = np.frombuffer(b"+1 1:1\n", np.uint8).copy()
    out = (np.empty(2, np.float32), np.empty(2, np.int64), np.zeros(3, np.int64),
           np.empty(1, np.int64), np.empty(1, np.float32))
    for pos, row, entry in [(-100, 0, 0), (0, -1, 0), (0, 0, -1)]:
        assert K.parse_lines(buf, pos, row, entry, *out, K.stats_array())[0] == K.FULL
    assert K.parse_lines(buf, 0, 0, 0, *out, np.zeros(1, np.int64))[0] == K.FULL
    assert K.parse_lines(buf, 0, 0, 0, out[0], out[1][:0], *out[2:], K.stats_array())[0] == K.FULL
    assert K.parse_lines(buf, 100, 0, 0, *out, K.stats_array())[:3] == (K.DONE, 7, 0)
