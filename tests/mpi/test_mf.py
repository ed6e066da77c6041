"""jobs/mf.py end to end (issue 20): matrix factorization on servers and workers against
scikit-surprise's SVD on the same split, ratings files with a separate test file, resume
bit for bit on another server count, and one-line errors for bad input."""
import tempfile

import pytest

from mpips.ml.ratings import make_ratings, write_ratings
from tests.helpers.launch import run_mpi
from tests.helpers.results import final_metrics

JOB = ["-m", "mpips", "run", "mf"]


def surprise_rmse(train, test, rank: int, epochs: int, lr: float, reg: float) -> float:
    """Test RMSE of scikit-surprise's SVD (same rank, epochs, rate and regularisation)."""
    from surprise import SVD, Dataset, Reader, accuracy

    with tempfile.NamedTemporaryFile("w", suffix=".tsv") as handle:
        write_ratings(train, handle.name)
        reader = Reader(line_format="user item rating", sep="\t", rating_scale=(1, 5))
        trainset = Dataset.load_from_file(handle.name, reader).build_full_trainset()
    algo = SVD(n_factors=rank, n_epochs=epochs, lr_all=lr, reg_all=reg, random_state=0)
    algo.fit(trainset)
    pairs = zip(test.users.tolist(), test.items.tolist(), test.ratings.tolist())
    return accuracy.rmse(algo.test([(str(u), str(i), r) for u, i, r in pairs]), verbose=False)


def test_mf_reaches_surprise_svd_s_test_rmse_on_a_planted_low_rank_set():
    """100,000 synthetic ratings (rank 5 plus noise 0.3), 2 servers and 2 workers, rank 20,
    20 epochs, lr 0.005, reg 0.02: test RMSE within 0.01 of surprise's SVD."""
    proc = run_mpi(4, [*JOB, "--servers", "2", "--synthetic", "100000", "--rank", "20",
                       "--epochs", "20", "--quiet"], timeout=300)
    got = final_metrics(proc)
    train, test = make_ratings(100_000, 2000, 1000, 5, 0.3, 0).data.split(0.2, 0)
    reference = surprise_rmse(train, test, rank=20, epochs=20, lr=0.005, reg=0.02)
    print(f"mpips test RMSE {got['test_rmse']:.4f}, surprise SVD {reference:.4f}, global mean "
          f"{got['baseline_rmse']:.4f}; {got['ratings_per_s']:,.0f} ratings/s")
    assert abs(got["test_rmse"] - reference) <= 0.01
    assert got["test_rmse"] < got["baseline_rmse"] - 0.2
    assert (got["n_train"], got["n_test"], got["workers"], got["servers"]) == (80_000, 20_000,
                                                                               2, 2)
    assert got["train_rmse"][-1] < got["train_rmse"][0] and got["test_mae"] < got["test_rmse"]


def test_ratings_files_train_test_and_a_resume_on_other_servers_end_bit_for_bit(tmp_path):
    """--data/--test-data in the MovieLens layout (with timestamps, '::' too): a BSP run
    stopped after 2 epochs and resumed on 1 server instead of 2 ends with the model of an
    uninterrupted run; a test user never seen in training is scored by the mean."""
    planted = make_ratings(20_000, 400, 200, 3, 0.3, seed=4).data
    train, test = planted.split(0.25, 1)
    train_path, test_path = tmp_path / "u.base", tmp_path / "u.test"
    train_path.write_text("".join(f"{u}\t{i}\t{r:.3f}\t88125{k}\n" for k, (u, i, r) in
                                  enumerate(zip(train.users, train.items, train.ratings))))
    test_path.write_text("".join(f"{u}::{i}::{r:.3f}\n" for u, i, r in
                                 zip(test.users, test.items, test.ratings)) + "99999 1 4.0\n")
    common = [*JOB, "--data", str(train_path), "--test-data", str(test_path), "--rank", "8",
              "--batch-size", "500", "--quiet"]
    whole = final_metrics(run_mpi(4, [*common, "--servers", "2", "--epochs", "4"],
                                  timeout=300))
    assert (whole["n_train"], whole["n_test"]) == (train.n, test.n + 1)
    root = tmp_path / "ck"
    first = final_metrics(run_mpi(4, [*common, "--servers", "2", "--epochs", "2",
                                      "--checkpoint-dir", str(root)], timeout=300))
    resumed = final_metrics(run_mpi(3, [*common, "--servers", "1", "--epochs", "4",
                                        "--checkpoint-dir", str(root), "--resume"],
                                    timeout=300))
    assert first["model_sha256"] != whole["model_sha256"]
    assert resumed["resumed_from_step"] is not None
    assert resumed["model_sha256"] == whole["model_sha256"]
    assert resumed["test_rmse"] == whole["test_rmse"] < whole["baseline_rmse"]


@pytest.mark.parametrize("content, message", [
    ("1 2 4\n3 4\n", "{path}:2: expected 'user item rating [timestamp]', got 2 field(s)"),
    ("1 2 4\n-3 4 5\n", "{path}:2: user id '-3' is not an integer in [0, 2**64)"),
    ("1 2 x\n", "{path}:1: rating 'x' is not a finite number"),
    ("1 2 nan\n", "{path}:1: rating 'nan' is not a finite number"),
])
def test_a_bad_ratings_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "bad.data"
    path.write_text(content)
    proc = run_mpi(3, [*JOB, "--servers", "1", "--data", str(path)], timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message.format(path=path) in proc.stderr and "Traceback" not in proc.stderr


def test_options_that_do_not_go_together_are_refused():
    proc = run_mpi(3, [*JOB, "--servers", "1", "--rule", "adagrad", "--rank", "0"],
                   timeout=120)
    assert proc.returncode == 2
    assert "--rank must be >= 1, got 0" in proc.stderr
    assert "--rule is for --update server" in proc.stderr


@pytest.mark.parametrize("rule, lr", [("sgd", "0.005"), ("adagrad", "0.05")])
def test_server_side_rules_learn_too(rule, lr):
    """--update server: workers push summed gradients of small batches, the servers apply
    sgd or adagrad; SSP with a staleness of 2."""
    proc = run_mpi(4, [*JOB, "--servers", "2", "--synthetic", "20000", "--rank", "8",
                       "--epochs", "5", "--update", "server", "--rule", rule, "--lr", lr,
                       "--batch-size", "64", "--consistency", "ssp", "--staleness", "2",
                       "--quiet"], timeout=300)
    got = final_metrics(proc)
    assert (got["update"], got["rule"], got["consistency"]) == ("server", rule, "ssp:2")
    assert got["test_rmse"] < got["baseline_rmse"] - 0.05, got


def test_h5_data_files_train_exactly_as_their_text(tmp_path):
    """--data/--test-data as .h5 data files (mpips data convert --kind ratings) hold the same
    ratings in the same order: the same split, the same model, the same metrics; a data file
    of another kind is refused in one line."""
    from mpips.ml.csr_write import convert

    planted = make_ratings(3_000, 120, 80, 3, 0.3, seed=6).data
    train, test = planted.split(0.2, 2)
    paths = {}
    for name, part in (("u.base", train), ("u.test", test)):
        write_ratings(part, tmp_path / name)
        paths[name] = convert(tmp_path / name, tmp_path / f"{name}.h5", "ratings").path
    common = [*JOB, "--servers", "1", "--rank", "4", "--epochs", "2", "--batch-size", "200",
              "--quiet"]
    runs = [final_metrics(run_mpi(3, [*common, "--data", base, "--test-data", test_path],
                                  timeout=180))
            for base, test_path in ((tmp_path / "u.base", tmp_path / "u.test"),
                                    (paths["u.base"], paths["u.test"]))]
    text, h5 = runs
    assert h5["model_sha256"] == text["model_sha256"]
    assert (h5["test_rmse"], h5["train_rmse"], h5["n_train"]) == (text["test_rmse"],
                                                                  text["train_rmse"],
                                                                  text["n_train"])
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b\n")
    wrong = convert(corpus, tmp_path / "c.h5", "corpus").path
    proc = run_mpi(3, [*JOB, "--servers", "1", "--data", wrong], timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{wrong}: holds corpus rows, not ratings" in proc.stderr
