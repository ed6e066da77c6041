"""Starting values of table rows that cannot start at a constant (embeddings: factors of
matrix factorization, word2vec's input vectors): a fixed function of (key, column, seed),
the same on every rank and in every launch, so a table can hold each row's change from it
(mpips.ml.factorization, mpips.ml.corpus).

``out`` may be a strided view (e.g. the first ``width`` columns of wider rows).
"""
import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ODD = np.uint64(0xD1B54A32D192ED03)


@_jit
def normal_rows(keys, width, std, seed, out):
    """out[k, c] for c < width: approximately Normal(0, std), a fixed function of (keys[k],
    c, seed): the sum of the four 16-bit uniforms of one SplitMix64 hash, centred and scaled
    to unit variance (Irwin-Hall; tails end at 3.46 std), so a row costs one hash per value."""
    scale = std * np.sqrt(3.0) / 65536.0
    base = _mix(np.uint64(seed) * _GOLDEN + np.uint64(1))
    mask = np.uint64(0xFFFF)
    for k in range(keys.size):
        h = _mix(keys[k] ^ base)
        for c in range(width):
            x = _mix(h + np.uint64(c) * _ODD)
            total = (x & mask) + ((x >> np.uint64(16)) & mask) \
                + ((x >> np.uint64(32)) & mask) + (x >> np.uint64(48))
            out[k, c] = (float(total) + 2.0 - 131072.0) * scale


@_jit
def uniform_rows(keys, width, half_width, seed, out):
    """out[k, c] uniform in [-half_width, half_width), a fixed function of (keys[k], c,
    seed): the top 53 bits of one SplitMix64 hash per value."""
    base = _mix(np.uint64(seed) * _GOLDEN + np.uint64(2))
    for k in range(keys.size):
        h = _mix(keys[k] ^ base)
        for c in range(width):
            x = _mix(h + np.uint64(c) * _ODD)
            u = (x >> np.uint64(11)) * (1.0 / 9007199254740992.0)
            out[k, c] = (2.0 * u - 1.0) * half_width


@numba.njit(inline="always", nogil=True)
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
