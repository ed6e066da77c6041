"""Changes tracked for incremental checkpoints (mpips.store.slice ``track_changes``/``changes``,
mpips.store.sparse_rows, kernels hashindex.collect_flagged / evict_rows / rows.mark_rows):
after any mix of pushes (every push path of a sparse slice), evictions, roll-backs and loads,
``changes`` holds exactly the rows pushed since and the keys evicted since, with their current
values, against a plain-dict model."""
import numpy as np
import pytest

from mpips.core.spec import TableSpec
from mpips.store.dense_slice import DenseSlice
from mpips.store.sparse_slice import SparseSlice

F = np.float32


def sparse(**kw) -> SparseSlice:
    return SparseSlice(TableSpec("w", "sparse", 0, 1, width=2, rule="adagrad",
                                 rule_params={"lr": 0.5}, **kw), 0)


def stored(t: SparseSlice) -> dict[int, np.ndarray]:
    keys, values, state = t.snapshot()
    return {k: np.concatenate([values[i], state["accum"][i]]) for i, k in enumerate(keys.tolist())}


@pytest.mark.parametrize("kw, source", [({}, None), ({}, (0, 0)), ({"evict": "unseen:2"}, None),
                                        ({"admit": "count:2"}, None),
                                        ({"capacity": 150}, (1, 0))])
def test_changes_are_the_rows_pushed_and_the_keys_evicted_since_the_last_save(kw, source):
    rng = np.random.default_rng(3)
    t = sparse(**kw)
    t.settle(0)
    pushed, evicted, last = set(), set(), None
    for clock in range(1, 30):
        if clock in (5, 17):  # a save: tracking restarts
            t.track_changes({"step": clock})
            pushed, evicted = set(), set()
        keys = np.unique(np.concatenate([rng.zipf(1.5, 60).astype(np.uint64) % np.uint64(400),
                                         rng.integers(1000, 2**64, 10, np.uint64)]))
        if source is not None and last is not None and clock % 3 == 0:  # its last chunk again
            keys = last
        before = stored(t)
        t.push_chunk(keys.copy(), rng.standard_normal((keys.size, 2)).astype(F), None, source)
        last = keys
        after = stored(t)
        pushed |= {k for k in keys.tolist() if k in after}
        gone_now = set(after)
        dropped = t.settle(clock)
        now = stored(t)
        assert dropped == len(gone_now) - len(now)
        evicted |= gone_now - set(now)
        assert set(before) <= set(after)
        if t.since is None:
            continue
        keys_c, values, state, removed = t.changes()
        assert keys_c.tolist() == sorted(pushed & set(now)), clock
        assert set(removed.tolist()) == evicted
        for i, k in enumerate(keys_c.tolist()):
            np.testing.assert_array_equal(np.concatenate([values[i], state["accum"][i]]), now[k])


def test_flags_follow_the_rows_that_eviction_moves():
    t = sparse(capacity=3)
    t.track_changes({"step": 1})
    t.settle(0)
    for clock, keys in enumerate(([1], [2], [3], [4], [5]), start=1):
        t.push_chunk(np.array(keys, np.uint64), np.ones((1, 2), F), None)
        t.settle(clock)
    t.track_changes({"step": 2})  # saved: nothing changed since
    t.push_chunk(np.array([3], np.uint64), np.ones((1, 2), F), None)
    t.push_chunk(np.array([6], np.uint64), np.ones((1, 2), F), None)
    assert t.settle(6) == 1  # key 3 is the least recently pushed no longer: 4 goes
    keys, _, _, removed = t.changes()
    assert keys.tolist() == [3, 6] and removed.tolist() == [4]


def test_a_rolled_back_push_leaves_no_new_key_behind_and_load_starts_afresh():
    t = sparse()
    t.push_chunk(np.array([1, 2], np.uint64), np.ones((2, 2), F), None)
    t.track_changes({"step": 1})
    t.begin_undoable_push(3)
    t.push_chunk(np.array([2, 7, 9], np.uint64), np.ones((3, 2), F), None)
    t.roll_back_push()
    t.finish_push()
    keys, _, _, removed = t.changes()
    assert set(keys.tolist()) <= {2} and removed.size == 0  # key 2 may count: same value
    t.push_chunk(np.array([8], np.uint64), np.ones((1, 2), F), None)  # reuses a freed row
    assert t.changes()[0].tolist() in ([8], [2, 8])
    t.load(np.array([4, 5], np.uint64), np.zeros((2, 2), F), {"accum": np.zeros((2, 2), F)})
    assert t.changes()[0].size == 0


def test_dense_changes_are_the_rows_pushed_by_runs_and_by_scattered_keys():
    spec = TableSpec("d", "dense", 0, 2, size=100, rule="sgd", rule_params={"lr": 1.0})
    t = DenseSlice(spec, 1, None)  # keys [50, 100)
    t.push_chunk(np.array([51], np.uint64), np.ones((1, 1), F), None)
    t.track_changes({"step": 3})
    t.push_chunk(np.arange(60, 64, dtype=np.uint64), np.ones((4, 1), F), None)
    t.push_chunk(np.array([70, 90], np.uint64), np.ones((2, 1), F), None)
    keys, values, state, removed = t.changes()
    assert keys.tolist() == [60, 61, 62, 63, 70, 90] and removed.size == 0
    np.testing.assert_array_equal(values, np.full((6, 1), -1, F))
    t.track_changes({"step": 4})
    assert t.changes()[0].size == 0
