"""Keys for kernel and codec tests: arrays, and hypothesis strategies of sorted unique keys."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

MAX = 2**64 - 1


def u64(values) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def f32(values) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def sorted_unique_u64(keys: st.SearchStrategy, max_size: int = 60) -> st.SearchStrategy:
    """Sorted unique uint64 arrays of up to ``max_size`` keys drawn from ``keys``."""
    return st.lists(keys, unique=True, max_size=max_size).map(lambda xs: u64(sorted(xs)))
