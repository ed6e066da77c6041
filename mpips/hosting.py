"""Which server hosts each key range, and which keeps its replica. Pure module: no MPI.

Every table is cut into one *segment* per server of the launch (mpips.partition: server i's
key range is segment i); segments never change, only who serves them. While every server
lives, server i hosts segment i and, with one replica, server i+1 (mod S) keeps a copy of
it: the servers form a ring, and each key range is replicated to its successor. When a
server dies its segments move to the next living server clockwise, which is the one that
held their copy; every segment whose replica died or moved is copied afresh to the next
living server after its host. All ranks compute the same hosts from the same set of dead
servers, so no message is needed to agree on them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import LayoutError

MAX_REPLICAS = 1


class SegmentLost(LayoutError):
    """Every server that held some segment died: its keys are gone from memory (the job can
    only resume from a checkpoint)."""


@dataclass(frozen=True)
class Hosting:
    """Hosts and replica holders of the ``num_servers`` segments, given ``dead`` servers."""

    num_servers: int
    replicas: int = 0
    dead: frozenset = field(default_factory=frozenset)

    def __post_init__(self):
        if self.num_servers < 1:
            raise LayoutError(f"need at least one server, got {self.num_servers}")
        if not 0 <= self.replicas <= MAX_REPLICAS:
            raise LayoutError(f"replicas must be 0 or 1 (this mpips keeps at most "
                              f"{MAX_REPLICAS} copy of each key range), got {self.replicas}")
        if self.replicas and self.num_servers < 2:
            raise LayoutError("a replica needs a second server: launch with servers >= 2 or "
                              "replicas=0")
        if not self.dead <= set(range(self.num_servers)):
            raise LayoutError(f"dead servers {sorted(self.dead)} outside [0, {self.num_servers})")

    @property
    def living(self) -> list[int]:
        return [s for s in range(self.num_servers) if s not in self.dead]

    def _next_living(self, server: int, *, after: bool) -> int | None:
        """The first living server at or (``after``) after ``server``, clockwise."""
        for step in range(1 if after else 0, self.num_servers):
            candidate = (server + step) % self.num_servers
            if candidate not in self.dead:
                return candidate
        return None

    def host(self, segment: int) -> int:
        """The server that serves ``segment``: the first living server at or after it."""
        host = self._next_living(segment, after=False)
        if host is None or (not self.replicas and host != segment):
            raise SegmentLost(f"segment {segment}: its server died and kept no replica")
        return host

    def replica(self, segment: int) -> int | None:
        """The server keeping the copy of ``segment``, or None (no replicas, or one server
        left)."""
        if not self.replicas:
            return None
        replica = self._next_living(self.host(segment), after=True)
        return None if replica == self.host(segment) else replica

    def hosted_by(self, server: int) -> list[int]:
        """The segments ``server`` serves."""
        return [s for s in range(self.num_servers) if self.host(s) == server]

    def copies_on(self, server: int) -> list[int]:
        """The segments whose replica ``server`` keeps."""
        return [s for s in range(self.num_servers) if self.replica(s) == server]

    def after_deaths(self, servers) -> "Hosting":
        """The hosting once ``servers`` died too. Raises SegmentLost when some segment's host
        and its replica's holder are both among them (or it had no replica)."""
        newly = frozenset(servers) - self.dead
        for segment in range(self.num_servers):
            holders = {self.host(segment), self.replica(segment)} - {None}
            if holders <= newly:
                raise SegmentLost(f"segment {segment}: server(s) {sorted(holders)} held its keys "
                                  f"and died (servers {sorted(newly)} died at once)")
        return Hosting(self.num_servers, self.replicas, self.dead | newly)
