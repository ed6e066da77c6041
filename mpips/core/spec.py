"""Table specifications: what every rank agrees a table is. Pure module: no MPI."""
from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..wire.codec import Codec, codec_from_text
from .consistency import Consistency, as_consistency
from ..errors import TableError
from .admission import AdmitPolicy, parse_admit
from .eviction import EvictPolicy, parse_eviction
from .rules import make_rule
from ..kernels.placement import split_by_owner
from .partition import KEY_SPACE, RangePartition

KINDS = ("dense", "sparse")
PLACEMENTS = ("hash", "range")
"""How keys map to servers: "hash" places a key by the position mix64(key) (any distribution
of keys spreads evenly; the default of sparse tables), "range" by the key itself (contiguous
key ranges per server; dense tables always)."""


@dataclass(frozen=True)
class TableSpec:
    """A named table cut into ``num_segments`` key ranges (mpips.core.hosting: the servers'
    segments): ``kind`` "dense" (keys 0..size-1) or "sparse" (any uint64 key),
    float32 rows of ``width`` values, an update rule from mpips.core.rules, an initial value
    returned for rows never pushed, its id (creation order, identical on every rank), and its
    consistency model (mpips.core.consistency: "async" needs no clocks; "bsp" and "ssp:TAU" need
    every worker to call ``KVWorker.clock()`` at the end of each step), and its codec
    (mpips.wire.codec text such as "keycache,zeros,fp16"; "" sends raw keys and values). A dense
    table with ``one_sided`` is pulled from the servers' RMA windows (mpips.mpi.onesided).
    ``placement`` (PLACEMENTS) says how keys map to servers: "" picks "hash" for sparse
    tables and "range" for dense ones. A sparse table with ``admit`` ("count:K" or "prob:P",
    mpips.core.admission) gives a key its row only at its K-th push, or with probability P at
    each push. ``evict`` ("unseen:STEPS") and ``capacity`` (rows per server slice) make its
    servers drop rows (mpips.core.eviction)."""

    name: str
    kind: str
    table_id: int
    num_segments: int
    size: int = KEY_SPACE
    width: int = 1
    rule: str = "sum"
    rule_params: dict = field(default_factory=dict)
    init: float = 0.0
    consistency: str = "async"
    codec: str = ""
    one_sided: bool = False
    placement: str = ""
    admit: str = ""
    evict: str = ""
    capacity: int = 0

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise TableError(f"table name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise TableError(f"table {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "sparse" and self.size != KEY_SPACE:
            raise TableError(f"table {self.name!r}: a sparse table spans all uint64 keys")
        if not isinstance(self.width, int) or not 1 <= self.width <= 1 << 20:
            raise TableError(f"table {self.name!r}: width must be an int in [1, 2**20], got {self.width!r}")
        if not isinstance(self.size, int) or not 0 < self.size <= KEY_SPACE:
            raise TableError(f"table {self.name!r}: size must be an int in [1, 2**64], got {self.size!r}")
        if isinstance(self.init, bool) or not isinstance(self.init, (int, float)) \
                or not math.isfinite(self.init):
            raise TableError(f"table {self.name!r}: init must be a finite number, got {self.init!r}")
        try:
            make_rule(self.rule, **self.rule_params)  # validates rule name and parameters
        except ValueError as exc:
            raise TableError(f"table {self.name!r}: {exc}") from None
        if not self.placement:
            object.__setattr__(self, "placement", "hash" if self.kind == "sparse" else "range")
        if self.placement not in PLACEMENTS or (self.kind == "dense" and self.placement != "range"):
            raise TableError(f"table {self.name!r}: placement must be one of {PLACEMENTS} "
                             f"(dense tables: 'range'), got {self.placement!r}")
        try:
            policy = parse_admit(self.admit)
        except ValueError as exc:
            raise TableError(f"table {self.name!r}: {exc}") from None
        if policy is not None and self.kind != "sparse":
            raise TableError(f"table {self.name!r}: admit is for sparse tables (a dense table "
                             f"has a row for every key)")
        try:
            eviction = parse_eviction(self.evict, self.capacity)
        except ValueError as exc:
            raise TableError(f"table {self.name!r}: {exc}") from None
        if eviction is not None and self.kind != "sparse":
            raise TableError(f"table {self.name!r}: evict and capacity are for sparse tables "
                             f"(a dense table keeps a row for every key)")
        if self.one_sided not in (True, False) or (self.one_sided and self.kind != "dense"):
            raise TableError(f"table {self.name!r}: one_sided=True is for dense tables "
                             f"(workers read their rows straight from the servers' windows)")
        try:
            object.__setattr__(self, "consistency", str(as_consistency(self.consistency)))
            codec = codec_from_text(self.codec)
            # read on every pull (mpips.wire.zero_rows): decided here, off the request path
            object.__setattr__(self, "_drops_zero_rows", codec is not None and codec.drop_zeros)
        except ValueError as exc:
            raise TableError(f"table {self.name!r}: {exc}") from None

    @property
    def hashed(self) -> bool:
        """Whether keys are placed by their hashed position (mpips.kernels.placement)."""
        return self.placement == "hash"

    def split(self, keys: np.ndarray) -> list[tuple[int, slice | np.ndarray]]:
        """(segment, part) for every segment (mpips.core.hosting) that holds some of the sorted
        uint64 ``keys``: ``keys[part]`` are its keys, still sorted. ``part`` is a slice when
        they are a run (range placement, or a single segment), else an int64 index array."""
        n, count = keys.size, self.num_segments
        if count == 1:
            return [(0, slice(0, n))] if n else []
        if not self.hashed:
            bounds = np.concatenate([[0], np.searchsorted(keys, self.partition.boundaries()),
                                     [n]])
            return [(segment, slice(int(bounds[segment]), int(bounds[segment + 1])))
                    for segment in range(count) if bounds[segment + 1] > bounds[segment]]
        order = np.empty(n, np.int64)
        counts = np.zeros(count, np.int64)
        split_by_owner(keys, self.partition.boundaries(), True, order, counts)
        ends = np.cumsum(counts)
        return [(segment, order[ends[segment] - counts[segment]:ends[segment]])
                for segment in range(count) if counts[segment]]

    @functools.cached_property
    def admission(self) -> AdmitPolicy | None:
        """The table's admission policy (None: every pushed key gets a row at once)."""
        return parse_admit(self.admit)

    @functools.cached_property
    def eviction(self) -> EvictPolicy | None:
        """The table's eviction policy (None: rows stay until the table goes)."""
        return parse_eviction(self.evict, self.capacity)

    @property
    def zero_rows_dropped(self) -> bool:
        """Whether replies to pulls leave out all-zero rows (the codec's ``zeros`` word;
        mpips.wire.zero_rows)."""
        return self._drops_zero_rows

    def make_codec(self) -> Codec | None:
        """A fresh Codec for pushes to this table (None: raw keys and values)."""
        return codec_from_text(self.codec)

    @functools.cached_property
    def model(self) -> Consistency:
        """The table's consistency model (parsed once: it is read on every request)."""
        return as_consistency(self.consistency)

    @functools.cached_property
    def partition(self) -> RangePartition:
        return RangePartition(self.size, self.num_segments)

    def make_rule(self):
        """A fresh update-rule object for this table."""
        return make_rule(self.rule, **self.rule_params)

    def fingerprint(self) -> int:
        """A 31-bit checksum of everything that must match across ranks."""
        text = repr((self.name, self.kind, self.table_id, self.num_segments, self.size,
                     self.width, self.rule, sorted(self.rule_params.items()), float(self.init),
                     self.consistency, self.codec, bool(self.one_sided), self.placement,
                     self.admit, self.evict, self.capacity))
        return zlib.crc32(text.encode()) & 0x7FFFFFFF
