"""User mistakes in a job's options, data or checkpoint directory (issue 17): every launch
stops with exit code 2 and one line from rank 0, ``[mpips rank 0/3] error: ...``, and no
rank prints a traceback or trains on what it should have refused."""
from __future__ import annotations

import pytest

from tests.helpers.launch import run_mpi
from tests.helpers.ckpt import read_only

RANKS = 3  # 1 server, 2 workers
SYNTHETIC = ["--synthetic", "2000", "--features", "100", "--nnz", "5"]
HUGE_FEATURE = 2**40  # a dense table of it would be a 4 TiB window per array


def data_file(tmp_path, name: str, text: str | None):
    """A data file (a directory when ``text`` is None) under tmp_path."""
    path = tmp_path / name
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    return str(path)


# (options, what the error line must say); "{tmp}" is the test's tmp_path
CASES = {
    "data-missing": (["--data", "{tmp}/missing.svm"], "--data {tmp}/missing.svm: no such file"),
    "data-directory": (["--data", "{tmp}/dir.svm"], "--data {tmp}/dir.svm: a directory, not a "
                                                     "LIBSVM file"),
    "data-empty": (["--data", "{tmp}/empty.svm"], "--data {tmp}/empty.svm: 0 row(s) are too few"),
    "data-one-row": (["--data", "{tmp}/one.svm"], "--data {tmp}/one.svm: 1 row(s) are too few"),
    "lr-negative": ([*SYNTHETIC, "--lr", "-1"], "--lr must be > 0.0, got -1.0"),
    "lr-zero": ([*SYNTHETIC, "--lr", "0"], "--lr must be > 0.0, got 0.0"),
    "lr-nan": ([*SYNTHETIC, "--lr", "nan"], "--lr must be > 0.0, got nan"),
    "lr-inf": ([*SYNTHETIC, "--lr", "inf"], "--lr must be > 0.0, got inf"),
    "synthetic-zero": (["--synthetic", "0"], "--synthetic must be >= 1 row, got 0"),
    "synthetic-negative": (["--synthetic", "-5"], "--synthetic must be >= 1 row, got -5"),
    "features-zero": ([*SYNTHETIC, "--features", "0"], "--features must be >= 1, got 0"),
    "nnz-zero": ([*SYNTHETIC, "--nnz", "0"], "--nnz must be >= 1, got 0"),
    "unknown-rule": ([*SYNTHETIC, "--rule", "foo"], "argument --rule: invalid choice: 'foo'"),
    "read-only-checkpoint-dir": ([*SYNTHETIC, "--checkpoint-dir", "{tmp}/locked"],
                                 "--checkpoint-dir {tmp}/locked: cannot write checkpoints here"),
    "dense-huge-index": (["--data", "{tmp}/huge.svm", "--table", "dense"],
                         f"rank 2: --table dense: {HUGE_FEATURE} features need 8,192.0 GiB on "
                         "each of 1 server(s), more than this node's"),
    "keep-zero": ([*SYNTHETIC, "--checkpoint-dir", "{tmp}/ck", "--keep", "0"],
                  "--keep must be >= 1, got 0"),
    "checkpoint-every-negative": ([*SYNTHETIC, "--checkpoint-dir", "{tmp}/ck",
                                   "--checkpoint-every", "-1"],
                                  "--checkpoint-every must be >= 0, got -1"),
    "straggler-no-such-worker": ([*SYNTHETIC, "--straggler", "9:2"],
                                 "--straggler 9:2: there is no worker 9 (this launch has 2: "
                                 "0..1)"),
    "l2-negative": ([*SYNTHETIC, "--l2", "-5"], "--l2 must be >= 0.0, got -5.0"),
    "ftrl-l1-negative": ([*SYNTHETIC, "--rule", "ftrl", "--l1", "-1"],
                         "--l1 must be >= 0.0, got -1.0"),
    "ftrl-beta-nan": ([*SYNTHETIC, "--rule", "ftrl", "--beta", "nan"],
                      "--beta must be >= 0.0, got nan"),
    "admit-bad": ([*SYNTHETIC, "--admit", "count:0"],
                  "--admit must be 'count:K' (an integer K >= 1) or 'prob:P' (0 < P <= 1), got "
                  "'count:0'"),
    "admit-dense": ([*SYNTHETIC, "--table", "dense", "--admit", "count:2"],
                    "--admit, --evict and --capacity are for --table sparse"),
    "evict-bad": ([*SYNTHETIC, "--evict", "unseen:0"],
                  "--evict must be 'unseen:STEPS' (an integer STEPS >= 1), got 'unseen:0'"),
    "capacity-negative": ([*SYNTHETIC, "--capacity", "-2"],
                          "--capacity must be an integer >= 1 (rows per server), got -2"),
    "l1-without-ftrl": ([*SYNTHETIC, "--l1", "0.5"],
                        "--l1 is an option of --rule ftrl (got --rule adagrad)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_mistake_is_one_line_and_exit_2(tmp_path, case):
    data_file(tmp_path, "dir.svm", None)
    data_file(tmp_path, "empty.svm", "")
    data_file(tmp_path, "one.svm", "1 1:1 2:1\n")
    data_file(tmp_path, "huge.svm", f"1 {HUGE_FEATURE}:1\n-1 3:1\n1 2:1\n-1 5:1\n1 7:1\n")
    (tmp_path / "locked").mkdir()
    undo = read_only(tmp_path / "locked")
    options, expected = CASES[case]
    try:
        proc = run_mpi(RANKS, ["-m", "mpips", "run", "sparse_lr", "--servers", "1", "--quiet",
                               *(o.replace("{tmp}", str(tmp_path)) for o in options)],
                       timeout=120)
    finally:
        undo()
    said = proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == 2, said
    assert errors == [errors[0]] and errors[0].startswith(f"[mpips rank 0/{RANKS}] error: "), said
    assert expected.replace("{tmp}", str(tmp_path)) in errors[0], said
    assert "Traceback" not in said and "test_accuracy" not in proc.stdout
    assert not (tmp_path / "ck").exists()  # refused before anything was written
