"""Eviction of sparse-table rows: which rows a server drops. Pure module: no MPI.

``evict="unseen:STEPS"`` drops the rows not pushed during the last STEPS clocks of the table
(Monolith's expiring embeddings, TorchRec's TTL); ``capacity=N`` keeps at most N rows per
server slice, dropping the least recently pushed ones first. A dropped key reads as the
table's ``init`` again, and a later push gives it a fresh row (through admission, if the
table has it). Servers evict between requests (mpips.server.segments.Segments.settle): never
in the middle of a push, so all-or-nothing pushes and their undo log are untouched, and a
slice with ``capacity`` holds at most N rows whenever no request is being served (during one,
also that request's new keys).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_UNSEEN = re.compile(r"^unseen:(\d+)$")


@dataclass(frozen=True)
class EvictPolicy:
    """``steps``: drop rows not pushed in that many clocks (None: never for age);
    ``capacity``: at most that many rows per slice (None: no bound)."""

    steps: int | None = None
    capacity: int | None = None


def parse_eviction(evict: str | None, capacity) -> EvictPolicy | None:
    """The policy of a table's ``evict`` text ("" / None, or "unseen:STEPS", STEPS >= 1) and
    ``capacity`` (0 / None, or an int >= 1); None when neither is set. ValueError naming the
    option."""
    steps = None
    if evict:
        match = _UNSEEN.match(evict.strip()) if isinstance(evict, str) else None
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"evict must be 'unseen:STEPS' (an integer STEPS >= 1), got "
                             f"{evict!r}")
        steps = int(match.group(1))
    if capacity in (None, 0):
        capacity = None
    elif isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be an integer >= 1 (rows per server), got {capacity!r}")
    if steps is None and capacity is None:
        return None
    return EvictPolicy(steps, capacity)
