"""mpips.ml.libsvm: reading w8a and small files, and the path:line errors for malformed lines."""
import importlib

import numpy as np
import pytest

from mpips.errors import LibsvmFormatError, MpipsError
from mpips.ml.libsvm import read_libsvm, write_libsvm
from mpips.ml.synthetic import make_sparse_classification
from tests.helpers.data import W8A_FEATURES, W8A_ROWS, w8a_path


def write(tmp_path, text, name="data.svm"):
    path = tmp_path / name
    path.write_text(text)
    return path


def rows_of(dataset):
    """[(label, [ids], [values])] per row, for readable comparisons."""
    return [(float(dataset.labels[i]),
             dataset.indices[dataset.indptr[i]:dataset.indptr[i + 1]].tolist(),
             dataset.values[dataset.indptr[i]:dataset.indptr[i + 1]].tolist())
            for i in range(dataset.n_rows)]


def test_w8a_matches_scikit_learn_reader():
    sklearn_datasets = importlib.import_module("sklearn.datasets")
    path = w8a_path()
    data = read_libsvm(path)
    assert (data.n_rows, data.n_features) == (W8A_ROWS, W8A_FEATURES)
    X, y = sklearn_datasets.load_svmlight_file(str(path), n_features=W8A_FEATURES)
    np.testing.assert_array_equal(data.indptr, X.indptr)
    np.testing.assert_array_equal(data.indices, X.indices)
    np.testing.assert_array_equal(data.values, X.data)
    np.testing.assert_array_equal(data.labels, (y > 0).astype(np.float32))
    assert data.indices.dtype == np.uint64 and data.values.dtype == np.float32
    assert 0 < data.labels.mean() < 0.05  # w8a: about 3% positives


def test_labels_comments_blank_lines_and_empty_rows(tmp_path):
    path = write(tmp_path, "# header comment\n"
                           "+1 1:0.5 3:2   # trailing comment\n"
                           "\n"
                           "-1\n"
                           "1 2:1e-3\n"
                           "0 4:-7\n"
                           "-1.0\t1:1\t4:1\n"
                           "   \n")
    data = read_libsvm(path)
    assert data.n_features == 4
    assert rows_of(data) == [(1.0, [0, 2], [0.5, 2.0]), (0.0, [], []),
                             (1.0, [1], [pytest.approx(1e-3)]), (0.0, [3], [-7.0]),
                             (0.0, [0, 3], [1.0, 1.0])]


def test_zero_based_auto_explicit_and_n_features(tmp_path):
    one_based = write(tmp_path, "+1 1:1 5:1\n", "one.svm")
    zero_based = write(tmp_path, "+1 0:1 5:1\n", "zero.svm")
    assert read_libsvm(one_based).indices.tolist() == [0, 4]
    assert read_libsvm(zero_based).indices.tolist() == [0, 5]
    assert read_libsvm(one_based, zero_based=True).indices.tolist() == [1, 5]
    assert read_libsvm(one_based, n_features=10).n_features == 10
    assert read_libsvm(zero_based).n_features == 6


def test_empty_file(tmp_path):
    data = read_libsvm(write(tmp_path, "\n# nothing\n"))
    assert (data.n_rows, data.nnz, data.n_features) == (0, 0, 0)


def test_write_then_read_round_trip(tmp_path):
    data = make_sparse_classification(300, 500, 8, seed=3)
    path = tmp_path / "round.svm"
    write_libsvm(data, path)
    back = read_libsvm(path, n_features=data.n_features)
    assert rows_of(back) == rows_of(data)


GOOD = "+1 1:1 2:1\n# a comment line\n\n"  # lines 1-3; the bad line below is line 4


@pytest.mark.parametrize("bad_line,words", [
    ("2 1:1", ["label '2'", "-1, +1, 0 or 1"]),
    ("abc 1:1", ["label 'abc'"]),
    ("1:1 2:1", ["missing label"]),
    ("+1 1:1 5", ["'5'", "index:value"]),
    ("+1 1:1 :5", ["':5'", "index:value"]),
    ("+1 3:", ["'3:'", "index:value"]),
    ("+1 3:1:2", ["'3:1:2'", "index:value"]),
    ("+1 1:2:3 4", ["'1:2:3'", "index:value"]),  # colon count matches the token count
    ("+1 1::2 3:1 4", ["'1::2'", "index:value"]),
    ("+1 é:1", ["feature index 'é'", "not an integer"]),
    ("+1 a:1", ["feature index 'a'", "not an integer"]),
    ("+1 1.5:1", ["feature index '1.5'", "not an integer"]),
    ("+1 99999999999999999999:1", ["does not fit in int64"]),
    ("+1 -3:1", ["negative feature index -3"]),
    ("+1 3:1 2:1", ["not increasing", "'2:1' follows '3:1'"]),
    ("+1 3:1 3:1", ["not increasing", "'3:1' follows '3:1'"]),
    ("+1 3:abc", ["value 'abc'", "not a number"]),
    ("+1 3:nan", ["value 'nan'", "finite"]),
    ("+1 3:-inf", ["value '-inf'", "finite"]),
    ("+1 3:1e39", ["value '1e39'", "finite float32"]),
])
def test_malformed_line_names_file_and_line(tmp_path, bad_line, words):
    path = write(tmp_path, GOOD + bad_line + "\n-1 1:1\n")
    with pytest.raises(LibsvmFormatError) as info:
        read_libsvm(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: "), message
    for word in words:
        assert word in message, message


def test_first_of_several_bad_lines_is_reported(tmp_path):
    path = write(tmp_path, "+1 1:1\n+1 2:x\n+1 3:nan\n+1 5:1 4:1\n")
    with pytest.raises(LibsvmFormatError, match=r":2: value 'x'"):
        read_libsvm(path)


def test_binary_garbage_names_its_line(tmp_path):
    path = tmp_path / "binary.svm"
    path.write_bytes(b"+1 1:1\n-1 2:1\n+1 \xff\xfe:1\n")
    with pytest.raises(LibsvmFormatError, match=r":3: bytes that are not UTF-8"):
        read_libsvm(path)


def test_index_zero_in_a_file_read_as_one_based(tmp_path):
    path = write(tmp_path, "+1 1:1\n-1 0:1\n")
    with pytest.raises(LibsvmFormatError, match=r"^.*:2: feature index 0 .*1-based"):
        read_libsvm(path, zero_based=False)


def test_feature_id_beyond_n_features(tmp_path):
    path = write(tmp_path, "+1 1:1\n-1 7:1\n")
    with pytest.raises(LibsvmFormatError, match=r":2: feature id 6 \(0-based\) is not below "
                                                 r"n_features=5"):
        read_libsvm(path, n_features=5)


def test_error_classes_and_bad_arguments(tmp_path):
    assert issubclass(LibsvmFormatError, MpipsError) and issubclass(LibsvmFormatError, ValueError)
    with pytest.raises(ValueError, match="zero_based"):
        read_libsvm(write(tmp_path, "+1 1:1\n"), zero_based="yes")


def test_a_train_and_test_pair_is_read_alike(tmp_path):
    """read_libsvm_pair: one index base and one feature count for both files, whichever
    holds the index 0 or the largest id."""
    from mpips.ml.libsvm import read_libsvm_pair

    (tmp_path / "a").write_text("+1 1:1 3:2\n-1 2:1\n")
    (tmp_path / "a.t").write_text("+1 0:1 7:1\n")  # 0-based after all, and a later feature
    train, test = read_libsvm_pair(tmp_path / "a", tmp_path / "a.t")
    assert train.n_features == test.n_features == 8
    assert train.indices.tolist() == [1, 3, 2] and test.indices.tolist() == [0, 7]
    (tmp_path / "b.t").write_text("+1 9:1\n")
    train, test = read_libsvm_pair(tmp_path / "a", tmp_path / "b.t")  # 1-based
    assert train.indices.tolist() == [0, 2, 1] and test.indices.tolist() == [8]
    assert train.n_features == 9
    (tmp_path / "c.t").write_text("+1 2:x\n")
    with pytest.raises(LibsvmFormatError, match=r"c\.t:1: "):
        read_libsvm_pair(tmp_path / "a", tmp_path / "c.t")


def test_odd_spellings_read_as_the_python_reader_reads_them(tmp_path):
    """Lines the kernel leaves to Python (a label of many digits, an index with '_', Unicode
    spaces, non-ASCII comments) and values it leaves to float() read as they always did."""
    from mpips.ml.libsvm_python import read_libsvm_python

    path = tmp_path / "odd.svm"
    path.write_bytes("1.0000000000000000000000 1_0:1 12:0.1000000000000000000001\n"
                     "-1\u00a02:1e-40\u20033:7 # caf\u00e9\r\n"
                     "+1 -0:1 4:1e+38 5:12345678901234567890\n"
                     "0 3:\uff15 # fullwidth 5\n".encode())
    data = read_libsvm(path)
    expected = read_libsvm_python(path)
    assert rows_of(data) == rows_of(expected) and data.n_features == expected.n_features == 13
    assert data.values.view(np.uint32).tolist() == expected.values.view(np.uint32).tolist()


@pytest.mark.parametrize("bad_line", ["2 1:1", "1:1 2:1", "+1 1:1 5", "+1 3:1:2", "+1 é:1",
                                      "+1 99999999999999999999:1", "+1 -3:1", "+1 3:1 3:1",
                                      "+1 3:abc", "+1 3:-inf", "+1 3:1e39", "+1 2:1 \xff"])
def test_messages_are_the_python_readers(tmp_path, bad_line):
    from mpips.ml.libsvm_python import read_libsvm_python

    path = tmp_path / "bad.svm"
    path.write_bytes((GOOD + bad_line + "\n-1 1:1\n").encode("latin-1" if "\xff" in bad_line
                                                             else "utf-8"))
    messages = []
    for reader in (read_libsvm, read_libsvm_python):
        with pytest.raises(LibsvmFormatError) as info:
            reader(path)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and messages[0].startswith(f"{path}:4: ")


def test_every_value_is_float32_of_pythons_float_bit_for_bit(tmp_path):
    """Through the whole reader: the kernel's exact values and those it leaves to float()."""
    from tests.unit.kernels.test_libsvm_text import HAND_PICKED, spellings

    texts = [t for t in HAND_PICKED + spellings(7, 3000)
             if abs(float(t)) <= float(np.finfo(np.float32).max)]
    path = tmp_path / "values.svm"
    path.write_text("".join(f"+1 1:{t}\n" for t in texts))
    with np.errstate(over="ignore"):
        expected = np.array([float(t) for t in texts]).astype(np.float32)
    assert read_libsvm(path).values.view(np.uint32).tolist() == expected.view(np.uint32).tolist()
