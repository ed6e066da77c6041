"""Compile every kernel once for the dtypes mpips uses, filling numba's on-disk cache.

Run it (``mpips warmup``) once before a parallel launch: concurrent first compiles by many
ranks race on the cache files.
"""
import numpy as np

from . import fletcher, keys, rows
from .warmup_codec import warm_codec


def warm_all() -> list[str]:
    """Call each kernel on tiny inputs; returns the names compiled."""
    k = np.arange(4, dtype=np.uint64)
    r = np.arange(4, dtype=np.int64)
    v = np.zeros((4, 2), np.float32)
    g = np.ones((4, 2), np.float32)
    keys.first_bad_key(k, np.uint64(0), np.uint64(9), np.uint64(0), False)
    keys.locate_sorted(k, k, 0, r.copy())
    keys.offset_rows(k, np.uint64(0), r.copy())
    keys.merge_disjoint(k[:2], k[2:], np.empty(4, np.uint64), r[:2].copy(), r[2:].copy())
    rows.gather_rows(v, r, 0.0, v.copy())
    rows.apply_sum(v, r, g)
    rows.apply_sgd(v, r, g, np.float32(0.1))
    rows.apply_adagrad(v, v.copy(), r, g, np.float32(0.1), np.float32(1e-8))
    rows.copy_rows(g, v, r)
    rows.scatter_rows(g, v, r)
    rows.first_nonfinite(g.reshape(-1))
    keys.count_bad_keys(k, np.uint64(0), np.uint64(9), np.uint64(0), False)
    keys.matches_run(k, k, 0)
    rows.count_nonfinite(g.reshape(-1))
    fletcher.fletcher32(np.zeros(8, np.uint8))
    return warm_codec() + ["fletcher32", "count_bad_keys", "matches_run", "count_nonfinite", "first_bad_key", "locate_sorted", "offset_rows", "merge_disjoint", "gather_rows",
            "apply_sum", "apply_sgd", "apply_adagrad", "copy_rows", "scatter_rows", "first_nonfinite"]
