"""Undo log of one push on one table slice, so a push can be rolled back bit for bit.

Pure module: no MPI. A server applies a push chunk by chunk while the worker is still
checking it (mpips.worker.kvworker); before a chunk is applied, ``save`` copies the rows it is about
to change (values and every optimizer-state array), and ``rollback`` writes them back, in
reverse order, if the worker withdraws the push. Buffers grow to the largest push seen and
are reused, so saving costs one copy of the touched rows and no allocation.

A user update rule (mpips.core.rules) that keeps state outside ``values`` and ``state`` is
not covered: only those arrays are restored.
"""
from __future__ import annotations

import numpy as np

from ..kernels import rows as row_kernels


class UndoLog:
    """Saved rows of the chunks of the current push, for ``values`` and ``state``."""

    def __init__(self, width: int, state_names: tuple[str, ...]):
        self.width = width
        self.state_names = state_names
        self.active = False
        self._entries: list[tuple[int, int, int, bool]] = []  # (first row, offset, n, scattered)
        self._used = 0
        self._limit = 0
        self._rows = np.empty(0, np.int64)
        self._saved = {name: np.empty((0, width), np.float32) for name in ("", *state_names)}

    def begin(self, num_keys: int) -> None:
        """Start logging a push of at most ``num_keys`` rows."""
        if self._rows.size < num_keys:
            self._rows = np.empty(num_keys, np.int64)
            self._saved = {name: np.empty((num_keys, self.width), np.float32)
                           for name in self._saved}
        self._entries.clear()
        self._used = 0
        self._limit = num_keys
        self.active = True

    def stop(self) -> None:
        """Keep what was applied: no more saving, nothing to roll back."""
        self.active = False
        self._entries.clear()
        self._used = 0

    def save(self, values: np.ndarray, state: dict, first: int | None, rows, n: int) -> None:
        """Save the ``n`` rows a chunk is about to change: the run ``first..first+n-1`` when
        ``first`` is not None, else ``rows`` (int64, -1 for rows not stored, skipped)."""
        if not self.active:
            return
        lo, hi = self._used, self._used + n
        if hi > self._limit:
            raise RuntimeError(f"undo log: a push announced {self._limit} keys but sent more")
        for name, saved in self._saved.items():
            source = values if name == "" else state[name]
            if first is not None:
                saved[lo:hi] = source[first:first + n]
            else:
                row_kernels.gather_rows(source, rows, np.float32(0), saved[lo:hi])
        if first is None:
            self._rows[lo:hi] = rows
        self._entries.append((-1 if first is None else first, lo, n, first is None))
        self._used = hi

    def rollback(self, values: np.ndarray, state: dict) -> None:
        """Write every saved row back (newest chunk first) and stop logging."""
        for first, lo, n, scattered in reversed(self._entries):
            for name, saved in self._saved.items():
                target = values if name == "" else state[name]
                if scattered:
                    row_kernels.scatter_rows(saved[lo:lo + n], target, self._rows[lo:lo + n])
                else:
                    target[first:first + n] = saved[lo:lo + n]
        self.stop()
