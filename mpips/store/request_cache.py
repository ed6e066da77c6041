"""The rows of the key chunks each worker sent a sparse slice last (server side). Pure module.

A training step pulls the rows of a minibatch and then pushes gradients for the same keys; a
benchmark or a job with a fixed key set sends the same list again and again. For each
(worker, chunk index) the slice keeps the keys of the last chunk and the rows they had, and
a chunk equal to the kept one (compared key by key, so a match is exact) reuses the rows
instead of looking every key up again. Rows never move (mpips.store.sparse_rows), so kept rows
stay right until the slice's ``generation`` changes; rows kept with absent keys (-1, from a
pull) only until anything is inserted.

Keeping costs no copy: the server receives a chunk into a buffer this cache lends
(``buffers``) and hands it back with the rows (``keep``); the buffers of the entry it
replaces are lent out next. At most ``budget`` keys are kept per slice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.hashindex import run_start
from ..kernels.keys import matches_run

DEFAULT_BUDGET = 1 << 24


@dataclass
class Entry:
    keys: np.ndarray  # uint64, the chunk's keys
    rows: np.ndarray  # int64, their rows (-1: absent when kept)
    generation: int
    inserts: int
    complete: bool  # no -1 among rows
    first: int  # rows are first, first+1, ... (-1: not a run)


class RequestCache:
    """Kept chunks of one slice, by (worker, chunk index)."""

    def __init__(self, budget: int = DEFAULT_BUDGET):
        self.budget = budget
        self.kept = 0  # keys held by entries
        self._entries: dict[tuple[int, int], Entry] = {}
        self._spare: list[tuple[np.ndarray, np.ndarray]] = []
        self.hits = self.misses = 0

    def buffers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A uint64 keys buffer and an int64 rows buffer of length ``n`` to receive into."""
        while self._spare:
            keys, rows = self._spare.pop()
            if keys.size >= n:
                return keys[:n], rows[:n]
        return np.empty(n, np.uint64), np.empty(n, np.int64)

    def match(self, source: tuple[int, int], keys: np.ndarray, generation: int,
              inserts: int) -> Entry | None:
        """The entry of ``source`` if it holds exactly ``keys`` and its rows are still right."""
        entry = self._entries.get(source)
        if entry is None or entry.keys.size != keys.size or entry.generation != generation \
                or (not entry.complete and entry.inserts != inserts) \
                or not matches_run(entry.keys, keys, 0):
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def keep(self, source: tuple[int, int], keys: np.ndarray, rows: np.ndarray,
             generation: int, inserts: int) -> None:
        """Keep ``keys`` (a buffer from ``buffers``) with their ``rows`` for ``source``; the
        buffers it replaces go back to the spares."""
        if any(spare is keys for spare, _ in self._spare):  # kept and lent out at once would
            raise RuntimeError("request cache: keeping a buffer that is also lent out")  # alias
        old = self._entries.pop(source, None)
        if old is not None:
            self.kept -= old.keys.size
            self._spare.append((old.keys, old.rows))
        if self.kept + keys.size > self.budget:
            self._spare.append((keys, rows))
            return
        complete = keys.size == 0 or int(rows.min()) >= 0
        self._entries[source] = Entry(keys, rows, generation, inserts, complete,
                                      run_start(rows) if complete else -1)
        self.kept += keys.size

    def give_back(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Return buffers from ``buffers`` that were not kept."""
        self._spare.append((keys, rows))

    def forget(self, worker: int | None = None) -> None:
        """Drop the entries of ``worker`` (all when None), e.g. a worker that died."""
        for source in [s for s in self._entries if worker is None or s[0] == worker]:
            entry = self._entries.pop(source)
            self.kept -= entry.keys.size
        self._spare.clear()
