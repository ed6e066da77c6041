"""mpips.ml.libsvm_part: byte-range parts of a LIBSVM file. Concatenated in order they are the
whole file (read_libsvm, and the pure-Python reference); errors name global line numbers."""
import numpy as np
import pytest

from mpips.errors import LibsvmFormatError
from mpips.ml.dataset import SparseDataset
from mpips.ml.libsvm import read_libsvm, read_libsvm_part
from mpips.ml.libsvm_part import part_range
from mpips.ml.libsvm_python import read_libsvm_python
from tests.helpers.data import w8a_path


def read_in_parts(path, count, zero_based="auto", n_features=None) -> SparseDataset:
    """What an MPI job does: parse every part, agree on the index base and n_features (the
    Allreduce), build each part's dataset, and concatenate them in order."""
    parts = [read_libsvm_part(path, index, count) for index in range(count)]
    if zero_based == "auto":
        zero_based = any(part.has_zero_index for part in parts)
    if n_features is None:
        n_features = max(part.largest_id(zero_based) for part in parts) + 1
    datasets = [part.dataset(zero_based, n_features) for part in parts]
    indptr = np.concatenate([[0]] + [d.indptr[1:] for d in datasets])
    indptr[1:] += np.repeat(np.cumsum([0] + [d.nnz for d in datasets[:-1]]),
                            [d.n_rows for d in datasets])
    return SparseDataset(indptr, np.concatenate([d.indices for d in datasets]),
                         np.concatenate([d.values for d in datasets]),
                         np.concatenate([d.labels for d in datasets]), n_features)


def assert_same(a: SparseDataset, b: SparseDataset):
    assert a.n_features == b.n_features
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.values.view(np.uint32), b.values.view(np.uint32))


def random_file(rng) -> bytes:
    """A small LIBSVM file with comments, blank lines, CRLF or LF, maybe no last newline,
    odd spellings the kernel leaves to Python and lines of very different lengths."""
    eol = b"\r\n" if rng.random() < 0.3 else b"\n"
    lines = []
    for _ in range(int(rng.integers(0, 25))):
        kind = rng.random()
        if kind < 0.15:
            lines.append(bytes(rng.choice([b"", b"   ", b"# a comment 3:4", b"\t"])))
            continue
        label = bytes(rng.choice([b"+1", b"-1", b"1", b"0", b"-1.0", b"+1e0",
                                  b"1.000000000000000000001"]))
        ids = np.sort(rng.choice(40, int(rng.integers(0, 12)), replace=False))
        entries = []
        for i in ids.tolist():
            value = rng.choice([f"{rng.standard_normal():.9g}", "1", repr(rng.random()),
                                f"{rng.random():.3e}", "1_5", "7e-30"])
            index = f"{i}" if rng.random() < 0.9 or i < 10 else f"{i // 10}_{i % 10}"  # int()
            entries.append(f"{index}:{value}".encode())
        tail = bytes(rng.choice([b"", b" ", b" # c\xc3\xa9"]))
        space = b" " if rng.random() < 0.9 else b"\xc2\xa0"  # NBSP: str.split() splits there
        lines.append(space.join([label] + entries) + tail)
    text = eol.join(lines)
    return text + eol if lines and rng.random() < 0.7 else text


@pytest.mark.parametrize("seed", range(40))
def test_parts_concatenated_are_the_whole_file(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "f.svm"
    path.write_bytes(random_file(rng))
    whole = read_libsvm(path)
    assert_same(whole, read_libsvm_python(path))
    n_lines = path.read_bytes().count(b"\n") + 1
    for count in sorted({1, 2, 3, 5, 7, n_lines, n_lines + 3, 2 * path.stat().st_size + 1}):
        assert_same(read_in_parts(path, count), whole)


@pytest.mark.parametrize("seed", range(10))
def test_values_left_to_python_in_small_blocks(tmp_path, monkeypatch, seed):
    """Python converts the kernel's NaN values a block of rows at a time; a bad value in a
    later block is still the first error."""
    monkeypatch.setattr("mpips.ml.libsvm_part._SLOW_ROWS", 2)
    rng = np.random.default_rng(seed)
    path = tmp_path / "f.svm"
    path.write_bytes(random_file(rng))
    assert_same(read_libsvm(path), read_libsvm_python(path))
    lines = [f"+1 1:{rng.random()!r} 2:0.1234567890123456789" for _ in range(9)]
    lines[7] = "+1 1:1 2:1_e5"
    lines[8] = "+1 2:1 1:1"
    path.write_text("\n".join(lines))
    with pytest.raises(LibsvmFormatError, match=r":8: value '1_e5' is not a number"):
        read_libsvm(path)


def test_a_line_crossing_a_boundary_belongs_to_the_part_it_starts_in(tmp_path):
    path = tmp_path / "f.svm"
    text = b"+1 1:1\n-1 2:1 3:1 4:1 5:1 6:1\n+1 7:1\n"
    path.write_bytes(text)
    starts = [0, 7, 30]  # where the lines start
    assert len(text) == 37 and all(text[s - 1:s] == b"\n" for s in starts[1:])
    for count in range(1, 40):
        bounds = [part_range(len(text), k, count) for k in range(count)]
        parts = [read_libsvm_part(path, k, count) for k in range(count)]
        expected = [sum(lo <= s < hi for s in starts) for lo, hi in bounds]
        assert [p.n_rows for p in parts] == expected, count
    part = read_libsvm_part(path, 1, 4)  # bytes [9, 18): no line starts there
    assert (part.n_rows, part.largest_index, part.has_zero_index) == (0, -1, False)
    assert read_libsvm_part(path, 0, 4).n_rows == 2  # lines starting at 0 and 7
    assert read_libsvm_part(path, 3, 4).first_line() == 3


def test_a_part_reads_only_its_range(tmp_path):
    """The second half of this file is not LIBSVM at all; the first part never looks at it."""
    path = tmp_path / "f.svm"
    good = b"+1 1:1\n" * 100
    path.write_bytes(good + b"\xff garbage \x00\n" * 40)  # 700 + 480 bytes
    part = read_libsvm_part(path, 0, 2)  # lines starting in [0, 590)
    assert part.n_rows == 85 and part.indptr[-1] == 85
    with pytest.raises(LibsvmFormatError, match=r":101: bytes that are not UTF-8"):
        read_libsvm_part(path, 1, 2)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 40])
@pytest.mark.parametrize("bad,words", [
    ("2 1:1", "label '2'"), ("+1 1:1 5", "'5'"), ("+1 3:1 2:1", "not increasing"),
    ("+1 3:x", "value 'x'"), ("+1 3:1e39", "finite float32"), ("+1 -3:1", "negative"),
    ("+1 99999999999999999999:1", "does not fit"), ("+1 \xe9:1", "feature index"),
])
def test_an_error_in_part_k_names_the_global_line(tmp_path, count, bad, words):
    lines = [f"{'+1' if i % 3 else '-1'} {i % 9 + 1}:1 {i % 9 + 2}:0.5" for i in range(30)]
    lines[17] = bad  # line 18
    lines[5] = "# comment"
    path = tmp_path / "f.svm"
    text = ("\r\n".join(lines) + "\r\n").encode()
    path.write_bytes(text)
    start = text.index(bad.encode())
    owner = [k for k in range(count)
             if part_range(len(text), k, count)[0] <= start < part_range(len(text), k, count)[1]]
    for k in range(count):
        if k in owner:
            with pytest.raises(LibsvmFormatError) as info:
                read_libsvm_part(path, k, count)
            assert str(info.value).startswith(f"{path}:18: ") and words in str(info.value)
        else:
            read_libsvm_part(path, k, count)


def test_dataset_errors_name_global_lines(tmp_path):
    path = tmp_path / "f.svm"
    path.write_text("".join(f"+1 {i + 1}:1\n" for i in range(20)) + "-1 0:1\n+1 99:1\n")
    parts = [read_libsvm_part(path, k, 3) for k in range(3)]
    assert [p.has_zero_index for p in parts] == [False, False, True]
    with pytest.raises(LibsvmFormatError, match=r":21: feature index 0 .*1-based"):
        parts[2].dataset(False, 100)
    with pytest.raises(LibsvmFormatError, match=r":22: feature id 99 \(0-based\) is not below "
                                                 r"n_features=50"):
        parts[2].dataset(True, 50)
    with pytest.raises(LibsvmFormatError, match=r":14: feature id 13 \(0-based\) is not below "):
        read_in_parts(path, 3, zero_based=False, n_features=13)
    assert (parts[2].first_line(), parts[2].n_rows, parts[2].line_of_row(6)) == (16, 7, 22)


def test_a_bad_value_before_a_bad_line_is_reported_first(tmp_path):
    """The kernel leaves 'x' to Python's float and stops at line 3; line 2 is the first."""
    path = tmp_path / "f.svm"
    path.write_text("+1 1:1\n+1 2:x\n+1 3:1 2:1\n+1 4:nan\n")
    with pytest.raises(LibsvmFormatError, match=r":2: value 'x' is not a number"):
        read_libsvm_part(path, 0, 1)
    path.write_text("+1 1:1\n+1 2:1\n+1 3:1 2:1\n+1 4:nan\n")
    with pytest.raises(LibsvmFormatError, match=r":3: feature indices not increasing"):
        read_libsvm(path)


def test_bad_part_arguments(tmp_path):
    path = tmp_path / "f.svm"
    path.write_text("+1 1:1\n")
    for index, count in [(1, 1), (-1, 2), (0, 0), (0.5, 2)]:
        with pytest.raises(ValueError, match="part index"):
            read_libsvm_part(path, index, count)
    with pytest.raises(ValueError, match="zero_based"):
        read_libsvm_part(path).dataset("auto", None)


def test_w8a_in_parts_is_w8a(tmp_path):
    path = w8a_path()
    whole = read_libsvm(path)
    assert_same(whole, read_libsvm_python(path))
    for count in (2, 3, 8):
        assert_same(read_in_parts(path, count), whole)
