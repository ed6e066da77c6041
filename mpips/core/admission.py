"""Feature admission of sparse tables: which pushed keys get a row. Pure module: no MPI.

A table made with ``admit="count:K"`` gives a key its row at its K-th push (Monolith's
frequency filter); ``admit="prob:P"`` gives it one with probability P at each push. Until
then the key's pushes are only counted, in a bounded count-min sketch (mpips.kernels.sketch:
SKETCH_DEPTH x SKETCH_WIDTH uint32 counters, 16 MiB per slice, whatever the number of keys),
its gradients are dropped, and a pull of it reads the table's ``init``: one-off ids, the bulk
of a click log's features, never take a row. The sketch over-counts (never under-counts), so a
key is admitted at its K-th push or, rarely, earlier.

The sketch is part of the model: checkpoints save it with the slice's rows, and a restore on
another number of servers gives each slice the sum of the saved sketches (an over-count
again, never an under-count). A push that is rolled back (mpips.store.undo) is uncounted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..kernels import sketch as K

SKETCH_DEPTH = 4
SKETCH_WIDTH = 1 << 20
SKETCH_SHAPE = (SKETCH_DEPTH, SKETCH_WIDTH)
HALVE_EVERY = SKETCH_WIDTH // 4
"""Counted pushes (of keys without a row) of a slice between two halvings of its sketch: at
most a quarter of a row's counters are then nonzero, so a key never pushed before reads as
pushed at least once (all its cells nonzero) less than 0.4 % of the time."""

_POLICY = re.compile(r"^(count|prob):(.+)$")


@dataclass(frozen=True)
class AdmitPolicy:
    """``kind`` "count" (``value`` the push that admits, an int >= 1) or "prob" (``value``
    the chance per push, in (0, 1])."""

    kind: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}:{int(self.value) if self.kind == 'count' else self.value:g}"


def parse_admit(text: str | None) -> AdmitPolicy | None:
    """The policy of a table's ``admit`` text ("" or None: every key gets a row at once).
    ValueError naming what is accepted."""
    if not text:
        return None
    match = _POLICY.match(str(text).strip()) if isinstance(text, str) else None
    problem = f"admit must be 'count:K' (an integer K >= 1) or 'prob:P' (0 < P <= 1), got " \
              f"{text!r}"
    if match is None:
        raise ValueError(problem)
    kind, number = match.groups()
    try:
        value = int(number) if kind == "count" else float(number)
    except ValueError:
        raise ValueError(problem) from None
    if (kind == "count" and value < 1) or (kind == "prob" and not 0 < value <= 1):
        raise ValueError(problem)
    return AdmitPolicy(kind, float(value))


class Admission:
    """The admission sketch of one sparse slice and what it decided: ``admitted`` (keys given
    a row) and ``deferred`` (pushes of keys left without one) since the slice was made."""

    def __init__(self, policy: AdmitPolicy, shape: tuple[int, int] = SKETCH_SHAPE,
                 halve_every: int = HALVE_EVERY):
        self.policy = policy
        self.counts = np.zeros(shape, np.uint32)  # pages untouched until counted
        self.admitted = self.deferred = 0
        self.halve_every, self.counted, self.halvings = halve_every, 0, 0
        self._kind = K.COUNT if policy.kind == "count" else K.PROB
        self._threshold = np.uint32(policy.value if policy.kind == "count" else 0)
        chance = min(policy.value, 1.0) * 2.0**64 if policy.kind == "prob" else 0.0
        self._chance = np.uint64(min(chance, 2.0**64 - 2048))  # P = 1: every draw but ~0
        self._undo: list[tuple[np.ndarray, np.ndarray, int, int, int]] | None = None

    def admit(self, keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Count a push of ``keys`` (rows[i] < 0: not stored) and return the mask of the ones
        that get a row now."""
        admit = np.empty(keys.size, np.bool_)
        changed = np.empty(keys.size * self.counts.shape[0], np.int64)
        old = np.empty(changed.size, np.uint32)
        n = K.count_and_admit(self.counts, keys, rows, self._kind, self._threshold,
                              self._chance, admit, changed, old)
        admitted = int(np.count_nonzero(admit))
        deferred = int(np.count_nonzero(rows < 0)) - admitted
        self.admitted += admitted
        self.deferred += deferred
        self.counted += admitted + deferred
        if self._undo is not None:
            self._undo.append((changed, old, n, admitted, deferred))
        return admit

    def begin_undoable(self) -> None:
        """Log what the next ``admit`` calls change, until ``keep`` or ``roll_back``."""
        self._undo = []

    def keep(self) -> None:
        self._undo = None

    def roll_back(self) -> None:
        """Uncount every ``admit`` since ``begin_undoable``."""
        for changed, old, n, admitted, deferred in reversed(self._undo or []):
            K.restore_cells(self.counts, changed, old, n)
            self.admitted -= admitted
            self.deferred -= deferred
            self.counted -= admitted + deferred
        self._undo = None

    def age(self) -> bool:
        """Between requests (no push being logged): halve every counter once HALVE_EVERY
        pushes were counted since the last halving; returns whether it did."""
        if self.counted < self.halve_every or self._undo is not None:
            return False
        np.right_shift(self.counts, 1, out=self.counts)
        self.counted = 0
        self.halvings += 1
        return True

    def estimates(self, keys: np.ndarray) -> np.ndarray:
        """How often each key was pushed without a row, as the sketch estimates it."""
        out = np.empty(keys.size, np.uint32)
        K.estimates(self.counts, np.ascontiguousarray(keys, np.uint64), out)
        return out

    def load(self, sketches: list[np.ndarray]) -> None:
        """Replace the counts by the sum of ``sketches`` (saved ones: one when the slice is
        the same as the one saved, several when restoring on other servers)."""
        self.counts = np.zeros(self.counts.shape, np.uint32)
        for counts in sketches:
            if counts.shape != self.counts.shape or counts.dtype != np.uint32:
                raise ValueError(f"an admission sketch of {counts.shape} {counts.dtype}, "
                                 f"expected {self.counts.shape} uint32")
            K.add_saturating(self.counts, counts)
