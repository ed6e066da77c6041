"""What a checkpoint is made of: names, table metadata, one server's slice, one shard's summary.

Pure module: no MPI, no h5py. A checkpoint of step N written by S servers is the directory
``<root>/step-<N:012d>/`` holding ``shard-<i:05d>-of-<S:05d>.h5`` for i in [0, S) and
``MANIFEST.json``, written last; only a directory with a valid manifest is a checkpoint.

Integers that may reach 2**64 (a sparse table's size, the end of the last key range) do not
fit uint64/int64, so the manifest and the shard attributes store every table size and key-range
bound as a decimal string ("18446744073709551616"); row counts, widths and ids are plain ints.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..core.rules import make_rule
from ..core.partition import KEY_SPACE, KeyRange, positions
from ..core.spec import KINDS, PLACEMENTS, TableSpec
from ..errors import InvalidSliceError, ManifestError

FORMAT_NAME = "mpips-checkpoint"
FORMAT_VERSION = 3
"""The newest format this code reads and writes; bumped when a reader of the previous version
could misread a new checkpoint (2: sparse tables placed by hashed position, whose shards' key
ranges are ranges of positions; 3: incremental checkpoints, which hold only changed rows)."""
FULL_VERSION = 2
"""The version a full checkpoint is written with: it is readable by every mpips that reads
format 2, while an incremental one (FORMAT_VERSION) is refused by those, as it must be."""
MANIFEST = "MANIFEST.json"
STEP_DIR_RE = re.compile(r"^step-(\d{12})$")
SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})\.h5$")


def step_dir_name(step: int) -> str:
    """``step-000000000042`` for step 42."""
    if not isinstance(step, (int, np.integer)) or not 0 <= step < 10**12:
        raise ValueError(f"checkpoint step must be an int in [0, 10**12), got {step!r}")
    return f"step-{int(step):012d}"


def shard_name(server_index: int, num_servers: int) -> str:
    """``shard-00001-of-00004.h5`` for server 1 of 4."""
    if not 0 <= server_index < num_servers < 10**5:
        raise ValueError(f"server index {server_index} of {num_servers} servers is out of range")
    return f"shard-{server_index:05d}-of-{num_servers:05d}.h5"


def big_int(text, what: str, where) -> int:
    """Parse a decimal-string integer of the format (sizes, key bounds); ManifestError if not."""
    if isinstance(text, bool) or not isinstance(text, (str, int)) or not str(text).isdigit():
        raise ManifestError(where, f"{what} must be a decimal string, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class TableMeta:
    """Everything a restore needs to recreate a table (TableSpec minus the server count)."""

    name: str
    kind: str
    size: int
    width: int
    rule: str
    rule_params: dict
    init: float
    table_id: int
    state_names: tuple[str, ...]
    placement: str = "range"
    """How the shards' key ranges cut the keys (mpips.core.spec.PLACEMENTS): "hash", ranges of
    hashed positions; "range" (every table before format 2), ranges of keys."""

    @classmethod
    def from_spec(cls, spec: TableSpec) -> "TableMeta":
        return cls(spec.name, spec.kind, spec.size, spec.width, spec.rule, dict(spec.rule_params),
                   float(spec.init), spec.table_id, tuple(spec.make_rule().state_names),
                   spec.placement)

    @property
    def hashed(self) -> bool:
        return self.placement == "hash"

    def spec(self, num_segments: int) -> TableSpec:
        """The TableSpec of this table cut into ``num_segments`` segments (e.g. a restore on
        another number of servers)."""
        return TableSpec(self.name, self.kind, self.table_id, num_segments, self.size, self.width,
                         self.rule, dict(self.rule_params), self.init, placement=self.placement)

    def to_json(self) -> dict:
        return {"kind": self.kind, "size": str(self.size), "width": self.width, "rule": self.rule,
                "rule_params": self.rule_params, "init": self.init, "table_id": self.table_id,
                "state_names": list(self.state_names), "placement": self.placement}

    @classmethod
    def from_json(cls, name: str, obj: dict, where) -> "TableMeta":
        """Parse a manifest entry; ManifestError naming ``where`` on any bad field."""
        try:
            meta = cls(name, obj["kind"], big_int(obj["size"], f"table {name!r} size", where),
                       int(obj["width"]), obj["rule"], dict(obj["rule_params"]), float(obj["init"]),
                       int(obj["table_id"]), tuple(obj["state_names"]),
                       obj.get("placement", "range"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(where, f"table {name!r}: bad or missing field ({exc!r})") from None
        if meta.kind not in KINDS or meta.width < 1 or not 0 < meta.size <= KEY_SPACE \
                or meta.placement not in PLACEMENTS \
                or (meta.kind == "dense" and meta.placement != "range"):
            raise ManifestError(where, f"table {name!r}: invalid kind/size/width/placement {obj!r}")
        return meta


@dataclass
class SliceData:
    """One server's slice of one table, as plain numpy arrays (the writer's input).

    ``values`` float32 (n, width); dense: rows are keys ``key_range.begin + i`` (n equals
    the range size, ``keys`` None); sparse: ``keys`` uint64 (n,), sorted, unique, each key's
    position (mpips.core.partition.positions) inside ``key_range``. ``state`` maps the rule's state names (e.g. AdaGrad "accum") to float32
    (n, width) arrays; ``clocks`` is an optional int64 1-D vector clock; ``admission`` the
    slice's admission sketch (uint32 2-D, mpips.core.admission), if its table has one.

    A *delta* slice (an incremental checkpoint: ``removed`` is not None) holds only the rows
    changed since the checkpoint it builds on, with their ``keys`` whatever the kind (a
    dense table's changed keys, sorted), and ``removed``: the uint64 keys dropped since then
    (sorted, unique, placed in ``key_range``; always empty for a dense table).
    """

    meta: TableMeta
    key_range: KeyRange
    values: np.ndarray
    keys: np.ndarray | None = None
    state: dict = field(default_factory=dict)
    clocks: np.ndarray | None = None
    admission: np.ndarray | None = None
    removed: np.ndarray | None = None

    @classmethod
    def from_spec(cls, spec: TableSpec, key_range: KeyRange, values, *, keys=None, state=None,
                  clocks=None, admission=None, removed=None) -> "SliceData":
        return cls(TableMeta.from_spec(spec), key_range, values, keys, dict(state or {}), clocks,
                   admission, removed)

    @property
    def delta(self) -> bool:
        """Whether this slice holds only changed rows (an incremental checkpoint's)."""
        return self.removed is not None

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    def validate(self) -> None:
        """InvalidSliceError naming the table unless the arrays match the metadata."""
        meta, bad = self.meta, lambda msg: InvalidSliceError(f"table {self.name!r}", msg)
        if not meta.name or "/" in meta.name or meta.name in (".", ".."):
            raise bad("a checkpointed table name must be non-empty, without '/', not '.' or '..'")
        if self.key_range.end > meta.size:
            raise bad(f"key range {self.key_range} exceeds the table size {meta.size}")
        _check_rows(self.values, "values", None, meta.width, bad)
        n = self.rows
        if self.delta:
            _check_keys(self.keys, n, self.key_range, meta.hashed, bad, "changed keys")
            _check_keys(self.removed, self.removed.shape[0] if isinstance(
                self.removed, np.ndarray) else 0, self.key_range, meta.hashed, bad,
                "removed keys")
            if meta.kind == "dense" and self.removed.size:
                raise bad("a dense table removes no keys")
        elif meta.kind == "dense" and (self.keys is not None or n != self.key_range.size):
            raise bad(f"a dense slice has no keys and {self.key_range.size} rows, got {n}")
        if meta.kind == "sparse" and not self.delta:
            _check_keys(self.keys, n, self.key_range, meta.hashed, bad)
        if set(self.state) != set(meta.state_names):
            raise bad(f"state arrays {sorted(self.state)} != rule state {list(meta.state_names)}")
        for name, array in self.state.items():
            _check_rows(array, f"state {name!r}", n, meta.width, bad)
        if self.clocks is not None and (self.clocks.dtype != np.int64 or self.clocks.ndim != 1):
            raise bad(f"clocks must be a 1-D int64 array, got {self.clocks.dtype} {self.clocks.shape}")
        if self.admission is not None and (self.admission.dtype != np.uint32
                                           or self.admission.ndim != 2 or meta.kind != "sparse"):
            raise bad(f"an admission sketch is a 2-D uint32 array of a sparse table, got "
                      f"{self.admission.dtype} {self.admission.shape} ({meta.kind})")
        make_rule(meta.rule, **meta.rule_params)


def _check_rows(array, what, n, width, bad) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.ndim != 2:
        raise bad(f"{what} must be a 2-D float32 numpy array")
    if array.shape[1] != width or (n is not None and array.shape[0] != n):
        raise bad(f"{what} has shape {array.shape}, expected ({n if n is not None else 'n'}, {width})")


def _check_keys(keys, n, key_range: KeyRange, hashed: bool, bad, what="sparse keys") -> None:
    if not isinstance(keys, np.ndarray) or keys.dtype != np.uint64 or keys.shape != (n,):
        raise bad(f"{what} must be a uint64 array of shape ({n},)")
    if n and not (keys[1:] > keys[:-1]).all():
        raise bad(f"{what} must be sorted and unique")
    if n and not keys_inside(keys, key_range, hashed):
        where = "hashed positions" if hashed else "keys"
        raise bad(f"{what}: {where} leave the key range {key_range}")


def keys_inside(keys: np.ndarray, key_range: KeyRange, hashed: bool) -> bool:
    """Whether every key's position lies in ``key_range`` (keys sorted unless ``hashed``)."""
    if not keys.size:
        return True
    if not hashed:
        return key_range.begin <= int(keys[0]) and int(keys[-1]) < key_range.end
    pos = positions(keys, True)
    return key_range.begin <= int(pos.min()) and int(pos.max()) < key_range.end


@dataclass(frozen=True)
class ShardRange:
    """The key range one shard holds of one table and its number of stored rows."""

    key_range: KeyRange
    rows: int
    removed: int | None = None
    """Keys an incremental checkpoint removes in this range (None: a full checkpoint's)."""

    def to_json(self) -> dict:
        out = {"begin": str(self.key_range.begin), "end": str(self.key_range.end),
               "rows": self.rows}
        if self.removed is not None:
            out["removed"] = self.removed
        return out

    @classmethod
    def from_json(cls, obj: dict, what: str, where) -> "ShardRange":
        try:
            begin = big_int(obj["begin"], f"{what} begin", where)
            end = big_int(obj["end"], f"{what} end", where)
            removed = obj.get("removed")
            return cls(KeyRange(begin, end), int(obj["rows"]),
                       None if removed is None else int(removed))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(where, f"{what}: bad key range ({exc})") from None


@dataclass(frozen=True)
class ShardInfo:
    """What one server wrote (returned by write_shard; all of them go to commit).

    Small and picklable, so an MPI save can gather them to the committing rank.
    ``shard_id`` is the random id written into the shard's attributes: the manifest records
    it, so a shard of another save (same name, same size) is told apart without hashing it
    (None in checkpoints written before shard ids existed)."""

    file: str
    server_index: int
    num_servers: int
    step: int
    nbytes: int
    sha256: str
    tables: dict  # name -> TableMeta
    ranges: dict  # name -> ShardRange
    shard_id: str | None = None

    def to_json(self) -> dict:
        out = {"file": self.file, "server": self.server_index, "bytes": self.nbytes,
               "sha256": self.sha256,
               "ranges": {name: r.to_json() for name, r in self.ranges.items()}}
        if self.shard_id is not None:
            out["id"] = self.shard_id
        return out
