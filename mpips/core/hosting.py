"""Which server hosts each segment of the key space, and which keep its replicas. Pure module.

Every table is cut into ``num_segments = num_servers x per_server`` segments (mpips.core.partition:
equal ranges of positions), so that server h's *home* segments, ``[h*V, (h+1)*V)``, form the
same contiguous range it would own with one segment per server. Each segment has a *chain*:
its home server, then the other servers in an order rotated by the segment's index within
its home (``(h + 1 + (j + t) mod (S - 1)) mod S``, t = 0..S-2). The first living server of the
chain hosts the segment and the next ``replicas`` living ones keep its copies: while every
server lives, segment j of server h is copied to server h+1+j (mod S, skipping h), so the V
segments of one server keep their copies on V different servers (virtual nodes), and when a
server dies its segments move to as many survivors. A server that becomes a replica holder
receives a whole copy; all ranks compute the same hosts from the same set of dead servers,
so no message is needed to agree on them.

Without replicas there is one segment per server (V = 1), as with no failover at all.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..errors import LayoutError, SegmentLost

MAX_SEGMENTS_PER_SERVER = 4
"""Virtual nodes per server with replicas (fewer when there are fewer other servers)."""



def segments_per_server(num_servers: int, replicas: int) -> int:
    """Segments each server is home to: 1 without replicas; with replicas enough that each
    server's segments keep their copies on different servers, at most
    MAX_SEGMENTS_PER_SERVER."""
    if not replicas or num_servers < 2:
        return 1
    return min(num_servers - 1, MAX_SEGMENTS_PER_SERVER)


@dataclass(frozen=True)
class Hosting:
    """Hosts and replica holders of the segments of ``num_servers`` servers, each keeping
    ``replicas`` copies of every segment, given ``dead`` servers."""

    num_servers: int
    replicas: int = 0
    dead: frozenset = field(default_factory=frozenset)

    def __post_init__(self):
        if self.num_servers < 1:
            raise LayoutError(f"need at least one server, got {self.num_servers}")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) \
                or self.replicas < 0:
            raise LayoutError(f"replicas must be an int >= 0, got {self.replicas!r}")
        if self.replicas >= self.num_servers:
            raise LayoutError(f"{self.replicas} replica(s) of each key range need at least "
                              f"{self.replicas + 1} servers, the launch has {self.num_servers}: "
                              f"launch more servers or keep fewer replicas")
        if not self.dead <= set(range(self.num_servers)):
            raise LayoutError(f"dead servers {sorted(self.dead)} outside [0, {self.num_servers})")

    @property
    def per_server(self) -> int:
        return segments_per_server(self.num_servers, self.replicas)

    @property
    def num_segments(self) -> int:
        return self.num_servers * self.per_server

    @property
    def living(self) -> list[int]:
        return [s for s in range(self.num_servers) if s not in self.dead]

    def home(self, segment: int) -> int:
        """The server the segment belongs to while every server lives."""
        return segment // self.per_server

    def home_segments(self, server: int) -> list[int]:
        return list(range(server * self.per_server, (server + 1) * self.per_server))

    def chain(self, segment: int) -> tuple[int, ...]:
        """Every server in the order it hosts or copies ``segment``: home first."""
        home, index = divmod(segment, self.per_server)
        others = self.num_servers - 1
        return (home,) + tuple((home + 1 + (index + t) % others) % self.num_servers
                               for t in range(others))

    @functools.cache
    def holders(self, segment: int) -> tuple[int, ...]:
        """The living servers holding ``segment``: its host, then its replica holders."""
        if not self.replicas:
            home = self.home(segment)
            return () if home in self.dead else (home,)
        living = [s for s in self.chain(segment) if s not in self.dead]
        return tuple(living[:1 + self.replicas])

    def host(self, segment: int) -> int:
        """The server that serves ``segment``. SegmentLost when none holds it."""
        holders = self.holders(segment)
        if not holders:
            raise SegmentLost(f"segment {segment}: every server that held it died"
                              + ("" if self.replicas else " and it had no replica"))
        return holders[0]

    def replicas_of(self, segment: int) -> tuple[int, ...]:
        """The servers keeping copies of ``segment`` (fewer than ``replicas`` when too few
        servers are left)."""
        return self.holders(segment)[1:]

    def hosted_by(self, server: int) -> list[int]:
        """The segments ``server`` serves."""
        return [g for g in range(self.num_segments) if self.holders(g)[:1] == (server,)]

    def copies_on(self, server: int) -> list[int]:
        """The segments whose copy ``server`` keeps."""
        return [g for g in range(self.num_segments) if server in self.replicas_of(g)]

    def after_deaths(self, servers) -> "Hosting":
        """The hosting once ``servers`` died too. Raises SegmentLost when every holder of
        some segment is among them."""
        newly = frozenset(servers) - self.dead
        for segment in range(self.num_segments):
            holders = set(self.holders(segment))
            if holders and holders <= newly:
                raise SegmentLost(f"segment {segment}: server(s) {sorted(holders)} held its keys "
                                  f"and died (servers {sorted(newly)} died at once"
                                  + (")" if self.replicas else "; no replicas)"))
        return Hosting(self.num_servers, self.replicas, self.dead | newly)
