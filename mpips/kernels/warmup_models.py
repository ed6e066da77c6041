"""Compile the kernels of the model jobs (matrix factorization, word2vec, starting rows) for
the array layouts mpips.ml passes them, like mpips.kernels.warmup.warm_all."""
import numpy as np

from . import factors, skipgram, starting_rows


def warm_models() -> list[str]:
    """Call each kernel on tiny inputs; returns the names compiled."""
    f32, keys = np.float32, np.arange(3, dtype=np.uint64)
    index = np.array([0, 1, 0], np.int64)
    rows = np.zeros((2, 3), f32)
    factors.squared_error_gradients(index, index, np.ones(3, f32), rows, rows.copy(), f32(3),
                                    f32(0.1), rows.copy(), rows.copy())
    factors.sequential_sgd(index, index, np.ones(3, f32), rows.copy(), rows.copy(), f32(3),
                           f32(0.1), f32(0.1))
    factors.predict(index, index, rows, rows, 3.0, 1.0, 5.0, np.empty(3))
    wide = np.zeros((3, 3), f32)
    starting_rows.normal_rows(keys, 2, 0.1, 0, wide)
    starting_rows.uniform_rows(keys, 3, 0.1, 0, wide)
    skipgram.train_batch(index, index, np.array([0, 3], np.int64), np.full(1, 0.025, f32),
                         rows.copy(), rows.copy(), np.array([1, 2], np.int64), 2, 1, 0,
                         np.zeros(2, np.uint8))
    return ["squared_error_gradients", "sequential_sgd", "predict", "normal_rows",
            "uniform_rows", "train_batch"]
