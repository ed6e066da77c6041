"""mpips.ml.csr_file and mpips.ml.csr_write: data files of each kind read back as the text
readers read the text (whole, by row ranges, by parts), and every file a reader must not
trust refused with one line naming the file, the dataset and the row."""
import os
import shutil

import h5py
import numpy as np
import pytest

from mpips.errors import DataFileError, LibsvmFormatError, MpipsError
from mpips.ml import corpus
from mpips.ml.csr_file import open_data
from mpips.ml.csr_format import KINDS, SCHEMA, VERSION, row_bounds
from mpips.ml.csr_write import (convert, write_corpus_file, write_dataset_file,
                                write_ratings_file)
from mpips.ml.dataset import SparseDataset
from mpips.ml.libsvm import read_libsvm, write_libsvm
from mpips.ml.ratings import RatingSet, read_ratings, write_ratings
from tests.helpers.ckpt import flip_bit_in_chunk


def sparse(n_rows: int, seed: int = 0, n_features: int = 50, big: bool = False):
    """Random rows (about a third empty), ids strictly increasing; ``big``: ids near 2**64."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 6, n_rows) * (rng.random(n_rows) > 0.3)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    ids = [np.sort(rng.choice(n_features, k, replace=False)) for k in lengths]
    indices = np.concatenate(ids + [np.zeros(0, np.int64)]).astype(np.uint64)
    if big:
        indices += np.uint64(2**64 - n_features - 1)
        n_features = 2**64 - 1
    return SparseDataset(indptr, indices, rng.normal(size=indptr[-1]),
                         rng.integers(0, 2, n_rows), n_features)


def same_dataset(a: SparseDataset, b: SparseDataset) -> bool:
    return (a.n_features == b.n_features and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)
            and np.array_equal(a.labels, b.labels))


def same_ratings(a: RatingSet, b: RatingSet) -> bool:
    return (np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
            and np.array_equal(a.ratings, b.ratings))


def in_chunks(data: SparseDataset, rows: int):
    return (data.slice_rows(lo, lo + rows) for lo in range(0, data.n_rows, rows))


# ------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("big", [False, True])
def test_libsvm_rows_round_trip_whole_and_by_random_ranges(tmp_path, big):
    data = sparse(300, seed=1, big=big)
    path = tmp_path / "d.h5"
    size = write_dataset_file(path, in_chunks(data, 64))
    assert size == os.path.getsize(path) and not list(tmp_path.glob("*.tmp-*"))
    rng = np.random.default_rng(0)
    with open_data(path) as f:
        assert (f.kind, f.n_rows, f.n_entries, f.n_features) == ("libsvm", 300, data.nnz,
                                                                 data.n_features)
        assert same_dataset(f.read_all(), data)
        for lo, hi in [(0, 0), (299, 300), (5, 5)] + [tuple(sorted(rng.integers(0, 301, 2)))
                                                      for _ in range(20)]:
            assert same_dataset(f.read_rows(lo, hi), data.slice_rows(lo, hi)), (lo, hi)
        parts = [f.read_part(i, 7) for i in range(7)]
        assert sum(p.n_rows for p in parts) == 300
        with pytest.raises(ValueError):
            f.read_rows(10, 301)


def test_converting_libsvm_text_reads_as_read_libsvm(tmp_path):
    text = tmp_path / "d.svm"
    write_libsvm(sparse(500, seed=2), text)
    got = convert(text, tmp_path / "d.h5")
    assert (got.kind, got.n_rows, got.n_entries) == ("libsvm", 500, read_libsvm(text).nnz)
    with open_data(got.path) as f:
        assert same_dataset(f.read_all(), read_libsvm(text))


@pytest.mark.parametrize("zero_based", [False, True])
def test_converting_in_many_parts_and_shuffled_reads_as_read_libsvm(tmp_path, monkeypatch,
                                                                     zero_based):
    """The text is converted a byte-range part at a time (here 97 bytes); a 0-based file
    whose only index 0 is in its last part is still read 0-based; --shuffle permutes rows."""
    from mpips.ml import csr_write

    monkeypatch.setattr(csr_write, "PART_BYTES", 97)
    text = tmp_path / "d.svm"
    write_libsvm(sparse(300, seed=5), text, zero_based=zero_based)
    if zero_based:  # the only index 0 comes last
        with open(text, "a") as handle:
            handle.write("+1 0:1.5\n")
    want = read_libsvm(text)
    with open_data(convert(text, tmp_path / "d.h5").path) as f:
        assert same_dataset(f.read_all(), want)
    with open_data(convert(text, tmp_path / "s.h5", shuffle=7).path) as f:
        order = np.random.default_rng(7).permutation(want.n_rows)
        assert same_dataset(f.read_all(), want.take(order))


def test_ratings_round_trip_in_file_order_with_64_bit_ids(tmp_path):
    rng = np.random.default_rng(3)
    users = rng.choice(np.array([0, 7, 2**63, 2**64 - 1, 12, 5], np.uint64), 400)
    items = rng.integers(0, 2**63, 400).astype(np.uint64) * np.uint64(2)
    ratings = RatingSet(users, items, rng.integers(1, 11, 400) / 2)
    text = tmp_path / "r.tsv"
    write_ratings(ratings, text)
    got = convert(text, tmp_path / "r.h5", kind="ratings")
    with open_data(got.path) as f:
        assert (f.kind, f.n_rows, f.n_entries, f.n_features) == ("ratings", 6, 400, None)
        assert same_ratings(f.read_all(), read_ratings(text))
        row_ids = np.sort(np.unique(users))
        for lo, hi in [(0, 1), (1, 4), (3, 6), (2, 2)]:
            mine = np.isin(users, row_ids[lo:hi])
            assert same_ratings(f.read_rows(lo, hi), ratings.take(mine)), (lo, hi)


def test_corpus_parts_are_read_sentences_parts(tmp_path):
    """Blank lines, a line of 25,000 words (cut into sentences of 10,000 on reading), CRLF,
    a form feed (str.splitlines breaks there), bytes that are not UTF-8."""
    path = tmp_path / "c.txt"
    path.write_bytes("a b a\n\n\nβ γ\r\n".encode() + (" ".join(["w"] * 25_000) + "\n").encode()
                     + b"x\xffy z\x0cq a\n\nlast b")
    convert(path, tmp_path / "c.h5", kind="corpus")
    with open_data(tmp_path / "c.h5") as f:
        assert (f.kind, f.n_rows) == ("corpus", 9)
        for count in range(1, 6):
            for index in range(count):
                mine, names = f.read_part(index, count)
                theirs, their_names = corpus.read_sentences(path, index, count)
                assert np.array_equal(mine.keys, theirs.keys), (index, count)
                assert np.array_equal(mine.starts, theirs.starts), (index, count)
                assert names == their_names
        assert set(f.words().values()) == {"a", "b", "β", "γ", "w", "x\ufffdy", "z", "q",
                                           "last"}
        assert f.words([corpus.word_key("z")]) == {corpus.word_key("z"): "z"}
        alone, none = f.read_part(1, 2, words=False)
        assert none == {} and np.array_equal(alone.keys, f.read_part(1, 2)[0].keys)


def test_written_corpus_lines_and_zero_rows_of_every_kind(tmp_path):
    write_corpus_file(tmp_path / "c.h5", ["x y", "", "y"])
    with open_data(tmp_path / "c.h5") as f:
        sentences, names = f.read_rows(1, 3)
        assert sentences.starts.tolist() == [0, 1] and names == {corpus.word_key("y"): "y"}
    write_dataset_file(tmp_path / "l.h5", [])
    write_ratings_file(tmp_path / "r.h5", RatingSet([], [], []))
    write_corpus_file(tmp_path / "e.h5", [])
    for name, kind in [("l.h5", "libsvm"), ("r.h5", "ratings"), ("e.h5", "corpus")]:
        with open_data(tmp_path / name) as f:
            assert (f.kind, f.n_rows, f.n_entries) == (kind, 0, 0)
            got = f.read_all()
            assert (got[0].n_words if kind == "corpus" else len(got.indices if kind == "libsvm"
                                                                else got.users)) == 0
            assert f.read_part(2, 3) is not None and f.verify() >= 8


def test_layout_attributes_descriptions_checksums(tmp_path):
    write_dataset_file(tmp_path / "d.h5", [sparse(10)])
    with h5py.File(tmp_path / "d.h5") as f:
        assert (f.attrs["mpips_data"], f.attrs["version"], f.attrs["kind"]) == ("csr", 1,
                                                                                "libsvm")
        assert "mpips data file" in f.attrs["description"]
        for name, dtype, _, description in SCHEMA["libsvm"]:
            assert f[name].dtype == dtype and f[name].fletcher32 and f[name].chunks
            assert f[name].attrs["description"] == description
    assert set(SCHEMA) == set(KINDS)


def test_row_bounds_are_read_sentences_blocks():
    assert [row_bounds(10, i, 3) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert [row_bounds(2, i, 4) for i in range(4)] == [(0, 0), (0, 1), (1, 1), (1, 2)]
    with pytest.raises(ValueError):
        row_bounds(10, 3, 3)


def test_convert_refuses_existing_output_and_passes_text_errors(tmp_path):
    text, out = tmp_path / "d.svm", tmp_path / "d.h5"
    text.write_text("1 1:1\n+1 3:1 2:1\n")
    with pytest.raises(LibsvmFormatError, match=r"d.svm:2: feature indices not increasing"):
        convert(text, out)
    assert not list(tmp_path.glob("d.h5*"))  # nothing left behind
    text.write_text("1 1:1\n")
    convert(text, out)
    with pytest.raises(FileExistsError):
        convert(text, out)
    assert convert(text, out, overwrite=True).n_rows == 1
    with pytest.raises(FileNotFoundError, match="no such file"):
        convert(tmp_path / "none", out, overwrite=True)


# --------------------------------------------------------------------- refused files

@pytest.fixture
def good(tmp_path):
    """A valid libsvm data file of 200 rows (ids < 50) and the dataset it holds."""
    data = sparse(200, seed=5)
    path = tmp_path / "good.h5"
    write_dataset_file(path, in_chunks(data, 50))
    return path


def refused(path, read=False) -> str:
    with pytest.raises(DataFileError) as caught:
        with open_data(path) as f:
            if read:
                f.read_all()
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert isinstance(caught.value, MpipsError) and isinstance(caught.value, ValueError)
    return message


def edit(path, change) -> None:
    with h5py.File(path, "r+") as f:
        change(f)


def test_a_file_of_another_kind_is_refused_when_a_kind_is_asked_for(good):
    with open_data(good, kind="libsvm") as f:
        assert f.kind == "libsvm"
    assert refused_kind(good, "ratings") == (f"{good}: holds libsvm rows, not ratings (convert "
                                             f"the text with 'mpips data convert --kind "
                                             f"ratings')")


def refused_kind(path, kind) -> str:
    with pytest.raises(DataFileError) as caught:
        open_data(path, kind=kind)
    return str(caught.value)


def test_missing_text_and_foreign_files_are_refused(tmp_path, good):
    assert "no such file" in refused(tmp_path / "none.h5")
    assert "a directory" in refused(tmp_path)
    text = tmp_path / "d.svm"
    text.write_text("1 1:1\n")
    assert "not an HDF5 file" in refused(text)
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.arange(3)
    assert "not an mpips data file" in refused(tmp_path / "foreign.h5")


@pytest.mark.parametrize("change, words", [
    (lambda f: f.attrs.__setitem__("version", VERSION + 1),
     f"written by a newer mpips (data format version {VERSION + 1}"),
    (lambda f: f.attrs.__setitem__("kind", "images"), "kind 'images' is not one of"),
    (lambda f: f.attrs.__delitem__("n_features"), "attribute n_features is missing"),
    (lambda f: f.__delitem__("labels"), "dataset 'labels' is missing"),
    (lambda f: f["values"].resize((3,)), "dataset 'values' has 3 elements, expected n_entries"),
    (lambda f: f.attrs.__setitem__("n_rows", 10), "dataset 'indptr' has 201 elements, "
                                                  "expected n_rows + 1 = 11"),
    (lambda f: f["indptr"].__setitem__(200, 5), "dataset 'indptr' runs from 0 to 5"),
    (lambda f: (f.__delitem__("labels"), f.create_dataset("labels", data=np.zeros(200))),
     "dataset 'labels' is float64 (200,), expected 1-D float32"),
])
def test_inconsistent_files_are_refused_on_open(good, change, words):
    edit(good, change)
    assert words in refused(good)


@pytest.mark.parametrize("change, words", [
    (lambda f: f["indices"].__setitem__(7, 50), "dataset 'indices', row {row}: feature id 50 "
                                                "is not below n_features = 50"),
    (lambda f: f["indptr"].__setitem__(100, 10**9), "dataset 'indptr', row 100: 1000000000 is "
                                                    "outside [0, n_entries"),
    (lambda f: f["indptr"].__setitem__(100, 0), "dataset 'indptr', row 99: decreases"),
    (lambda f: f["values"].__setitem__(9, np.inf), "dataset 'values', row {row}: value inf"),
    (lambda f: f["labels"].__setitem__(3, 2), "dataset 'labels', row 3: label 2.0 is not 0 "
                                              "or 1"),
])
def test_bad_rows_are_refused_when_read_naming_dataset_and_row(good, change, words):
    with h5py.File(good) as f:
        indptr = f["indptr"][:]
    edit(good, change)
    if "{row}" in words:  # the row of entry 7 / 9
        entry = 7 if "indices" in words else 9
        words = words.format(row=int(np.searchsorted(indptr, entry, side="right")) - 1)
    assert words in refused(good, read=True)


def test_ids_not_increasing_within_a_row_are_refused(good):
    with h5py.File(good) as f:
        indptr = f["indptr"][:]
    row = int(np.argmax(np.diff(indptr) >= 2))
    entry = int(indptr[row])
    edit(good, lambda f: f["indices"].__setitem__(entry + 1, f["indices"][entry]))
    assert f"dataset 'indices', row {row}: feature ids not strictly increasing" in \
        refused(good, read=True)


def test_repeated_rating_positions_are_refused(tmp_path):
    path = tmp_path / "r.h5"
    write_ratings_file(path, RatingSet([1, 2, 1], [5, 6, 7], [1, 2, 3]))
    edit(path, lambda f: f["positions"].__setitem__(2, 0))
    assert "dataset 'positions', row " in refused(path, read=True)


def test_a_corrupted_chunk_fails_its_checksum(tmp_path):
    good = tmp_path / "big.h5"
    write_dataset_file(good, [sparse(3000)])  # chunks of 1024 entries: several
    flip_bit_in_chunk(good, "indices", chunk=1)
    with open_data(good) as f:
        f.read_rows(0, 1)  # chunk 0 is intact
        with pytest.raises(DataFileError, match=r"dataset 'indices' \[\d+:\d+\]: unreadable: "
                                                r"checksum mismatch"):
            f.read_all()
    assert "checksum mismatch" in refused(good, read=True)


def test_a_truncated_file_is_refused(good, tmp_path):
    for keep in (os.path.getsize(good) // 2, os.path.getsize(good) - 1, 100):
        cut = tmp_path / f"cut-{keep}.h5"
        shutil.copy(good, cut)
        with open(cut, "r+b") as handle:
            handle.truncate(keep)
        message = refused(cut, read=True)
        assert "truncated" in message or "not an HDF5 file" in message, message
