"""The hash-indexed sparse store (mpips.store.sparse_rows, mpips.kernels.hashindex) and the sparse
slice on top of it (mpips.store.sparse_slice.SparseSlice) against a plain-dict model: random pushes,
pulls, inserts, growth, rollbacks and cached key lists, with keys that collide on purpose."""
from __future__ import annotations

import numpy as np
import pytest

from mpips.errors import MessageError
from mpips.kernels import hashindex as hx
from mpips.kernels.placement import mix_keys
from mpips.core.partition import positions
from mpips.store.sparse_rows import MIN_SLOTS, SparseRows
from mpips.core.spec import TableSpec
from mpips.store.sparse_slice import SparseSlice

MASK = 2**64 - 1
F = np.float32


def mix64(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _unshift(x: int, s: int) -> int:
    """Inverse of x ^ (x >> s) on 64 bits."""
    y = x
    for _ in range(64 // s + 1):
        y = x ^ (y >> s)
    return y & MASK


def unmix64(y: int) -> int:
    """The key whose mix64 is ``y`` (mix64 is a bijection)."""
    y = _unshift(y, 31)
    y = (y * pow(0x94D049BB133111EB, -1, 2**64)) & MASK
    y = _unshift(y, 27)
    y = (y * pow(0xBF58476D1CE4E5B9, -1, 2**64)) & MASK
    return _unshift(y, 30)


def colliding_keys(n: int, home: int = 5, bits: int = 40) -> list[int]:
    """``n`` keys whose mix64 has the same low ``bits`` bits: one home slot in any index of at
    most 2**bits slots, so they form one long probe run."""
    return [unmix64((i << bits) | home) for i in range(1, n + 1)]


def test_mix64_kernel_matches_the_python_bijection():
    keys = np.array([0, 1, 2, 12345, 2**63, MASK] + colliding_keys(5), np.uint64)
    out = np.empty_like(keys)
    mix_keys(keys, out)
    assert out.tolist() == [mix64(int(k)) for k in keys]
    assert [unmix64(int(m)) for m in out] == keys.tolist()
    assert len({int(m) & 1023 for m in out[-5:]}) == 1  # they do collide


# ----------------------------------------------------------------------------- a dict model

class Model:
    """What a sparse table must hold: key -> (values, state rows) in float32, AdaGrad rule."""

    def __init__(self, width: int, init: float, lr: float = 0.1, eps: float = 1e-8):
        self.width, self.init, self.lr, self.eps = width, F(init), F(lr), F(eps)
        self.rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def push(self, keys, grads) -> None:
        for k, g in zip(keys.tolist(), grads):
            v, a = self.rows.get(k, (np.full(self.width, self.init, F), np.zeros(self.width, F)))
            a = (a + g * g).astype(F)
            v = (v - self.lr * g / (np.sqrt(a) + self.eps)).astype(F)
            self.rows[k] = (v, a)

    def pull(self, keys) -> np.ndarray:
        out = np.full((keys.size, self.width), self.init, F)
        for i, k in enumerate(keys.tolist()):
            if k in self.rows:
                out[i] = self.rows[k][0]
        return out

    def copy(self) -> dict:
        return {k: (v.copy(), a.copy()) for k, (v, a) in self.rows.items()}


def stored(store: SparseRows) -> dict:
    keys, rows = store.items()
    w = store.width
    return {int(k): (store.data[r, :w].copy(), store.data[r, w:2 * w].copy())
            for k, r in zip(keys, rows)}


def assert_same(store_rows: dict, model_rows: dict) -> None:
    assert store_rows.keys() == model_rows.keys()
    for k, (v, a) in model_rows.items():
        sv, sa = store_rows[k]
        assert np.array_equal(sv.view(np.uint32), v.view(np.uint32)), k
        assert np.array_equal(sa.view(np.uint32), a.view(np.uint32)), k


ADAGRAD = (hx.RULE_ADAGRAD, F(0.1), F(1e-8))


def random_keys(rng, pool: np.ndarray, n: int) -> np.ndarray:
    return np.unique(rng.choice(pool, size=min(n, pool.size), replace=False))


# -------------------------------------------------------------------------- SparseRows

@pytest.mark.parametrize("width", [1, 3])
def test_random_pushes_pulls_growth_and_removals_match_a_dict(width):
    rng = np.random.default_rng(width)
    pool = np.unique(np.concatenate([
        np.array(colliding_keys(300), np.uint64),  # one probe run of 300 keys
        np.arange(0, 500, dtype=np.uint64),  # small integer ids
        np.array([MASK, MASK - 1, 2**63], np.uint64),
        rng.integers(0, 2**64, 3000, np.uint64, endpoint=False)]))
    store, model = SparseRows(width, 1, 0.25, "w"), Model(width, 0.25)
    for step in range(300):
        keys = random_keys(rng, pool, int(rng.integers(1, 400)))
        action = rng.random()
        if action < 0.5:
            grads = rng.standard_normal((keys.size, width)).astype(F)
            rows = np.empty(keys.size, np.int64)
            store.push(keys, grads, rows, ADAGRAD)
            model.push(keys, grads)
            found = np.empty(keys.size, np.int64)
            assert store.find(keys, found) == 0 and np.array_equal(found, rows)
        elif action < 0.8:
            out = np.empty((keys.size, width), F)
            rows = np.empty(keys.size, np.int64)
            absent = store.pull(keys, out, rows)
            assert absent == sum(int(k) not in model.rows for k in keys)
            assert np.array_equal(out, model.pull(keys))
            gathered = np.empty_like(out)
            store.gather_at(rows, gathered)
            assert np.array_equal(gathered, out)
        else:  # insert new keys, then take them back out (a rolled-back push)
            before, size = model.copy(), store.size
            rows = np.empty(keys.size, np.int64)
            new = store.find_or_insert(keys, rows)
            assert set(new.tolist()) == {int(k) for k in keys} - before.keys()
            assert store.size == size + new.size
            store.remove_newest(new)
            assert store.size == size
            assert_same(stored(store), before)
    assert_same(stored(store), model.rows)
    assert store.slots.size > MIN_SLOTS  # the index grew on the way
    assert store.size <= 0.75 * store.slots.size


def test_removing_from_the_middle_of_a_collision_run_keeps_the_rest_reachable():
    store = SparseRows(1, 0, 0.0)
    keys = np.array(colliding_keys(40), np.uint64)
    rows = np.empty(keys.size, np.int64)
    store.find_or_insert(keys, rows)
    tail = keys[25:]  # the newest rows, wherever they sit in the probe run
    store.remove_newest(tail)
    found = np.empty(keys.size, np.int64)
    assert store.find(keys, found) == tail.size
    assert np.array_equal(found[:25], np.arange(25)) and (found[25:] == -1).all()
    # insert them again: same rows as before (rows are reused from the end)
    store.find_or_insert(tail, np.empty(tail.size, np.int64))
    assert store.find(keys, found) == 0 and sorted(found.tolist()) == list(range(40))


def test_rows_never_move_when_the_index_and_the_rows_grow():
    store = SparseRows(2, 1, 0.0)
    first = np.arange(10, dtype=np.uint64)
    rows = np.empty(10, np.int64)
    store.push(first, np.ones((10, 2), F), rows, ADAGRAD)
    more = np.arange(100, 100 + 20 * MIN_SLOTS, dtype=np.uint64)
    store.push(more, np.ones((more.size, 2), F), np.empty(more.size, np.int64), ADAGRAD)
    again = np.empty(10, np.int64)
    assert store.find(first, again) == 0 and np.array_equal(again, rows)
    assert store.generation == 0  # growth alone invalidates no cached rows


def test_load_put_and_read_round_trip():
    store = SparseRows(2, 1, 0.5)
    keys = np.array([MASK, 0, 77] + colliding_keys(5), np.uint64)
    packed = np.arange(keys.size * 4, dtype=F).reshape(-1, 4)
    store.load(keys, packed)
    assert store.generation == 1 and store.size == keys.size
    assert np.array_equal(store.read(keys[::-1]), packed[::-1])
    store.put(keys[:2], np.zeros((2, 4), F))
    assert store.size == keys.size and not store.read(keys[:2]).any()
    with pytest.raises(KeyError):
        store.read(np.array([5], np.uint64))


def test_too_many_rows_for_one_slice_is_a_named_error(monkeypatch):
    import mpips.store.sparse_rows as sr

    monkeypatch.setattr(sr, "MAX_ROWS", 100)
    store = SparseRows(1, 0, 0.0, "huge")
    with pytest.raises(Exception, match="table 'huge'.*cannot hold 101 rows.*more servers"):
        store.reserve(101)


# -------------------------------------------------------------------------- SparseSlice

def sparse_spec(**kw) -> TableSpec:
    fields = dict(name="w", kind="sparse", table_id=0, num_segments=1, width=2, rule="adagrad",
                  rule_params={"lr": 0.1}, init=0.25)
    fields.update(kw)
    return TableSpec(**fields)


def slice_rows(table: SparseSlice) -> dict:
    return stored(table.store)


def test_slice_replay_with_undo_rollbacks_and_cached_key_lists():
    """Random chunked pushes (some undoable and rolled back), pulls, and repeated key lists
    through the request cache, bit for bit against the dict model."""
    rng = np.random.default_rng(11)
    table = SparseSlice(sparse_spec(), 0)
    model = Model(2, 0.25)
    pool = np.unique(np.concatenate([np.array(colliding_keys(200), np.uint64),
                                     rng.integers(0, 2**64, 2000, np.uint64, endpoint=False)]))
    last: dict[int, np.ndarray] = {}
    for step in range(400):
        worker = int(rng.integers(0, 3))
        if worker in last and rng.random() < 0.4:
            keys = last[worker]  # the same list again: served from the cache
        else:
            keys = random_keys(rng, pool, int(rng.integers(1, 200)))
        last[worker] = keys
        buf = table.receive_buffer(keys.size)
        buf[:] = keys
        source = (worker, 0)
        if rng.random() < 0.4:
            out, _ = table.read_chunk(buf, None, lambda shape: np.empty(shape, F), source)
            assert np.array_equal(out, model.pull(keys))
            continue
        grads = rng.standard_normal((keys.size, 2)).astype(F)
        if rng.random() < 0.3:  # checked while it travels: undoable, kept or rolled back
            before = model.copy()
            table.begin_undoable_push(keys.size)
            half = keys.size // 2
            if half:
                table.push_chunk(keys[:half].copy(), grads[:half], None)
            table.push_chunk(buf[half:], grads[half:], int(keys[half - 1]) if half else None,
                             source)
            if rng.random() < 0.5:
                table.roll_back_push()
                assert_same(slice_rows(table), before)
                continue
            table.keep_push()
        else:
            table.push_chunk(buf, grads, None, source)
        model.push(keys, grads)
    assert_same(slice_rows(table), model.rows)
    assert table.cache.hits > 50 and table.cache.misses > 50


def test_a_cached_pull_of_absent_keys_is_not_reused_after_they_are_inserted():
    table = SparseSlice(sparse_spec(), 0)
    keys = np.array([3, 9], np.uint64)
    first = table.receive_buffer(2)
    first[:] = keys
    out, _ = table.read_chunk(first, None, lambda s: np.empty(s, F), (0, 0))
    assert (out == F(0.25)).all()
    table.push_whole(keys, np.ones((2, 2), F))  # another worker inserts them
    again = table.receive_buffer(2)
    again[:] = keys
    out, _ = table.read_chunk(again, None, lambda s: np.empty(s, F), (0, 0))
    assert (out < F(0.25)).all()


def test_a_push_after_a_pull_of_absent_keys_keeps_its_own_buffers():
    """A pull of new keys, then the push of the same keys (the pull's rows cannot serve it),
    with another worker's chunks in between: every chunk sees its own keys. (Such a push
    once kept a receive buffer it had also handed back; another worker's chunk, received
    into it, rewrote the kept list, and a later chunk matched it and was applied to rows of
    other keys. This sequence is the one a random search found.)"""
    table = SparseSlice(sparse_spec(), 0)
    model = Model(2, 0.25)
    steps = [(1, [3, 8, 13], True), (1, [3, 8, 13], True), (1, [13, 33, 38], False),
             (1, [8, 30, 43], False), (1, [8, 30, 43], True), (0, [8, 30, 43], True),
             (1, [13, 33, 38], True), (1, [3, 8, 13], True), (1, [3, 8, 13], False)]
    for worker, keys, push in steps:
        keys = np.array(keys, np.uint64)
        buf = table.receive_buffer(keys.size)
        buf[:] = keys
        if push:
            grads = np.full((keys.size, 2), 0.5, F)
            table.push_chunk(buf, grads, None, (worker, 0))
            model.push(keys, grads)
        else:
            out, _ = table.read_chunk(buf, None, lambda s: np.empty(s, F), (worker, 0))
            assert np.array_equal(out, model.pull(keys))
    assert_same(slice_rows(table), model.rows)


def test_bad_chunks_change_nothing_even_when_they_repeat_a_cached_list():
    table = SparseSlice(sparse_spec(), 0)
    keys = np.array([5, 6, 7], np.uint64)
    buf = table.receive_buffer(3)
    buf[:] = keys
    table.push_chunk(buf, np.ones((3, 2), F), None, (0, 0))
    before = slice_rows(table)
    again = table.receive_buffer(3)
    again[:] = keys
    with pytest.raises(MessageError, match="not greater than the key before"):
        table.push_chunk(again, np.ones((3, 2), F), 6, (0, 1))  # does not follow chunk 0
    for bad in ([7, 5, 6], [5, 5, 6]):
        with pytest.raises(MessageError, match="not greater"):
            table.push_chunk(np.array(bad, np.uint64), np.ones((3, 2), F), None)
    assert_same(slice_rows(table), before)


def test_hash_placement_refuses_keys_of_another_server_and_spreads_small_ids():
    spec = sparse_spec(num_segments=2)
    table = SparseSlice(spec, 0)
    ids = np.arange(100_000, dtype=np.uint64)  # LIBSVM-style feature ids
    mine = ids[positions(ids, True) < np.uint64(2**63)]
    assert 0.45 < mine.size / ids.size < 0.55
    table.push_whole(mine, np.ones((mine.size, 2), F))
    others = np.setdiff1d(ids[:50], mine)
    with pytest.raises(MessageError, match="hashed position"):
        table.push_whole(others, np.ones((others.size, 2), F))
    parts = spec.split(ids)
    assert [s for s, _ in parts] == [0, 1]
    assert np.array_equal(ids[parts[0][1]], mine)
    assert all(np.all(np.diff(ids[p].astype(np.int64)) > 0) for _, p in parts)
    ranged = sparse_spec(num_segments=2, placement="range")
    assert [(s, p) for s, p in ranged.split(ids)] == [(0, slice(0, ids.size))]


def test_snapshot_and_load_round_trip_a_slice():
    table = SparseSlice(sparse_spec(), 0)
    keys = np.array([MASK, 1, 2**40] + colliding_keys(10), np.uint64)
    table.push_whole(np.sort(keys), np.ones((keys.size, 2), F))
    saved_keys, values, state = table.snapshot()
    assert np.array_equal(saved_keys, np.sort(keys)) and set(state) == {"accum"}
    other = SparseSlice(sparse_spec(), 0)
    other.load(saved_keys, values, state)
    assert_same(slice_rows(other), slice_rows(table))


@pytest.mark.parametrize("rule, params, heat", [("adagrad", {"lr": 0.1}, "accum"),
                                                 ("ftrl", {}, "n"), ("sgd", {"lr": 0.1}, None)])
def test_a_loaded_slice_numbers_its_rows_hottest_first(rule, params, heat):
    """A load (a restore) inserts keys by decreasing power of two of their sum of squared
    gradients, so the rows of keys pushed most lie together (within a power of two, in the
    order given); rules without such a sum keep the order given; either way every key keeps
    its values and state."""
    rng = np.random.default_rng(9)
    keys = np.sort(rng.integers(0, 2**64, 500, np.uint64, endpoint=False))
    spec = sparse_spec(rule=rule, rule_params=params)
    names = SparseSlice(spec, 0).rule.state_names
    values = rng.standard_normal((keys.size, 2)).astype(F)
    state = {n: np.exp(rng.normal(0.0, 4.0, (keys.size, 2))).astype(F) for n in names}
    if heat is not None:
        state[heat][::5] = 0.0  # a fifth never pushed: they come last, in key order
    table = SparseSlice(spec, 0)
    table.load(keys, values, state)
    rows = np.empty(keys.size, np.int64)
    assert table.store.find(keys, rows) == 0
    expected = np.arange(keys.size)
    if heat is not None:
        total = state[heat].sum(axis=1, dtype=F)
        power = np.where(total > 0, np.frexp(total)[1], -1000)
        assert np.unique(power).size > 10
        expected[np.argsort(-power, kind="stable")] = np.arange(keys.size)
        assert rows[0::5].min() == keys.size - keys[0::5].size
        assert np.all(np.diff(rows[0::5]) > 0)
        hottest = np.argmax(total)
        assert rows[hottest] < keys.size // 20
    assert np.array_equal(rows, expected)
    saved_keys, saved_values, saved_state = table.snapshot()
    assert np.array_equal(saved_keys, keys) and np.array_equal(saved_values, values)
    assert all(np.array_equal(saved_state[n], state[n]) for n in names)


def test_an_ftrl_slice_keeps_the_reference_weights_and_state_and_rolls_back_exactly():
    """FTRL has no store kernel: the slice finds the rows, then the rule updates the strided
    views of its row array (values, z, n side by side); bit for bit the float32 reference
    (mpips.kernels.reference.apply_ftrl) on a dict of rows, a rolled-back push included."""
    from mpips.kernels import reference

    rng = np.random.default_rng(4)
    params = {"alpha": 0.2, "beta": 1.0, "l1": 0.3, "l2": 0.1}
    table = SparseSlice(sparse_spec(rule="ftrl", rule_params=params, init=0.0), 0)
    model: dict[int, np.ndarray] = {}  # key -> [w, z, n] rows of width 2
    pool = rng.integers(0, 2**64, 300, np.uint64, endpoint=False)
    for step in range(60):
        keys = random_keys(rng, pool, int(rng.integers(1, 80)))
        grads = rng.standard_normal((keys.size, 2)).astype(F)
        if step % 7 == 3:  # an undoable push, rolled back: nothing changes
            before = stored_ftrl(table)
            table.begin_undoable_push(keys.size)
            table.push_chunk(keys, grads, None)
            table.roll_back_push()
            assert stored_ftrl(table).keys() == before.keys()
            for k, rows in before.items():
                np.testing.assert_array_equal(stored_ftrl(table)[k], rows)
            continue
        table.push_chunk(keys, grads, None)
        for key, g in zip(keys.tolist(), grads):
            w, z, n = model.setdefault(key, np.zeros((3, 1, 2), F))
            reference.apply_ftrl(w, z, n, np.array([0]), g[None, :], *params.values())
    got = stored_ftrl(table)
    assert got.keys() == model.keys()
    for key, rows in model.items():
        np.testing.assert_array_equal(got[key], rows)
    assert any((rows[0] == 0).any() for rows in model.values())  # l1 kept some weights at 0


def stored_ftrl(table: SparseSlice) -> dict:
    keys, rows = table.store.items()
    return {int(k): table.store.data[r].reshape(3, 1, 2).copy() for k, r in zip(keys, rows)}


def test_with_admission_a_key_gets_its_row_at_its_kth_push_and_pulls_init_until_then():
    """admit="count:2", SGD lr 1: the first push of a key only counts it (its gradient is
    dropped, a pull reads init); the second gives it its row and applies that push."""
    table = SparseSlice(sparse_spec(rule="sgd", rule_params={"lr": 1.0}, admit="count:2",
                                    width=1), 0)
    keys, ones = np.array([4, 9], np.uint64), np.ones((2, 1), F)

    def pull(k):
        return table.read_chunk(k, None, lambda shape: np.empty(shape, F))[0].ravel().tolist()

    rows = table.push_chunk(keys.copy(), ones, None)
    assert rows.tolist() == [-1, -1] and table.num_stored == 0 and pull(keys) == [0.25, 0.25]
    both = np.array([4, 9, 11], np.uint64)
    rows = table.push_chunk(both, np.full((3, 1), 2.0, F), None)
    assert (rows[:2] >= 0).all() and rows[2] == -1 and table.num_stored == 2
    assert pull(both) == [0.25 - 2, 0.25 - 2, 0.25]
    assert (table.admission.admitted, table.admission.deferred) == (2, 3)


def test_a_rolled_back_push_with_admission_leaves_rows_and_counts_as_they_were():
    table = SparseSlice(sparse_spec(admit="count:2"), 0)
    keys = np.arange(10, 30, dtype=np.uint64)
    grads = np.ones((keys.size, 2), F)
    table.push_chunk(keys[:10].copy(), grads[:10], None)  # counted once: no rows yet
    counts, rows_before = table.admission.counts.copy(), slice_rows(table)
    table.begin_undoable_push(keys.size)
    table.push_chunk(keys.copy(), grads, None)  # admits keys[:10], counts keys[10:]
    assert table.num_stored == 10
    table.roll_back_push()
    assert table.num_stored == 0 and slice_rows(table) == rows_before
    assert np.array_equal(table.admission.counts, counts)
    table.begin_undoable_push(keys.size)
    table.push_chunk(keys.copy(), grads, None)
    table.keep_push()
    assert table.num_stored == 10
