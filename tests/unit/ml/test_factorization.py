"""Matrix factorization math (mpips.ml.factorization, kernels mpips.kernels.factors) and ratings
files (mpips.ml.ratings) against plain NumPy/Python references."""
import numpy as np
import pytest

from mpips.errors import RatingsFormatError
from mpips.ml import factorization as mf
from mpips.ml.ratings import RatingSet, make_ratings, read_ratings, write_ratings


def batch_of(seed=0, n=300, users=20, items=15):
    rng = np.random.default_rng(seed)
    return RatingSet(rng.integers(0, users, n), rng.integers(100, 100 + items, n),
                     rng.uniform(1, 5, n))


def reference_sgd(mb, users, items, mu, lr, reg):
    """surprise's SVD.sgd inner loop, in float32 like the kernel."""
    users, items = users.copy(), items.copy()
    lr, reg, sse = np.float32(lr), np.float32(reg), 0.0
    k = users.shape[1] - 1
    for u, i, r in zip(mb.users, mb.items, mb.ratings):
        err = np.float32(r - (np.float32(mu) + users[u, k] + items[i, k]
                              + np.dot(users[u, :k], items[i, :k])))
        sse += float(err) ** 2
        users[u, k] += lr * (err - reg * users[u, k])
        items[i, k] += lr * (err - reg * items[i, k])
        pu, qi = users[u, :k].copy(), items[i, :k].copy()
        users[u, :k] += lr * (err * qi - reg * pu)
        items[i, :k] += lr * (err * pu - reg * qi)
    return sse, users, items


def test_sequential_sgd_is_surprises_update_rating_after_rating():
    mb = mf.minibatch(batch_of())
    users = mf.initial_rows(mb.user_keys, 4, 0.1, 7)
    items = mf.initial_rows(mb.item_keys, 4, 0.1, 7)
    sse, du, di = mf.sequential_sgd(mb, users, items, 3.0, 0.01, 0.05)
    ref_sse, ru, ri = reference_sgd(mb, users, items, 3.0, 0.01, 0.05)
    assert sse == pytest.approx(ref_sse, rel=1e-4)
    np.testing.assert_allclose(users + du, ru, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(items + di, ri, rtol=1e-4, atol=1e-6)


def test_summed_gradients_are_those_of_the_squared_error_plus_l2_per_rating():
    mb = mf.minibatch(batch_of(1, n=50))
    users = mf.initial_rows(mb.user_keys, 3, 0.3, 1)
    items = mf.initial_rows(mb.item_keys, 3, 0.3, 2)
    items[:, 3] = 0.2
    sse, gu, gi = mf.gradients(mb, users, items, 2.5, 0.1)
    want_u, want_i, want_sse = np.zeros_like(users), np.zeros_like(items), 0.0
    for u, i, r in zip(mb.users, mb.items, mb.ratings):
        err = r - (2.5 + users[u, 3] + items[i, 3] + users[u, :3] @ items[i, :3])
        want_sse += err ** 2
        want_u[u, :3] += 0.1 * users[u, :3] - err * items[i, :3]
        want_i[i, :3] += 0.1 * items[i, :3] - err * users[u, :3]
        want_u[u, 3] += 0.1 * users[u, 3] - err
        want_i[i, 3] += 0.1 * items[i, 3] - err
    assert sse == pytest.approx(want_sse, rel=1e-5)
    np.testing.assert_allclose(gu, want_u, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gi, want_i, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit the batch"):
        mf.gradients(mb, users[:-1], items, 2.5, 0.1)


def test_initial_rows_are_a_fixed_normal_function_of_key_column_and_seed():
    keys = np.arange(20000, dtype=np.uint64) * np.uint64(2**40 + 7)
    rows = mf.initial_rows(keys, 8, 0.1, 3)
    assert rows.shape == (20000, 9) and not rows[:, 8].any()
    assert abs(rows[:, :8].std() - 0.1) < 0.002 and abs(rows[:, :8].mean()) < 0.002
    np.testing.assert_array_equal(mf.initial_rows(keys[::-1], 8, 0.1, 3), rows[::-1])
    assert not np.array_equal(mf.initial_rows(keys, 8, 0.1, 4), rows)
    assert np.corrcoef(rows[:, 0], rows[:, 1])[0, 1] < 0.03
    assert not mf.initial_rows(keys[:3], 8, 0.0, 3).any()


def test_predictions_are_clipped_and_metrics_are_plain():
    mb = mf.minibatch(RatingSet([1, 2], [5, 5], [1.0, 5.0]))
    users = np.array([[0.0, 3.0], [0.0, -9.0]], np.float32)
    items = np.zeros((1, 2), np.float32)
    np.testing.assert_array_equal(mf.predict(mb, users, items, 3.0, 1.0, 5.0), [5.0, 1.0])
    assert mf.rmse([1, 3], np.array([2.0, 3.0])) == pytest.approx(np.sqrt(0.5))
    assert mf.mae([1, 3], np.array([2.0, 5.0])) == 1.5


def test_ratings_files_round_trip_and_bad_lines_name_their_place(tmp_path):
    data = make_ratings(500, 50, 30, 2, 0.1, seed=2).data
    path = tmp_path / "r.tsv"
    write_ratings(data, path)
    back = read_ratings(path)
    np.testing.assert_array_equal(back.users, data.users)
    np.testing.assert_array_equal(back.ratings, data.ratings)
    (tmp_path / "ml.dat").write_text("# a comment\n\n1::2::5::978300760\n18446744073709551615 3 1\n")
    got = read_ratings(tmp_path / "ml.dat")
    assert got.users.tolist() == [1, 2**64 - 1] and got.ratings.tolist() == [5.0, 1.0]
    for text, message in [("1 2\n", "1: expected 'user item rating"),
                          ("1 2 3\n18446744073709551616 1 1\n", "2: user id"),
                          ("1 b 3\n", "1: item id 'b'"), ("1 2 inf\n", "1: rating 'inf'"),
                          (b"1 2 \xff\n", "1: bytes that are not UTF-8")]:
        bad = tmp_path / "bad"
        bad.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(RatingsFormatError, match=f"^{bad}:{message}"):
            read_ratings(bad)


def test_a_planted_set_is_low_rank_plus_noise_in_range():
    planted = make_ratings(20000, 300, 200, 4, 0.2, seed=1)
    r = planted.data
    assert r.n == 20000 and 1.0 <= r.ratings.min() and r.ratings.max() <= 5.0
    counts = np.bincount(r.items.astype(np.int64), minlength=200)
    assert counts.max() > 10 * np.median(counts)  # a heavy tail of popular items
    train, test = r.split(0.25, 3)
    assert (train.n, test.n) == (15000, 5000)
    assert [b.n for b in train.shard(1, 4).batches(3)] == [1250, 1250, 1250]
    with pytest.raises(ValueError, match="rank must be >= 1"):
        make_ratings(10, rank=0)
