"""Feature admission (mpips.core.admission, kernels in mpips.kernels.sketch): the policy text,
the count-min sketch's estimates, the decisions, their undo, and merging saved sketches."""
import numpy as np
import pytest

from mpips.core.admission import Admission, AdmitPolicy, parse_admit
from mpips.core.spec import TableSpec
from mpips.errors import TableError


@pytest.mark.parametrize("text, policy", [("count:2", AdmitPolicy("count", 2)),
                                          ("prob:0.25", AdmitPolicy("prob", 0.25)),
                                          ("prob:1", AdmitPolicy("prob", 1.0)),
                                          ("", None), (None, None)])
def test_policies(text, policy):
    assert parse_admit(text) == policy
    if policy is not None:
        assert parse_admit(str(policy)) == policy


@pytest.mark.parametrize("text", ["count:0", "count:1.5", "count:", "prob:0", "prob:1.5",
                                  "prob:nan", "often", "count:two", 3])
def test_bad_policies_say_what_is_accepted(text):
    with pytest.raises(ValueError, match=r"admit must be 'count:K' \(an integer K >= 1\) or "
                                         r"'prob:P' \(0 < P <= 1\), got"):
        parse_admit(text)


def test_a_table_refuses_a_bad_admit_naming_table_and_option():
    with pytest.raises(TableError, match=r"^table 'w': admit must be .*got 'count:0'$"):
        TableSpec("w", "sparse", 0, 1, admit="count:0")
    with pytest.raises(TableError, match=r"^table 'd': admit is for sparse tables"):
        TableSpec("d", "dense", 0, 1, size=10, admit="count:2")
    assert TableSpec("w", "sparse", 0, 1, admit="count:3").admission == AdmitPolicy("count", 3)


def absent(n: int) -> np.ndarray:
    return np.full(n, -1, np.int64)


def test_a_key_is_admitted_at_its_kth_push_and_stored_keys_are_not_counted():
    admission = Admission(parse_admit("count:3"), shape=(4, 1 << 12))
    keys = np.array([5, 2**63 + 7], np.uint64)
    assert not admission.admit(keys, absent(2)).any()
    assert not admission.admit(keys, absent(2)).any()
    assert admission.admit(keys, absent(2)).all()  # the third push
    assert list(admission.estimates(keys)) == [3, 3]
    stored = np.array([0, 1], np.int64)  # stored now: not counted, not admitted again
    assert not admission.admit(keys, stored).any()
    assert list(admission.estimates(keys)) == [3, 3]
    assert (admission.admitted, admission.deferred) == (2, 4)


def test_estimates_never_undercount_even_when_the_sketch_is_crowded():
    """A tiny sketch (4 x 64 cells) and 2,000 keys pushed a random number of times each:
    every estimate is at least the true count (count-min), and most are exact for a
    sketch that holds the keys (4 x 2**16)."""
    rng = np.random.default_rng(3)
    keys = np.unique(rng.integers(0, 2**64, 2000, np.uint64, endpoint=False))
    true = rng.integers(1, 6, keys.size)
    for shape, exact_share in (((4, 64), 0.0), ((4, 1 << 16), 0.99)):
        admission = Admission(parse_admit("count:1000"), shape=shape)
        for round_ in range(int(true.max())):
            pushed = keys[true > round_]
            admission.admit(pushed, absent(pushed.size))
        got = admission.estimates(keys)
        assert (got >= true).all()
        assert np.mean(got == true) >= exact_share


def test_prob_admits_about_that_share_of_pushes_the_same_on_every_run():
    keys = np.arange(20000, dtype=np.uint64)
    first = Admission(parse_admit("prob:0.1")).admit(keys, absent(keys.size))
    again = Admission(parse_admit("prob:0.1")).admit(keys, absent(keys.size))
    assert np.array_equal(first, again)
    assert 0.09 < first.mean() < 0.11
    every = Admission(parse_admit("prob:1")).admit(keys, absent(keys.size))
    assert every.all()


def test_a_rolled_back_push_is_uncounted_and_a_kept_one_stays():
    admission = Admission(parse_admit("count:2"), shape=(4, 1 << 10))
    keys = np.arange(1, 300, dtype=np.uint64)
    admission.admit(keys[:100], absent(100))
    before = admission.counts.copy(), admission.admitted, admission.deferred
    admission.begin_undoable()
    admission.admit(keys[:200], absent(200))
    admission.admit(keys[150:], absent(keys.size - 150))
    admission.roll_back()
    assert np.array_equal(admission.counts, before[0])
    assert (admission.admitted, admission.deferred) == before[1:]
    admission.begin_undoable()
    admitted = admission.admit(keys[:100], absent(100))
    admission.keep()
    admission.roll_back()  # nothing logged any more
    assert admitted.all() and (admission.estimates(keys[:100]) >= 2).all()


def test_loading_sums_saved_sketches_saturating_and_refuses_other_shapes():
    shape = (4, 1 << 8)
    one, two = Admission(parse_admit("count:5"), shape), Admission(parse_admit("count:5"), shape)
    one.admit(np.array([1, 2], np.uint64), absent(2))
    two.admit(np.array([2, 3], np.uint64), absent(2))
    merged = Admission(parse_admit("count:5"), shape)
    merged.load([one.counts, two.counts])
    assert list(merged.estimates(np.array([1, 2, 3], np.uint64))) == [1, 2, 1]
    full = np.full(shape, 2**32 - 2, np.uint32)
    merged.load([full, full])
    assert (merged.counts == 2**32 - 1).all()
    with pytest.raises(ValueError, match=r"an admission sketch of \(2, 8\) uint32, expected"):
        merged.load([np.zeros((2, 8), np.uint32)])


def test_the_sketch_halves_after_so_many_counted_pushes_so_that_it_never_fills_up():
    """Every counter halves once halve_every pushes were counted (TinyLFU's reset): a key
    pushed once long ago reads 0 again, one pushed often keeps a count; not while a push is
    being logged (a roll-back must find the cells as it left them)."""
    admission = Admission(parse_admit("count:3"), shape=(4, 1 << 10), halve_every=100)
    hot, old = np.array([42], np.uint64), np.array([7], np.uint64)
    admission.admit(old, absent(1))
    for _ in range(2):
        admission.admit(hot, absent(1))
    admission.admit(np.arange(1000, 1097, dtype=np.uint64), absent(97))
    assert admission.counted == 100
    admission.begin_undoable()
    assert not admission.age()  # a push is being logged
    admission.keep()
    assert admission.age() and admission.halvings == 1 and admission.counted == 0
    assert list(admission.estimates(np.concatenate([old, hot]))) == [0, 1]
    assert not admission.age()
