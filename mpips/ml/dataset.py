"""SparseDataset: rows of sparse features plus binary labels, in CSR arrays. Pure module.

The readers and generators (mpips.ml.libsvm, mpips.ml.synthetic) produce it; the sparse logistic
regression math (mpips.ml.lr) and the jobs consume it. Row selection (``take``), the seeded
train/test ``split`` and per-worker ``shard`` all return new datasets that share nothing
with the original.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class SparseDataset:
    """Binary-labelled sparse rows in CSR form.

    Row ``i`` has the feature ids ``indices[indptr[i]:indptr[i+1]]`` (uint64, strictly
    increasing within the row) with values ``values[...]`` (float32) and the label
    ``labels[i]`` (float32, 0 or 1). Every feature id is below ``n_features`` (a Python int, so
    a hashed key space of 2**64 fits).
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    n_features: int

    def __post_init__(self):
        set_field = object.__setattr__  # frozen dataclass: normalise dtypes once, here
        set_field(self, "indptr", np.ascontiguousarray(self.indptr, dtype=np.int64))
        set_field(self, "indices", np.ascontiguousarray(self.indices, dtype=np.uint64))
        set_field(self, "values", np.ascontiguousarray(self.values, dtype=np.float32))
        set_field(self, "labels", np.ascontiguousarray(self.labels, dtype=np.float32))
        set_field(self, "n_features", int(self.n_features))
        self._check_shapes()

    def _check_shapes(self) -> None:
        indptr = self.indptr
        if indptr.ndim != 1 or indptr.size != self.labels.size + 1 or indptr[0] != 0:
            raise ValueError(f"indptr must be 1-D, start at 0 and have n_rows + 1 = "
                             f"{self.labels.size + 1} entries; got shape {indptr.shape}")
        if np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must be non-decreasing")
        if self.indices.shape != (indptr[-1],) or self.values.shape != (indptr[-1],):
            raise ValueError(f"indices {self.indices.shape} and values {self.values.shape} "
                             f"must both have indptr[-1] = {indptr[-1]} entries")

    @property
    def n_rows(self) -> int:
        """Number of rows (examples)."""
        return int(self.labels.size)

    @property
    def nnz(self) -> int:
        """Number of stored (row, feature) entries."""
        return int(self.indices.size)

    def __len__(self) -> int:
        return self.n_rows

    def row_lengths(self) -> np.ndarray:
        """Number of features of every row (int64)."""
        return np.diff(self.indptr)

    def take(self, rows) -> "SparseDataset":
        """The rows ``rows`` (int array, any order, repeats allowed) as a new dataset."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise IndexError(f"row index out of range for a dataset of {self.n_rows} rows")
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        indptr = np.zeros(rows.size + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # position j of the output reads source position starts[row] + (j - indptr[row])
        source = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseDataset(indptr, self.indices[source], self.values[source],
                             self.labels[rows], self.n_features)

    def slice_rows(self, start: int, stop: int) -> "SparseDataset":
        """The contiguous rows ``start:stop`` as a new dataset (copies, no shared arrays)."""
        start, stop = max(0, int(start)), min(self.n_rows, int(stop))
        stop = max(start, stop)
        lo, hi = self.indptr[start], self.indptr[stop]
        return SparseDataset(self.indptr[start:stop + 1] - lo, self.indices[lo:hi].copy(),
                             self.values[lo:hi].copy(), self.labels[start:stop].copy(),
                             self.n_features)

    def split(self, test_fraction: float = 0.2,
              seed: int = 0) -> tuple["SparseDataset", "SparseDataset"]:
        """Shuffle the rows with ``seed`` and cut them into (train, test).

        The test part gets ``round(test_fraction * n_rows)`` rows. Both parts come out in
        shuffled order, so contiguous shards of the train part are IID samples even when the
        file is ordered by label (as w8a is). Same seed, same split, on every rank.
        """
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        order = np.random.default_rng(seed).permutation(self.n_rows)
        n_test = int(round(test_fraction * self.n_rows))
        return self.take(order[n_test:]), self.take(order[:n_test])

    def shard(self, index: int, count: int) -> "SparseDataset":
        """Contiguous block ``index`` of ``count`` near-equal blocks of rows (sizes differ by
        at most one), e.g. worker ``index`` of ``count`` workers.

        Contiguous blocks keep the file's row order: in an ordered file (w8a keeps almost all
        positives in one stretch) they are NOT IID. Shuffle first, e.g. shard the train part
        of ``split()``, which is shuffled.
        """
        if not 0 <= index < count:
            raise ValueError(f"shard index {index} is not in [0, {count})")
        return self.slice_rows(index * self.n_rows // count, (index + 1) * self.n_rows // count)

    def batches(self, count: int) -> list["SparseDataset"]:
        """Cut the rows, in order, into ``count`` contiguous near-equal minibatches."""
        return [self.shard(i, count) for i in range(count)]
