"""Compile the sparse store's kernels (mpips.kernels.hashindex, .placement) once, for the
array layouts mpips.store.sparse_rows and the undo log pass them (numba's on-disk cache), like
mpips.kernels.warmup.warm_all: call before a parallel launch."""
import numpy as np

from . import hashindex as hx
from . import placement, rows


def warm_store() -> list[str]:
    """Call each kernel on tiny inputs; returns the names compiled."""
    keys = np.array([1, 5, 2**40], np.uint64)
    lo, hi, zero = np.uint64(0), np.uint64(2**64 - 1), np.uint64(0)
    placement.mix_keys(keys, np.empty(3, np.uint64))
    for hashed in (True, False):
        placement.count_bad_placed(keys, lo, hi, zero, False, hashed)
        placement.first_bad_placed(keys, lo, hi, zero, False, hashed)
    placement.split_by_owner(keys, np.array([2**63], np.uint64), True, np.empty(3, np.int64),
                             np.zeros(2, np.int64))
    slots = np.empty(8, hx.SLOT)
    slots["row"] = -1
    mask = np.uint64(7)
    found = np.empty(3, np.int64)
    f32 = np.float32
    for state in (0, 1):  # rows of width 1 without and with one optimizer-state array
        data = np.zeros((4, 1 + state), f32)
        grads, out = np.ones((3, 1), f32), np.empty((3, 1), f32)
        fresh = slots.copy()
        hx.push_rows(fresh, mask, keys, grads, data, found, 0, f32(0), hx.RULE_SUM, f32(0), f32(0))
        hx.pull_rows(fresh, mask, keys, data, f32(0), out, found)
        hx.apply_at_rows(data, found, grads, hx.RULE_SUM, f32(0), f32(0))
        hx.gather_at_rows(data, found, f32(0), out)
        values = data[:, :1]  # the strided views the undo log and the rules get
        rows.gather_rows(values, found, f32(0), out)
        rows.scatter_rows(out, values, found)
        rows.apply_sum(values, found, grads)
        rows.apply_sgd(values, found, grads, f32(0.1))
        if state:
            rows.apply_adagrad(values, data[:, 1:], found, grads, f32(0.1), f32(1e-8))
    data = np.zeros((4, 3), f32)  # FTRL's rows: values, z, n (strided views)
    rows.apply_ftrl(data[:, :1], data[:, 1:2], data[:, 2:], found, np.ones((3, 1), f32),
                    *(f32(p) for p in (0.1, 1, 1, 1)))
    hx.find_rows(slots, mask, keys, found)
    hx.insert_missing(slots, mask, keys, np.full(3, -1, np.int64), 0)
    bigger = np.empty(16, hx.SLOT)
    bigger["row"] = -1
    hx.rehash(slots, bigger, np.uint64(15))
    warm_copies()
    hx.remove_keys(slots, mask, keys[:1])
    hx.evict_rows(slots, mask, np.zeros((4, 1), f32), keys.copy(), np.zeros(3, np.int64),
                  np.zeros(4, np.uint8), np.array([1], np.int64), 2)
    hx.collect_flagged(slots, np.ones(4, np.uint8), np.empty(4, np.uint64),
                       np.empty(4, np.int64))
    rows.mark_rows(np.zeros(4, np.uint8), found)
    hx.run_start(found)
    return ["mix_keys", "count_bad_placed", "first_bad_placed", "split_by_owner", "push_rows",
            "pull_rows", "apply_at_rows", "gather_at_rows", "find_rows", "insert_missing",
            "rehash", "collect", "insert_at", "scatter_at_rows", "remove_keys", "evict_rows",
            "collect_flagged", "mark_rows", "run_start"]


def warm_copies() -> None:
    """Load the kernels of whole copies and of replica batches (SparseRows.items and mirror),
    which a server with replicas first needs when a server dies."""
    slots = np.empty(8, hx.SLOT)
    slots["row"] = -1
    keys, rows = np.array([1, 5, 2**40], np.uint64), np.arange(3, dtype=np.int64)
    hx.insert_at(slots, np.uint64(7), keys, rows)
    hx.collect(slots, np.empty(8, np.uint64), np.empty(8, np.int64))
    hx.scatter_at_rows(np.zeros((4, 2), np.float32), rows, np.ones((3, 2), np.float32))
