"""UndoLog: a push applied chunk by chunk and rolled back leaves values and optimizer state
bit for bit as they were; after ``stop`` nothing is rolled back."""
import numpy as np
import pytest

from mpips.core.rules import make_rule
from mpips.store.undo import UndoLog

N_ROWS = 50


def table(width: int, rule):
    rng = np.random.default_rng(7)
    values = rng.standard_normal((N_ROWS, width)).astype(np.float32)
    state = {name: rng.random((N_ROWS, width)).astype(np.float32) for name in rule.state_names}
    return values, state


def apply_chunks(log, rule, values, state, chunks, width):
    """Chunks are ("run", first, n) or ("rows", [row, ...]); each gets a gradient of ones."""
    for chunk in chunks:
        if chunk[0] == "run":
            _, first, n = chunk
            log.save(values, state, first, None, n)
            rule.apply_run(values, state, first, np.ones((n, width), np.float32))
        else:
            rows = np.array(chunk[1], np.int64)
            log.save(values, state, None, rows, rows.size)
            rule.apply(values, state, rows, np.ones((rows.size, width), np.float32))


CHUNKS = [("run", 0, 10), ("rows", [12, -1, 15, 40]), ("run", 41, 9), ("rows", [])]


@pytest.mark.parametrize("rule_name", ["sum", "sgd", "adagrad", "ftrl"])
@pytest.mark.parametrize("width", [1, 3])
def test_rollback_restores_every_bit(rule_name, width):
    rule = make_rule(rule_name)
    values, state = table(width, rule)
    before = values.copy(), {k: v.copy() for k, v in state.items()}
    log = UndoLog(width, rule.state_names)
    log.begin(30)
    apply_chunks(log, rule, values, state, CHUNKS, width)
    assert not np.array_equal(values, before[0])
    log.rollback(values, state)
    np.testing.assert_array_equal(values.view(np.uint32), before[0].view(np.uint32))
    for name in state:
        np.testing.assert_array_equal(state[name].view(np.uint32), before[1][name].view(np.uint32))
    assert not log.active


def test_after_stop_changes_are_kept_and_later_chunks_not_saved():
    rule = make_rule("sum")
    values, state = table(1, rule)
    log = UndoLog(1, ())
    log.begin(20)
    apply_chunks(log, rule, values, state, CHUNKS[:1], 1)
    log.stop()
    kept = values.copy()
    apply_chunks(log, rule, values, state, CHUNKS[2:3], 1)
    after = values.copy()
    log.rollback(values, state)  # nothing left to roll back
    np.testing.assert_array_equal(values, after)
    assert not np.array_equal(kept, after)


def test_reused_buffers_and_overflow_is_refused():
    rule = make_rule("adagrad")
    values, state = table(2, rule)
    log = UndoLog(2, rule.state_names)
    for _ in range(2):  # a second push reuses the buffers of the first
        before = values.copy()
        log.begin(10)
        apply_chunks(log, rule, values, state, [("run", 5, 10)], 2)
        log.rollback(values, state)
        np.testing.assert_array_equal(values, before)
    log.begin(4)
    with pytest.raises(RuntimeError, match="announced"):
        log.save(values, state, 0, None, 10)
