"""MANIFEST.json: the commit record of a checkpoint. Pure module: no MPI, no h5py.

Fields: ``format`` ("mpips-checkpoint"), ``version`` (int), ``step``, ``num_servers``,
``created`` (unix seconds) and ``created_iso``, ``mpips_version``, ``tables`` (name → kind,
size, width, rule, rule_params, init, table_id, state_names), ``shards`` (in server order:
file, server, bytes, sha256, ranges: table → begin/end/rows, and ``id``, the shard id also
written in the shard), ``job``, a free-form dict (metrics, arguments...), and ``run``, the id
of the run whose chain of checkpoints this is (``id`` and ``run`` are absent from
checkpoints written before they existed, or saved without a run). Sizes and key bounds are
decimal strings (see layout).

An incremental checkpoint (version 3) also has ``parent``: ``step`` and ``digest`` (the sha256
of the parent's MANIFEST.json, so that another checkpoint saved later under the parent's step
is not taken for it), ``base`` (the step of the full checkpoint its chain starts from) and
``depth`` (1 for a delta on a full checkpoint, 2 on top of that one...); every range of its
shards counts the keys it ``removed``. The parent lives beside it, under the same root
(mpips.ckpt.chain).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.partition import KeyRange
from ..errors import (IncompleteCheckpointError, ManifestError, NewerFormatError,
                     NotACheckpointError, UnknownTableError)
from .layout import (FORMAT_NAME, FORMAT_VERSION, FULL_VERSION, MANIFEST, STEP_DIR_RE,
                     ShardInfo, ShardRange, TableMeta, shard_name)


@dataclass(frozen=True)
class Manifest:
    """A parsed, self-consistent manifest of the checkpoint in ``directory``."""

    directory: Path
    version: int
    step: int
    num_servers: int
    created: float
    tables: dict  # name -> TableMeta
    shards: list  # ShardInfo, in server order
    job: dict
    run: str | None = None
    parent: dict | None = None  # an incremental checkpoint's: step, digest, base, depth

    @property
    def delta(self) -> bool:
        """Whether this is an incremental checkpoint (rows changed since ``parent``)."""
        return self.parent is not None

    @property
    def depth(self) -> int:
        """0 for a full checkpoint, else how many incremental ones its chain holds."""
        return int(self.parent["depth"]) if self.parent else 0

    @property
    def base(self) -> int:
        """The step of the full checkpoint this one's chain starts from (its own if full)."""
        return int(self.parent["base"]) if self.parent else self.step

    @property
    def total_bytes(self) -> int:
        return sum(s.nbytes for s in self.shards)

    def table(self, name: str) -> TableMeta:
        try:
            return self.tables[name]
        except KeyError:
            raise UnknownTableError(self.directory, f"no table {name!r} in this checkpoint "
                                    f"(tables: {', '.join(sorted(self.tables)) or 'none'})") from None

    def shards_for(self, name: str, key_range: KeyRange) -> list[ShardInfo]:
        """The shards holding keys of ``key_range`` of table ``name``, in key order."""
        rng = key_range
        return [s for s in self.shards
                if s.ranges[name].key_range.begin < rng.end and rng.begin < s.ranges[name].key_range.end]


def check_shards(where, num_servers: int, tables: dict, shards: list[ShardInfo], error,
                 delta: bool = False) -> None:
    """Raise ``error(where, ...)`` unless the shards are servers 0..S-1 with the canonical file
    names, each holding every table, and each table's ranges tile [0, size) in server order;
    ``delta``: they are an incremental checkpoint's (every range counts removed keys)."""
    if [s.server_index for s in shards] != list(range(num_servers)):
        raise error(where, f"shards are servers {[s.server_index for s in shards]}, "
                           f"expected 0..{num_servers - 1}")
    for shard in shards:
        if shard.file != shard_name(shard.server_index, num_servers):
            raise error(where, f"shard file {shard.file!r} is not named "
                               f"{shard_name(shard.server_index, num_servers)!r}")
        if set(shard.ranges) != set(tables):
            raise error(where, f"{shard.file} holds tables {sorted(shard.ranges)}, "
                               f"expected {sorted(tables)}")
        if any((r.removed is not None) != delta for r in shard.ranges.values()):
            raise error(where, f"{shard.file}: ranges " + (
                "without counts of removed keys in an incremental checkpoint" if delta
                else "counting removed keys in a full checkpoint"))
    for name, meta in tables.items():
        _check_tiling(where, meta, [(s.file, s.ranges[name]) for s in shards], error, delta)


def _check_tiling(where, meta: TableMeta, ranges, error, delta: bool) -> None:
    expect = 0
    for file, rng in ranges:
        if rng.key_range.begin != expect:
            raise error(where, f"table {meta.name!r}: {file} starts at key {rng.key_range.begin}, "
                               f"expected {expect} (ranges must tile [0, {meta.size}))")
        limit = rng.key_range.size
        if rng.rows > limit or (meta.kind == "dense" and not delta and rng.rows != limit) \
                or (rng.removed is not None and not 0 <= rng.removed <= limit) \
                or (meta.kind == "dense" and rng.removed):
            raise error(where, f"table {meta.name!r}: {file} claims {rng.rows} rows for "
                               f"the key range {rng.key_range}")
        expect = rng.key_range.end
    if expect != meta.size:
        raise error(where, f"table {meta.name!r}: key ranges end at {expect}, not at {meta.size}")


def manifest_bytes(step: int, num_servers: int, shards: list[ShardInfo], job: dict,
                   where, run: str | None = None, parent: dict | None = None) -> bytes:
    """The manifest text (``parent``: an incremental checkpoint's, see above); ManifestError
    if ``job`` is not JSON-serialisable."""
    from .. import __version__

    now = time.time()
    tables = shards[0].tables if shards else {}
    version = FULL_VERSION if parent is None else FORMAT_VERSION
    obj = {"format": FORMAT_NAME, "version": version, "step": int(step),
           "num_servers": int(num_servers), "created": now,
           "created_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
           "mpips_version": __version__,
           "tables": {name: meta.to_json() for name, meta in tables.items()},
           "shards": [s.to_json() for s in shards], "job": job}
    if run is not None:
        obj["run"] = str(run)
    if parent is not None:
        obj["parent"] = {"step": int(parent["step"]), "digest": str(parent["digest"]),
                         "base": int(parent["base"]), "depth": int(parent["depth"])}
    try:
        return (json.dumps(obj, indent=1) + "\n").encode()
    except (TypeError, ValueError) as exc:
        raise ManifestError(where, f"job metadata is not JSON-serialisable: {exc}") from None


def load_manifest(directory) -> Manifest:
    """Read and check ``directory``/MANIFEST.json.

    Raises IncompleteCheckpointError (a step-N directory without manifest), NewerFormatError,
    ManifestError, NotACheckpointError (missing, a file, a checkpoint root...)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotACheckpointError(directory, "no such file or directory" if not directory.exists()
                                  else "a file, not a checkpoint directory (ROOT/step-N)")
    path = directory / MANIFEST
    try:
        obj = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise _without_manifest(directory) from None
    except (OSError, ValueError) as exc:
        raise ManifestError(path, f"unreadable or not JSON ({exc})") from None
    version = _check_header(path, obj)
    try:
        step, num_servers = int(obj["step"]), int(obj["num_servers"])
        tables = {name: TableMeta.from_json(name, t, path) for name, t in obj["tables"].items()}
        shards = [_shard_from_json(path, e, step, num_servers, tables) for e in obj["shards"]]
        created, job = float(obj["created"]), dict(obj.get("job") or {})
        run = obj.get("run")
        if run is not None and not isinstance(run, str):
            raise TypeError(f"run must be a string, got {run!r}")
        parent = _parent_from_json(obj.get("parent"), step)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(path, f"missing or malformed field ({exc!r})") from None
    match = STEP_DIR_RE.match(directory.name)
    if match and int(match.group(1)) != step:
        raise ManifestError(path, f"says step {step} but lives in {directory.name}")
    if (parent is not None) != (version >= 3):
        raise ManifestError(path, f"format version {version} " + (
            "without the parent of an incremental checkpoint" if parent is None
            else "names a parent: only incremental checkpoints (version 3) have one"))
    check_shards(path, num_servers, tables, shards, ManifestError, delta=parent is not None)
    return Manifest(directory, version, step, num_servers, created, tables, shards, job, run,
                    parent)


def _parent_from_json(obj, step: int) -> dict | None:
    """An incremental checkpoint's ``parent`` entry, checked (ValueError/TypeError)."""
    if obj is None:
        return None
    parent = {"step": int(obj["step"]), "digest": str(obj["digest"]), "base": int(obj["base"]),
              "depth": int(obj["depth"])}
    if not (parent["base"] <= parent["step"] < step and parent["depth"] >= 1
            and len(parent["digest"]) == 64):
        raise ValueError(f"parent {obj!r} of step {step}: needs base <= step < {step}, "
                         f"depth >= 1 and a sha256 digest")
    return parent


def _without_manifest(directory: Path) -> Exception:
    """What a directory without MANIFEST.json is: an incomplete checkpoint (a step-N
    directory), a checkpoint root (it holds step-N directories), or no checkpoint at all."""
    if STEP_DIR_RE.match(directory.name):
        return IncompleteCheckpointError(directory, f"no {MANIFEST}: incomplete checkpoint (the "
                                         "save crashed or is still running)")
    try:
        steps = sorted((p for p in directory.iterdir()
                        if STEP_DIR_RE.match(p.name) and p.is_dir()), reverse=True)
    except OSError:  # unreadable: say only that it is no checkpoint
        steps = []
    if not steps:
        return NotACheckpointError(directory, f"not a checkpoint: no {MANIFEST}, and no step-N "
                                              "directories in it")
    shown = ", ".join(str(p) for p in steps[:3]) + (", ..." if len(steps) > 3 else "")
    return NotACheckpointError(directory, f"this is a checkpoint root holding {len(steps)} "
                                          "checkpoint(s), not a checkpoint: give one of them: "
                                          f"{shown}")

def _check_header(path: Path, obj) -> int:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ManifestError(path, f"not an mpips checkpoint manifest (format {found!r}, "
                                  f"expected {FORMAT_NAME!r})")
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ManifestError(path, f"invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise NewerFormatError(path, f"written by a newer mpips (format {version}, this reads "
                                     f"≤ {FORMAT_VERSION}); upgrade mpips to read it")
    return version


def _shard_from_json(path, entry: dict, step: int, num_servers: int, tables: dict) -> ShardInfo:
    file = str(entry["file"])
    ranges = {name: ShardRange.from_json(r, f"{file} table {name!r}", path)
              for name, r in entry["ranges"].items()}
    shard_id = entry.get("id")
    if shard_id is not None and not isinstance(shard_id, str):
        raise TypeError(f"{file}: shard id must be a string, got {shard_id!r}")
    return ShardInfo(file, int(entry["server"]), num_servers, step, int(entry["bytes"]),
                     str(entry["sha256"]), tables, ranges, shard_id)
