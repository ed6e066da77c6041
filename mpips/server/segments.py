"""The segments a server serves (API layer): which key segments (mpips.core.hosting) this
server answers for, each a slice of every table (mpips.store.slice).

A server starts with its home segments. With replicas it also serves the segments of dead
servers it took over (mpips.server.replication adds them, and installs ``await_takeover`` so
that a request for a segment whose host died, which a worker may send before this server
learned of the death, waits for the takeover instead of being refused).
"""
from __future__ import annotations

from collections.abc import Callable

from ..errors import MessageError
from ..store.slice import Slice


class Segments:
    """``hosted``: segment -> its slice of every table, in table id order."""

    def __init__(self, server_index: int, home: dict[int, list[Slice]], num_segments: int):
        self.server_index = server_index
        self.hosted: dict[int, list[Slice]] = dict(home)
        self.num_segments = num_segments
        self.await_takeover: Callable[[int], None] | None = None

    def slice_for(self, segment: int, table_id: int) -> Slice:
        """The slice of ``table_id`` in ``segment``; MessageError if this server does not
        serve ``segment``."""
        if segment not in self.hosted and self.await_takeover is not None:
            self.await_takeover(segment)
        try:
            return self.hosted[segment][table_id]
        except KeyError:
            raise MessageError(f"segment {segment} is not served by server "
                               f"{self.server_index} (it serves "
                               f"{sorted(self.hosted)})") from None

    def settle(self, clock_of: Callable[[int], int], *, clocked: bool) -> int:
        """Between requests: let the sparse slices drop the rows their table's eviction
        policy says (mpips.core.eviction) and record their size, ``clock_of(table_id)`` giving
        the table's clock; after a request that was not a clock message (``clocked`` False)
        only the slices with a capacity. Returns how many rows were dropped."""
        return sum(s.settle(clock_of(s.spec.table_id)) for s in self.slices()
                   if s.spec.kind == "sparse" and (clocked or s.spec.capacity))

    def slices(self) -> list[Slice]:
        """Every slice of every segment this server serves."""
        return [s for slices in self.hosted.values() for s in slices]
