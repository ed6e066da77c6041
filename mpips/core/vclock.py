"""Ranged vector clocks (Li et al., OSDI'14, section 4.1). Pure module: no MPI import.

A :class:`RangedVectorClock` covers one key range ``[lo, hi)`` of one table (keys are uint64,
held as Python ints so that ``hi`` may be ``2**64``). It is a sorted list of disjoint ranges
that exactly cover ``[lo, hi)``; each range carries a vector of per-worker *finished-clock
counts* (worker ``w`` has count ``k`` on a range when it has finished clocks ``0 .. k-1`` on
those keys). Advancing a worker on a sub-range splits ranges at its ends; afterwards equal
neighbours are merged again, so when every worker clocks whole ranges the clock stays a
single range and costs one vector.

Workers are 0-based worker indices (not MPI ranks). A retired worker (done or dead) keeps its
counts, for inspection, but no longer takes part in minima.
"""
from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right

import numpy as np

from .partition import KEY_SPACE

UNBOUNDED = 2**63 - 1
"""``min_clock`` when no worker is live: every wait is over."""


class RangedVectorClock:
    """Per-worker finished-clock counts over the key range ``[lo, hi)``, kept as few ranges."""

    def __init__(self, lo: int, hi: int, workers: int):
        lo, hi, workers = operator.index(lo), operator.index(hi), operator.index(workers)
        if not 0 <= lo < hi <= KEY_SPACE:
            raise ValueError(f"a ranged vector clock needs 0 <= lo < hi <= 2**64, got [{lo}, {hi})")
        if workers < 1:
            raise ValueError(f"a ranged vector clock needs at least 1 worker, got {workers}")
        self.lo, self.hi, self.workers = lo, hi, workers
        self._starts = [lo]
        self._vecs = [np.zeros(workers, np.int64)]
        self._live = np.ones(workers, bool)

    def advance(self, worker: int, clock: int, lo: int | None = None,
                hi: int | None = None) -> None:
        """Record that ``worker`` finished clock ``clock`` on ``[lo, hi)`` (default: the whole
        range): its count there becomes at least ``clock + 1`` (counts never go down, so a
        repeated or late clock message is a no-op)."""
        self._check_worker(worker)
        if operator.index(clock) < 0:
            raise ValueError(f"clock must be >= 0, got {clock}")
        lo, hi = self._span(lo, hi)
        first, end = self._split(lo), self._split(hi)
        for vec in self._vecs[first:end]:
            vec[worker] = max(int(vec[worker]), clock + 1)
        self._merge(first, end)

    def min_clock(self, lo: int | None = None, hi: int | None = None) -> int:
        """Smallest count of any live worker on any range meeting ``[lo, hi)`` (default: the
        whole range); :data:`UNBOUNDED` when no worker is live."""
        if not self._live.any():
            self._span(lo, hi)
            return UNBOUNDED
        return int(min(self._vecs[i][self._live].min() for i in self._meeting(lo, hi)))

    def worker_clock(self, worker: int, lo: int | None = None, hi: int | None = None) -> int:
        """Smallest count of ``worker`` (live or not) on ``[lo, hi)``."""
        self._check_worker(worker)
        return int(min(self._vecs[i][worker] for i in self._meeting(lo, hi)))

    def laggards(self, below: int, lo: int | None = None, hi: int | None = None) -> list[int]:
        """Live workers whose count on some range meeting ``[lo, hi)`` is below ``below``: the
        workers a read requiring ``below`` waits for."""
        slow = np.zeros(self.workers, bool)
        for i in self._meeting(lo, hi):
            slow |= self._vecs[i] < below
        return [int(w) for w in np.flatnonzero(slow & self._live)]

    def retire(self, worker: int) -> None:
        """Stop counting ``worker`` in minima (it is done or dead). Safe to call twice."""
        self._check_worker(worker)
        self._live[worker] = False

    def is_live(self, worker: int) -> bool:
        self._check_worker(worker)
        return bool(self._live[worker])

    def ranges(self) -> list[tuple[int, int, tuple[int, ...]]]:
        """``(begin, end, counts)`` of every range, in key order (counts of all workers)."""
        ends = self._starts[1:] + [self.hi]
        return [(b, e, tuple(int(x) for x in v)) for b, e, v in zip(self._starts, ends, self._vecs)]

    def __len__(self) -> int:
        """Number of ranges currently kept."""
        return len(self._starts)

    def __repr__(self) -> str:
        return f"RangedVectorClock([{self.lo}, {self.hi}), ranges={self.ranges()})"

    # -- internals ---------------------------------------------------------------------
    def _check_worker(self, worker: int) -> None:
        if not 0 <= operator.index(worker) < self.workers:
            raise ValueError(f"worker {worker} not in [0, {self.workers})")

    def _span(self, lo: int | None, hi: int | None) -> tuple[int, int]:
        lo = self.lo if lo is None else operator.index(lo)
        hi = self.hi if hi is None else operator.index(hi)
        if not self.lo <= lo < hi <= self.hi:
            raise ValueError(f"key range [{lo}, {hi}) is empty or not inside "
                             f"[{self.lo}, {self.hi})")
        return lo, hi

    def _meeting(self, lo: int | None, hi: int | None) -> range:
        """Indices of the ranges that intersect ``[lo, hi)``."""
        lo, hi = self._span(lo, hi)
        return range(bisect_right(self._starts, lo) - 1, bisect_left(self._starts, hi))

    def _split(self, at: int) -> int:
        """Make ``at`` a range boundary; returns the index of the range starting at ``at``
        (``len(self)`` for ``at == hi``)."""
        if at >= self.hi:
            return len(self._starts)
        i = bisect_left(self._starts, at)
        if i == len(self._starts) or self._starts[i] != at:
            self._starts.insert(i, at)
            self._vecs.insert(i, self._vecs[i - 1].copy())
        return i

    def _merge(self, first: int, end: int) -> None:
        """Merge equal neighbours among ranges ``first-1 .. end`` (the ones just changed)."""
        for k in range(min(end, len(self._starts) - 1), max(first, 1) - 1, -1):
            if np.array_equal(self._vecs[k], self._vecs[k - 1]):
                del self._starts[k], self._vecs[k]
