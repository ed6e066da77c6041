"""The copies a server keeps of other servers' segments (API layer; with replicas only).

Per copied segment (mpips.core.hosting: the segments this server is a replica holder of):
its slice of every table (None until the segment's whole copy has arrived: after a restore
or a failover, a holder starts without rows), the BSP pushes its host accepted and has not
applied yet (the mirror), and the place in the segment's chain of the host whose rows the
copy holds. mpips.server.replication receives the batches (mpips.wire.replica) and hands
each one here; on a takeover it takes a copy over whole.
"""
from __future__ import annotations

import numpy as np

from ..errors import MessageError, SegmentLost
from ..store.slice import Slice
from ..store.slices import make_slice
from ..wire.replica import Kind
from .whole_pushes import StashedPush


class Copies:
    """The copies of one server; ``specs``: every table, in table id order."""

    def __init__(self, specs, segments, restored: bool):
        self.specs = list(specs)
        self.slices: dict[int, list[Slice | None]] = {
            seg: [None] * len(self.specs) if restored else
            [make_slice(spec, seg, None) for spec in self.specs] for seg in segments}
        self.mirror: dict[int, list[StashedPush]] = {}  # segment -> accepted, unapplied
        # segment -> place in the segment's chain of the host whose rows its copy holds: a
        # host that took over comes later in the chain, and a batch from an earlier one is
        # stale (sent by a host that died, it may arrive after the new host's whole copy)
        self._source: dict[int, int] = {seg: 0 for seg in self.slices}

    def __contains__(self, segment: int) -> bool:
        return segment in self.slices

    def arrived(self) -> list[Slice]:
        """Every copy slice that holds rows already (a restored server's copies arrive from
        their hosts once serving starts)."""
        return [s for slices in self.slices.values() for s in slices if s is not None]

    def is_stale(self, segment: int, place: int) -> bool:
        """Whether a batch of ``segment`` from the host at ``place`` in its chain comes from
        a host that died: the copy holds its successor's rows already."""
        return place < self._source.get(segment, 0)

    def apply(self, batch, source: int, place: int, keys: np.ndarray, at: np.ndarray,
              rows: np.ndarray) -> None:
        """Apply a ROWS, TRANSFER or STASH batch (not stale) of ``source``, the host at
        ``place`` in the segment's chain. MessageError when it cannot apply (rows before the
        segment's whole copy)."""
        segment = batch.segment
        if batch.kind is Kind.STASH:
            self.mirror.setdefault(segment, []).append(StashedPush(
                batch.table_id, keys, rows, segment, *batch.entry, batch.clock))
            return
        if batch.kind is Kind.TRANSFER:
            self._source[segment] = place
            copy = self.slices.setdefault(segment, [None] * len(self.specs))
            copy[batch.table_id] = make_slice(self.specs[batch.table_id], segment, None)
            if batch.table_id == 0:
                self.mirror[segment] = []
        elif segment not in self.slices:
            raise MessageError(f"server {source} sent rows of segment {segment} before its "
                               f"whole copy")
        copy = self.slices[segment][batch.table_id]
        if copy is None:
            raise MessageError(f"server {source} sent rows of table {batch.table_id} of "
                               f"segment {segment} before its whole copy")
        copy.put_rows_at(keys, at, rows)
        if batch.kind is Kind.ROWS and batch.entry is not None:  # that stashed push is applied
            self.mirror[segment] = [e for e in self.mirror.get(segment, [])
                                    if (e.worker, e.seq) != batch.entry]

    def take_over(self, segment: int, me: int) -> tuple[list[Slice], list[StashedPush]]:
        """Server ``me`` takes ``segment`` over: its slices and its mirrored BSP pushes.
        SegmentLost when its whole copy had not arrived yet."""
        if segment not in self.slices or None in self.slices[segment]:
            raise SegmentLost(f"segment {segment}: server {me} was to take it over but its "
                              f"whole copy had not arrived yet")
        self._source.pop(segment, None)
        return self.slices.pop(segment), self.mirror.pop(segment, [])

    def drop(self, segment: int) -> None:
        """This server holds no copy of ``segment`` any more."""
        self.slices.pop(segment, None)
        self.mirror.pop(segment, None)
        self._source.pop(segment, None)
