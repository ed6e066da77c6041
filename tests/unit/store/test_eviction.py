"""Eviction of sparse rows (mpips.core.eviction, mpips.store.sparse_rows, kernel
hashindex.evict_rows): rows dropped by age or capacity between requests, the index and the
moved rows kept consistent, against a plain-dict model."""
import numpy as np
import pytest

from mpips.core.eviction import EvictPolicy, parse_eviction
from mpips.core.spec import TableSpec
from mpips.errors import TableError
from mpips.store.sparse_slice import SparseSlice
from mpips.store.sparse_rows import SparseRows

F = np.float32


@pytest.mark.parametrize("evict, capacity, policy", [
    ("unseen:5", 0, EvictPolicy(5, None)), ("", 100, EvictPolicy(None, 100)),
    ("unseen:1", 7, EvictPolicy(1, 7)), ("", 0, None), (None, None, None)])
def test_policies(evict, capacity, policy):
    assert parse_eviction(evict, capacity) == policy


@pytest.mark.parametrize("evict, capacity, message", [
    ("unseen:0", 0, "evict must be 'unseen:STEPS' \\(an integer STEPS >= 1\\), got 'unseen:0'"),
    ("lru", 0, "evict must be 'unseen:STEPS'"), ("unseen:x", 0, "evict must be"),
    ("", -3, "capacity must be an integer >= 1 \\(rows per server\\), got -3"),
    ("", 2.5, "capacity must be an integer >= 1"), ("", True, "capacity must be")])
def test_bad_policies_are_refused_naming_table_and_option(evict, capacity, message):
    with pytest.raises(TableError, match=f"^table 'w': {message}"):
        TableSpec("w", "sparse", 0, 1, evict=evict, capacity=capacity)


def test_dense_tables_do_not_evict():
    with pytest.raises(TableError, match="evict and capacity are for sparse tables"):
        TableSpec("d", "dense", 0, 1, size=10, capacity=5)


def test_evicting_random_rows_keeps_the_index_and_every_other_row_right():
    """Random inserts and evictions; after each, every stored key finds its own row
    (values, key, stamp), evicted keys are gone, and rows stay 0..size-1."""
    rng = np.random.default_rng(8)
    store = SparseRows(2, 1, 0.0, "t")
    store.track_ages()
    model: dict[int, tuple[np.ndarray, int]] = {}
    for round_ in range(40):
        keys = np.unique(rng.integers(0, 2**64, int(rng.integers(1, 300)), np.uint64,
                                      endpoint=False))
        rows = np.empty(keys.size, np.int64)
        store.reserve(keys.size)
        store.find_or_insert(keys, rows)
        packed = rng.standard_normal((keys.size, 4)).astype(F)
        store.data[rows] = packed
        store.touch(rows, round_)
        for k, p in zip(keys.tolist(), packed):
            model[k] = (p, round_)
        if store.size and rng.random() < 0.7:
            victims = rng.choice(store.size, int(rng.integers(1, store.size + 1)), replace=False)
            for r in victims:
                del model[int(store.row_keys[r])]
            assert store.evict(victims) == victims.size
        stored_keys, stored_rows = store.items()
        assert sorted(stored_keys.tolist()) == sorted(model) and store.size == len(model)
        assert sorted(stored_rows.tolist()) == list(range(store.size))
        for k, r in zip(stored_keys.tolist(), stored_rows.tolist()):
            assert np.array_equal(store.data[r], model[k][0]) and store.row_keys[r] == k
            assert store.stamps[r] == model[k][1]


def table(**kw) -> SparseSlice:
    return SparseSlice(TableSpec("w", "sparse", 0, 1, rule="sgd", rule_params={"lr": 1.0},
                                 **kw), 0)


def push(t: SparseSlice, keys) -> None:
    keys = np.asarray(keys, np.uint64)
    t.push_chunk(keys, np.ones((keys.size, 1), F), None)


def pull(t: SparseSlice, keys) -> list[float]:
    keys = np.asarray(keys, np.uint64)
    return t.read_chunk(keys, None, lambda shape: np.empty(shape, F))[0].ravel().tolist()


def test_rows_not_pushed_for_steps_clocks_are_dropped_at_a_settle_and_come_back_fresh():
    t = table(evict="unseen:2")
    t.settle(0)
    push(t, [1, 2, 3])
    t.settle(1)
    push(t, [2])
    assert t.settle(2) == 0 and t.num_stored == 3  # clocks 0 and 1 are within the last two
    push(t, [3])
    assert t.settle(3) == 1 and t.num_stored == 2  # key 1: last pushed at clock 0
    assert pull(t, [1, 2, 3]) == [0.0, -2.0, -2.0]
    push(t, [1])  # a fresh row
    assert pull(t, [1]) == [-1.0] and t.evicted == 1
    assert t.settle(3) == 0  # the same clock again: no new scan


def test_capacity_drops_the_least_recently_pushed_rows():
    t = table(capacity=4)
    for clock, keys in enumerate(([1], [2], [3, 4], [1], [5])):
        assert t.settle(clock) == 0
        push(t, keys)
    assert t.num_stored == 5  # a request may bring its new keys on top
    assert t.settle(5) == 1 and t.num_stored == 4
    assert pull(t, [1, 2, 3, 4, 5]) == [-2.0, 0.0, -1.0, -1.0, -1.0]  # 2: pushed longest ago


def test_rows_loaded_from_a_checkpoint_count_as_pushed_at_the_next_settle():
    t = table(evict="unseen:3")
    keys = np.array([7, 8], np.uint64)
    t.load(keys, np.zeros((2, 1), F), {})
    assert t.settle(100) == 0 and t.num_stored == 2  # not stamped 0: pushed "now"
    assert t.settle(104) == 2


def test_an_undoable_push_is_rolled_back_exactly_in_a_table_that_evicts():
    t = table(evict="unseen:1", capacity=10)
    push(t, [1, 2])
    before = pull(t, [1, 2, 3])
    t.begin_undoable_push(3)
    push(t, [1, 2, 3])
    t.roll_back_push()
    assert pull(t, [1, 2, 3]) == before and t.num_stored == 2


def test_the_size_history_keeps_the_newest_clocks_only(monkeypatch):
    """A job that runs for months settles millions of clocks: the slice remembers a bounded
    number of (clock, rows) pairs, the newest."""
    from mpips.store import sparse_slice

    monkeypatch.setattr(sparse_slice, "SIZE_HISTORY", 5)
    t = table(evict="unseen:100")
    for clock in range(12):
        push(t, [clock])
        t.settle(clock)
    assert [c for c, _ in t.sizes] == [7, 8, 9, 10, 11]
    assert [n for _, n in t.sizes] == [8, 9, 10, 11, 12]
