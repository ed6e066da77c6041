"""sparse_lr reading only its part of the data (issue 21): an mpips data file (.h5) by row
ranges, a LIBSVM text by byte ranges (--read parts). The same rows are held out either way (a
hash of the row number), accuracy stays with the run that parses the whole file, blocks of a
data file are claimed under --assign dynamic, and bad files are one line on every rank."""
import pytest

from mpips.ml.csr_write import convert
from tests.helpers.data import W8A_ROWS, w8a_path
from tests.helpers.launch import launch
from tests.helpers.results import final_metrics

JOB = ["jobs/sparse_lr.py", "--servers", "2", "--lr", "0.3", "--epochs", "3", "--quiet"]


@pytest.fixture(scope="module")
def w8a_h5(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    plain = convert(w8a_path(), folder / "w8a.h5").path
    shuffled = convert(w8a_path(), folder / "w8a-shuffled.h5", shuffle=1).path
    return plain, shuffled


def metrics_of(*extra: str, ranks: int = 5) -> dict:
    return final_metrics(launch(ranks, [*JOB, *extra]))


@pytest.mark.long
def test_a_data_file_and_text_parts_train_like_the_whole_text(w8a_h5):
    whole = metrics_of("--data", str(w8a_path()))
    parts = metrics_of("--data", str(w8a_path()), "--read", "parts")
    h5 = metrics_of("--data", w8a_h5[0])
    for got in (parts, h5):
        assert got["data_read"] == "parts" and got["n_train"] + got["n_test"] == W8A_ROWS
        assert abs(got["n_test"] - 0.2 * W8A_ROWS) < 0.02 * W8A_ROWS
        assert abs(got["test_accuracy"] - whole["test_accuracy"]) <= 0.005, (got, whole)
    assert parts["n_test"] == h5["n_test"]  # the same rows held out: a hash of the row number


@pytest.mark.long
def test_dynamic_assignment_claims_blocks_of_a_data_file(w8a_h5):
    got = metrics_of("--data", w8a_h5[1], "--consistency", "async", "--assign", "dynamic",
                     "--straggler", "0:3")
    assert got["block_done_counts"] == [[1, 1]] * 3 and got["data_read"] == "parts"
    assert got["samples"] == 3 * got["n_train"]
    assert got["test_accuracy"] >= 0.98


def test_bad_data_files_are_one_line_on_every_rank(tmp_path, w8a_h5):
    foreign = tmp_path / "foreign.h5"
    import h5py
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2, 3]
    broken = tmp_path / "broken.svm"
    lines = w8a_path().read_text().splitlines()
    lines[40_000] = "+1 3:1 2:1"  # in the last worker's byte range
    broken.write_text("\n".join(lines) + "\n")
    cases = [(["--data", str(foreign)], "foreign.h5: "),
             (["--data", str(broken), "--read", "parts"],
              "broken.svm:40001: feature indices not increasing"),
             (["--data", str(tmp_path / "missing.h5")], "missing.h5: no such file"),
             (["--data", w8a_h5[0], "--test-data", str(w8a_path())], "not one of each")]
    for extra, said in cases:
        proc = launch(5, [*JOB, *extra])
        assert proc.returncode == 2, (extra, proc.stderr[-2000:])
        assert said in proc.stderr and "Traceback" not in proc.stderr, (extra, proc.stderr)
