"""Plain-NumPy references of every kernel: slow, obviously right, used by the tests."""
import numpy as np


def first_bad_key(keys, lo, hi, prev, has_prev):
    keys = np.asarray(keys, dtype=np.uint64)
    bad = (keys < lo) | (keys > hi)
    if keys.size:
        before = np.concatenate([[prev], keys[:-1]]).astype(np.uint64)
        order_bad = keys <= before
        if not has_prev:
            order_bad[0] = False
        bad |= order_bad
    idx = np.flatnonzero(bad)
    return int(idx[0]) if idx.size else -1


def locate_sorted(table, keys, start, rows):
    pos = np.searchsorted(table, keys)
    found = (pos < table.size) & (table[np.minimum(pos, max(table.size - 1, 0))] == keys) \
        if table.size else np.zeros(keys.size, bool)
    rows[:] = np.where(found, pos, -1)
    nxt = int(pos[-1] + found[-1]) if keys.size else start
    return int(keys.size - found.sum()), max(nxt, start)


def offset_rows(keys, begin, rows):
    rows[:] = (keys - np.uint64(begin)).astype(np.int64)


def merge_disjoint(a, b, merged, pos_a, pos_b):
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="stable")
    merged[:] = both[order]
    where = np.empty_like(order)
    where[order] = np.arange(order.size)
    pos_a[:] = where[: a.size]
    pos_b[:] = where[a.size:]


def gather_rows(values, rows, init, out):
    out[:] = np.where((rows >= 0)[:, None], values[np.maximum(rows, 0)], np.float32(init))


def apply_sum(values, rows, grads):
    ok = rows >= 0
    np.add.at(values, rows[ok], grads[ok])


def apply_sgd(values, rows, grads, lr):
    ok = rows >= 0
    np.add.at(values, rows[ok], -np.float32(lr) * grads[ok])


def apply_adagrad(values, accum, rows, grads, lr, eps):
    ok = rows >= 0
    r, g = rows[ok], grads[ok]
    accum[r] += g * g
    values[r] -= np.float32(lr) * g / (np.sqrt(accum[r]) + np.float32(eps))


def copy_rows(src, dst, rows):
    dst[rows] = src


def first_nonfinite(flat):
    idx = np.flatnonzero(~np.isfinite(flat))
    return int(idx[0]) if idx.size else -1


def count_bad_keys(keys, lo, hi, prev, has_prev):
    keys = np.asarray(keys, dtype=np.uint64)
    if keys.size == 0:
        return 0
    bad = (keys < lo) | (keys > hi)
    bad[1:] |= keys[1:] <= keys[:-1]
    if has_prev:
        bad[0] |= keys[0] <= prev
    return int(bad.sum())


def matches_run(table, keys, start):
    return start + keys.size <= table.size and bool(np.array_equal(table[start:start + keys.size], keys))


def count_nonfinite(flat):
    return int((~np.isfinite(flat)).sum())


def scatter_rows(src, dst, rows):
    keep = rows >= 0
    dst[rows[keep]] = src[keep]
