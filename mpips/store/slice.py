"""Server-side storage of one table's slice: what dense slices (mpips.store.dense_slice, rows
in RMA windows) and sparse slices (mpips.store.sparse_slice) share; which one a table gets:
mpips.store.slices.make_slice.

A slice applies pushes and answers pulls chunk by chunk; ``prev`` is the last key of the
previous chunk of the same request. Each chunk is validated (sorted, unique, every key's
position inside the slice's range: mpips.wire.message) before a kernel indexes with it; a chunk
equal to the one the same worker sent last at the same place in its request was validated
then, and a sparse slice reuses its rows (mpips.store.request_cache).

A push is all or nothing: a push the worker checks while it travels (``begin_undoable_push``,
mpips.wire.message) logs the rows each chunk changes (mpips.store.undo) and the keys it inserts, until
``keep_push``; ``roll_back_push`` restores them. Other pushes are checked by the worker before
they are sent and by the server before any row changes.

From a slice's first checkpoint (saved or restored) on, it tracks the rows pushes change and
the keys it evicts (``track_changes``), so that the next checkpoint may hold only those
(``changes``: an incremental checkpoint, mpips.ckpt.checkpoint); ``since`` names the
checkpoint they are changes against.
"""
from __future__ import annotations

import numpy as np

from ..wire.message import check_key_chunk
from ..core.spec import TableSpec
from .undo import UndoLog

FLOAT = np.float32


class Slice:
    """Common part of dense and sparse slices: the rule, its state, the undo log, and the
    checks every chunk goes through."""

    caches_requests = False
    """Whether chunks are received into ``receive_buffer`` (mpips.store.request_cache)."""

    def __init__(self, spec: TableSpec, server_index: int):
        self.spec = spec
        self.rule = spec.make_rule()
        self.key_range = spec.partition.range_of(server_index) if server_index >= 0 else None
        self._rows = np.empty(0, np.int64)
        self.undo = UndoLog(spec.width, self.rule.state_names)
        self.since: dict | None = None  # the checkpoint changes are tracked against, if any

    def rows_buffer(self, n: int) -> np.ndarray:
        if self._rows.size < n:
            self._rows = np.empty(n, np.int64)
        return self._rows[:n]

    def check(self, keys: np.ndarray, prev: int | None) -> None:
        """MessageError unless ``keys`` are sorted, unique, after ``prev`` and placed here."""
        check_key_chunk(keys, self.key_range.begin, self.key_range.end, prev,
                        hashed=self.spec.hashed)

    def push_whole(self, keys, grads) -> np.ndarray | None:
        """Apply a whole push at once (keys validated here); returns what push_chunk does."""
        return self.push_chunk(keys, grads, None)

    def begin_undoable_push(self, num_keys: int) -> None:
        """Log the rows the next ``num_keys`` pushed keys change, until ``keep_push``."""
        self.undo.begin(num_keys)

    def keep_push(self) -> None:
        """The push stands: stop logging."""
        self.undo.stop()

    def roll_back_push(self) -> None:
        """Undo every chunk of the current push."""
        self.undo.rollback(self.values, self.state)

    def finish_push(self) -> None:
        """The current push is over (kept or rolled back)."""

    def settle(self, clock: int) -> int:
        """Between requests, at table clock ``clock``: drop rows by the table's eviction
        policy; returns how many (dense slices keep every row)."""
        return 0

    def track_changes(self, since: dict | None) -> None:
        """Track changes from now on against checkpoint ``since`` (None: stop caring which),
        forgetting those tracked before (that checkpoint holds them)."""
        raise NotImplementedError

    def changes(self) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
        """(keys sorted, values, state, removed keys sorted) of the rows changed and the keys
        removed since ``track_changes``: copies, for an incremental checkpoint."""
        raise NotImplementedError

    def abandon_pending(self) -> None:
        """Forget what a push that will not finish (its worker died) left half done."""

    @property
    def arrays(self) -> int:
        """Arrays per row in a replica batch (mpips.wire.replica): values, then state."""
        return 1 + len(self.rule.state_names)

    def _out(self, out_buffer, n: int) -> np.ndarray:
        return out_buffer((n, self.spec.width))
