"""Plain-NumPy references of every kernel: slow, obviously right, used by the tests."""
import numpy as np


def first_bad_key(keys, lo, hi, prev, has_prev):
    return first_bad_placed(keys, lo, hi, prev, has_prev, hashed=False)


def offset_rows(keys, begin, rows):
    rows[:] = (keys - np.uint64(begin)).astype(np.int64)


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


def apply_ftrl(values, z, n, rows, grads, alpha, beta, l1, l2):
    """One coordinate at a time in float32, as written in McMahan et al. (2013), Algorithm 1."""
    f = np.float32
    for i, r in enumerate(rows):
        if r < 0:
            continue
        for c in range(values.shape[1]):
            g, w = f(grads[i, c]), f(values[r, c])
            sigma = (np.sqrt(f(n[r, c] + g * g)) - np.sqrt(f(n[r, c]))) / f(alpha)
            z[r, c] = f(z[r, c] + f(g - f(sigma * w)))
            n[r, c] = f(n[r, c] + g * g)
            if abs(z[r, c]) <= f(l1):
                values[r, c] = f(0)
            else:
                values[r, c] = -(z[r, c] - np.sign(z[r, c]) * f(l1)) / (
                    (f(beta) + np.sqrt(n[r, c])) / f(alpha) + f(l2))


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


def mix_keys(keys):
    """SplitMix64's finalizer, elementwise (uint64 arithmetic wraps)."""
    x = np.asarray(keys, np.uint64).copy()
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def first_bad_placed(keys, lo, hi, prev, has_prev, hashed):
    keys = np.asarray(keys, np.uint64)
    pos = mix_keys(keys) if hashed else keys
    bad = (pos < lo) | (pos > hi)
    if keys.size:
        before = np.concatenate([[prev], keys[:-1]]).astype(np.uint64)
        order_bad = keys <= before
        if not has_prev:
            order_bad[0] = False
        bad |= order_bad
    idx = np.flatnonzero(bad)
    return int(idx[0]) if idx.size else -1


def split_by_owner(keys, cuts, hashed):
    """(order, counts): a stable argsort of the owning server of each key."""
    pos = mix_keys(keys) if hashed else np.asarray(keys, np.uint64)
    owner = np.searchsorted(np.asarray(cuts, np.uint64), pos, side="right")
    return np.argsort(owner, kind="stable"), np.bincount(owner, minlength=len(cuts) + 1)
