"""Compile every kernel once for the dtypes mpips uses, filling numba's on-disk cache.

Run it (``mpips warmup``) once before a parallel launch: concurrent first compiles by many
ranks race on the cache files.
"""
import numpy as np

from . import fletcher, keys, libsvm_text, rows, sketch
from .warmup_codec import warm_codec
from .warmup_models import warm_models
from .warmup_store import warm_store


def warm_all() -> list[str]:
    """Call each kernel on tiny inputs; returns the names compiled."""
    k = np.arange(4, dtype=np.uint64)
    r = np.arange(4, dtype=np.int64)
    v = np.zeros((4, 2), np.float32)
    g = np.ones((4, 2), np.float32)
    keys.first_bad_key(k, np.uint64(0), np.uint64(9), np.uint64(0), False)
    keys.offset_rows(k, np.uint64(0), r.copy())
    rows.gather_rows(v, r, 0.0, v.copy())
    rows.apply_sum(v, r, g)
    rows.apply_sgd(v, r, g, np.float32(0.1))
    rows.apply_adagrad(v, v.copy(), r, g, np.float32(0.1), np.float32(1e-8))
    rows.apply_ftrl(v, v.copy(), v.copy(), r, g, *(np.float32(p) for p in (0.1, 1, 1, 1)))
    rows.scatter_rows(g, v, r)
    rows.first_nonfinite(g.reshape(-1))
    keys.count_bad_keys(k, np.uint64(0), np.uint64(9), np.uint64(0), False)
    keys.matches_run(k, k, 0)
    rows.count_nonfinite(g.reshape(-1))
    fletcher.fletcher32(np.zeros(8, np.uint8))
    counts = np.zeros((2, 8), np.uint32)
    changed, old = np.empty(8, np.int64), np.empty(8, np.uint32)
    n = sketch.count_and_admit(counts, k, np.full(4, -1, np.int64), sketch.COUNT, np.uint32(2),
                               np.uint64(0), np.empty(4, np.bool_), changed, old)
    sketch.restore_cells(counts, changed, old, n)
    sketch.estimates(counts, k, np.empty(4, np.uint32))
    sketch.add_saturating(counts, counts.copy())
    text = np.frombuffer(b"+1 1:0.5 3:2 # c\n-1\n", np.uint8).copy()
    newlines, colons = libsvm_text.count_lines_and_colons(text)
    libsvm_text.parse_lines(text, 0, 0, 0, np.empty(newlines + 1, np.float32),
                            np.empty(newlines + 1, np.int64), np.zeros(newlines + 2, np.int64),
                            np.empty(colons, np.int64), np.empty(colons, np.float32),
                            libsvm_text.stats_array())
    libsvm_text.line_end(text, 0)
    return warm_codec() + warm_store() + warm_models() + [
            "count_lines_and_colons", "parse_lines", "line_end", "fletcher32", "count_and_admit", "restore_cells", "estimates", "add_saturating",
            "count_bad_keys", "matches_run", "count_nonfinite", "first_bad_key", "offset_rows", "gather_rows",
            "apply_sum", "apply_sgd", "apply_adagrad", "apply_ftrl", "scatter_rows", "first_nonfinite"]
