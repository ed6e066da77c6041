"""sparse_lr's rows when no rank reads the whole file: each worker reads its own part.

Two sources: an mpips data file (``--data X.h5`` made by ``mpips data convert``: rows read by
HDF5 hyperslabs, mpips.ml.csr_file), or a LIBSVM text with ``--read parts`` (each worker parses
the lines that start in its byte range, mpips.ml.libsvm_part; the workers then agree on the
index base and n_features). Worker w of W holds part w of W of the file's rows; servers read
nothing. Without --test-data, row r of the file is a test row when a seeded hash of r falls
below --test-fraction (``held_out_rows``): every worker decides it for its own rows alone, and
evaluation is distributed (each worker scores its own test rows; worker 0 gathers the
predictions). With --assign dynamic and a data file, blocks are file rows read when claimed.

Loading is collective over the launch (``load``): a malformed file on one worker is a one-line
UsageError on every rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from mpips.ml.csr_file import is_data_file, open_data
from mpips.ml.csr_format import row_bounds
from mpips.ml.dataset import SparseDataset
from mpips.ml.libsvm_part import read_libsvm_part
from mpips.mpi.agree import everywhere
from mpips.errors import MpipsError, UsageError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def held_out_rows(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Whether each global row number in ``rows`` is a test row: SplitMix64 of the row and the
    seed, as a uniform number in [0, 1), below ``fraction``. Pure, per row: any rank decides
    for its rows alone, and a row's fate does not depend on how the file was cut."""
    offset = np.uint64((seed + 1) * int(_GOLDEN) % 2**64)  # Python ints: no scalar overflow
    z = np.asarray(rows, np.uint64) * _GOLDEN + offset
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


def sharded(args) -> bool:
    """Whether the job reads parts of its files (a data file, or --read parts)."""
    return args.data is not None and (args.read == "parts" or is_data_file(args.data))


@dataclass
class Shards:
    """What one rank holds: ``train`` and ``test`` rows of this worker's part (empty on
    servers), and the totals over all workers."""

    train: SparseDataset
    test: SparseDataset
    n_features: int
    n_train: int
    n_test: int
    train_positives: float
    file_rows: int  # rows of a --data data file (0 for a text)
    reader: "_Reader | None"  # None on servers

    def blocks(self, block_rows: int) -> int:
        """Blocks of dynamic assignment: of file rows (a data file only)."""
        return max(1, -(-self.file_rows // block_rows))

    def block(self, block: int, block_rows: int) -> SparseDataset:
        """The training rows among file rows of block ``block`` (read now)."""
        lo = min(block * block_rows, self.reader.n_rows)
        return self.reader.train_rows(lo, min(lo + block_rows, self.reader.n_rows))

    def reshard(self, worker_comm) -> SparseDataset:
        """This worker's training rows when the data is cut in ``worker_comm``'s size of
        parts (after a worker was lost). Collective over ``worker_comm``."""
        return self.reader.train_part(worker_comm)


class _Reader:
    """Reads rows of the --data file for one worker (``read_rows(lo, hi)``: file rows)."""

    def __init__(self, args, fraction: float, n_features: int, zero_based: bool = False):
        self.args, self.fraction = args, fraction
        self.n_features, self.zero_based = n_features, zero_based
        self.path = args.data
        self.data = open_data(self.path, "libsvm") if is_data_file(self.path) else None
        self.n_rows = self.data.n_rows if self.data is not None else 0
        self.holdout = args.test_data is None

    def read(self, lo: int, hi: int) -> SparseDataset:
        rows = self.data.read_rows(lo, hi)
        return SparseDataset(rows.indptr, rows.indices, rows.values, rows.labels,
                             self.n_features)

    def split(self, rows: SparseDataset, first_row: int) -> tuple[SparseDataset, SparseDataset]:
        """(train, test) of rows numbered from ``first_row`` in the file."""
        if not self.holdout:
            return rows, rows.take(np.empty(0, np.int64))
        test = held_out_rows(first_row + np.arange(rows.n_rows), self.fraction, self.args.seed)
        return rows.take(np.flatnonzero(~test)), rows.take(np.flatnonzero(test))

    def train_rows(self, lo: int, hi: int) -> SparseDataset:
        return self.split(self.read(lo, hi), lo)[0]

    def train_part(self, worker_comm) -> SparseDataset:
        index, count = worker_comm.Get_rank(), worker_comm.Get_size()
        if self.data is not None:
            return self.train_rows(*row_bounds(self.n_rows, index, count))
        part = read_libsvm_part(self.path, index, count)
        first = _first_row(part.n_rows, worker_comm)
        return self.split(part.dataset(self.zero_based, self.n_features), first)[0]


def load(ps, args, fraction: float) -> Shards:
    """Read this worker's part of --data (and --test-data). Collective over the launch;
    UsageError on every rank for a missing or malformed file."""
    comm, worker = ps.comm, ps.worker_rank if ps.is_worker else -1
    files = [args.data] + ([args.test_data] if args.test_data else [])

    def read() -> list:
        for option, path in zip(("--data", "--test-data"), files):
            if not os.path.isfile(path):
                raise UsageError(f"{option} {path}: " + (
                    "a directory, not a LIBSVM or data file" if os.path.isdir(path)
                    else "no such file"))
        if len({is_data_file(path) for path in files}) > 1:
            raise UsageError(f"--data {args.data} and --test-data {args.test_data}: give two "
                             "data files (.h5) or two LIBSVM texts, not one of each")
        return [_read_part(path, worker, ps.num_workers) for path in files] \
            if worker >= 0 else []

    parts = everywhere(comm, read, catch=(MpipsError, OSError, MemoryError))
    # agree on the index base and n_features: [any zero index, largest file index, any text]
    mine = np.array([-1, -1], np.int64)
    for part in parts:
        if not isinstance(part, SparseDataset):
            mine = np.maximum(mine, [int(part.has_zero_index), part.largest_index])
        else:
            mine = np.maximum(mine, [1, part.n_features - 1])  # data files: 0-based ids
    agreed = np.empty(2, np.int64)
    comm.Allreduce(mine, agreed, op=MPI.MAX)
    zero_based = bool(agreed[0] > 0)
    n_features = int(agreed[1]) + (1 if zero_based else 0)
    n_features = max(n_features, 1)
    reader = _Reader(args, fraction, n_features, zero_based) if worker >= 0 else None
    datasets = everywhere(comm, lambda: [_as_dataset(p, zero_based, n_features)
                                         for p in parts], catch=(MpipsError, OSError))
    empty = SparseDataset(np.zeros(1, np.int64), np.empty(0, np.uint64),
                          np.empty(0, np.float32), np.empty(0, np.float32), n_features)
    train, test = empty, empty
    if worker >= 0:
        rows = datasets[0]
        first = _first_row(rows.n_rows, ps.worker_comm)
        train, test = reader.split(rows, first)
        if len(datasets) > 1:
            test = datasets[1]
    totals = np.array([train.n_rows, test.n_rows, float(train.labels.sum())], np.float64)
    comm.Allreduce(MPI.IN_PLACE, totals, op=MPI.SUM)
    file_rows = np.array([reader.n_rows if reader is not None else 0], np.int64)
    comm.Allreduce(MPI.IN_PLACE, file_rows, op=MPI.MAX)
    return Shards(train, test, n_features, int(totals[0]), int(totals[1]), float(totals[2]),
                  int(file_rows[0]), reader)


def _read_part(path: str, index: int, count: int):
    """Part ``index`` of ``count`` of a data file (SparseDataset) or a text (LibsvmPart)."""
    if is_data_file(path):
        with open_data(path, "libsvm") as data:
            return data.read_part(index, count)
    return read_libsvm_part(path, index, count)


def _as_dataset(part, zero_based: bool, n_features: int) -> SparseDataset:
    if isinstance(part, SparseDataset):
        return SparseDataset(part.indptr, part.indices, part.values, part.labels, n_features)
    return part.dataset(zero_based, n_features, spend=True)


def _first_row(n_rows: int, worker_comm) -> int:
    """The file row number of this worker's first row: the rows of the parts before it.
    Collective over the workers (an Exscan)."""
    before = np.zeros(1, np.int64)
    worker_comm.Exscan(np.array([n_rows], np.int64), before, op=MPI.SUM)
    return int(before[0]) if worker_comm.Get_rank() > 0 else 0


