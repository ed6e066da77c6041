"""Key ranges and how a table's key space is split across servers. Pure module: no MPI.

A table's key space is ``[0, size)``: ``size`` is the row count of a dense table and
``2**64`` for a sparse table. Server ``i`` of ``S`` owns the contiguous range of *positions*
``[floor(i*size/S), floor((i+1)*size/S))``. A key's position is the key itself under range
placement (dense tables, and sparse tables that ask for it: neighbouring servers own
neighbouring keys, and a sorted key list splits into one run per server) and its mix64
under hash placement (sparse tables by default: any key distribution spreads evenly;
mpips.kernels.placement).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import LayoutError
from ..kernels.placement import mix_keys

KEY_SPACE = 2**64
"""Size of the key space of a sparse table (keys are any uint64)."""


@dataclass(frozen=True)
class KeyRange:
    """Half-open key range ``[begin, end)``; Python ints so that ``end`` may be ``2**64``."""

    begin: int
    end: int

    def __post_init__(self):
        if not 0 <= self.begin <= self.end <= KEY_SPACE:
            raise ValueError(f"invalid key range [{self.begin}, {self.end})")

    @property
    def size(self) -> int:
        """Number of keys; may be 2**64, which ``len()`` could not return."""
        return self.end - self.begin

    def __len__(self) -> int:
        return self.end - self.begin  # OverflowError past 2**63 - 1: use .size

    def __bool__(self) -> bool:
        return self.end > self.begin

    def __contains__(self, key: int) -> bool:
        return self.begin <= key < self.end

    def __str__(self) -> str:
        return f"[{self.begin}, {self.end})"


@dataclass(frozen=True)
class RangePartition:
    """Even split of ``[0, size)`` over ``num_servers`` servers, in server order."""

    size: int
    num_servers: int

    def __post_init__(self):
        if self.num_servers < 1:
            raise LayoutError(f"a table needs at least one server, got {self.num_servers}")
        if not 0 < self.size <= KEY_SPACE:
            raise ValueError(f"table size must be in (0, 2**64], got {self.size}")

    def range_of(self, server: int) -> KeyRange:
        """Key range owned by server index ``server`` (0-based among servers)."""
        if not 0 <= server < self.num_servers:
            raise IndexError(f"server index {server} not in [0, {self.num_servers})")
        return KeyRange(self._cut(server), self._cut(server + 1))

    def ranges(self) -> list[KeyRange]:
        """Every server's range, in server order."""
        return [self.range_of(s) for s in range(self.num_servers)]

    def boundaries(self) -> np.ndarray:
        """uint64 begins of servers 1..S-1: the split points of a sorted key list
        (computed once; read-only)."""
        return self._boundaries

    @functools.cached_property
    def _boundaries(self) -> np.ndarray:
        cuts = np.array([self._cut(s) for s in range(1, self.num_servers)], dtype=np.uint64)
        cuts.flags.writeable = False
        return cuts

    def owner(self, key: int) -> int:
        """Index of the server that owns ``key``."""
        if not 0 <= key < self.size:
            raise KeyError(f"key {key} outside [0, {self.size})")
        cuts = self.boundaries()
        return int(np.searchsorted(cuts, np.uint64(key), side="right"))

    def _cut(self, i: int) -> int:
        return (i * self.size) // self.num_servers


def positions(keys: np.ndarray, hashed: bool) -> np.ndarray:
    """The positions of uint64 ``keys``: their mix64 when ``hashed``, else the keys."""
    if not hashed:
        return keys
    out = np.empty(keys.size, np.uint64)
    mix_keys(np.ascontiguousarray(keys, np.uint64), out)
    return out


def ranks_lost_before(environ) -> int:
    """How many ranks earlier launches of this job lost: MPIPS_RANKS_LOST in ``environ``, set
    by ``mpips launch --relaunch`` (0 when unset). LayoutError when it is not a count."""
    text = environ.get("MPIPS_RANKS_LOST", "").strip()
    if not text:
        return 0
    if not text.isdigit():
        raise LayoutError(f"MPIPS_RANKS_LOST must be a count of ranks, got {text!r}")
    return int(text)


def servers_after_loss(requested: int, ranks_lost: int) -> int:
    """Servers of a relaunch on ``ranks_lost`` fewer ranks than a job that asked for
    ``requested``: each lost rank costs a server while more than one is left (servers hold
    nothing a checkpoint does not, and restore re-partitions their key ranges), so the workers,
    who own the data shards and the resume position, stay as they were as long as possible."""
    if requested < 1 or ranks_lost < 0:
        raise LayoutError(f"cannot plan {requested} server(s) after losing {ranks_lost} rank(s)")
    return max(1, requested - ranks_lost)


@dataclass(frozen=True)
class Layout:
    """Which ranks of a launch are servers and which are workers: the last ``num_servers``
    ranks serve, so rank 0 is worker 0 (the rank that prints progress)."""

    num_ranks: int
    num_servers: int

    def __post_init__(self):
        plan = f"a launch of {self.num_ranks} rank(s) with --servers {self.num_servers}"
        if self.num_servers < 1:
            raise LayoutError(f"{plan}: need at least 1 server")
        if self.num_servers >= self.num_ranks:
            raise LayoutError(f"{plan} leaves no worker: use at most {self.num_ranks - 1} "
                              f"server(s), or launch at least {self.num_servers + 1} ranks")

    @property
    def num_workers(self) -> int:
        return self.num_ranks - self.num_servers

    def is_server(self, rank: int) -> bool:
        return rank >= self.num_workers

    def server_rank(self, server_index: int) -> int:
        """World rank of server ``server_index``."""
        return self.num_workers + server_index

    def server_index(self, rank: int) -> int:
        """Index among servers of world rank ``rank`` (-1 for a worker)."""
        return rank - self.num_workers if self.is_server(rank) else -1

    def worker_index(self, rank: int) -> int:
        """Index among workers of world rank ``rank`` (-1 for a server)."""
        return -1 if self.is_server(rank) else rank
