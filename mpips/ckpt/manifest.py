"""MANIFEST.json: the commit record of a checkpoint. Pure module: no MPI, no h5py.

Fields: ``format`` ("mpips-checkpoint"), ``version`` (int), ``step``, ``num_servers``,
``created`` (unix seconds) and ``created_iso``, ``mpips_version``, ``tables`` (name → kind,
size, width, rule, rule_params, init, table_id, state_names), ``shards`` (in server order:
file, server, bytes, sha256, ranges: table → begin/end/rows, and ``id``, the shard id also
written in the shard), ``job``, a free-form dict (metrics, arguments...), and ``run``, the id
of the run whose chain of checkpoints this is (``id`` and ``run`` are absent from
checkpoints written before they existed, or saved without a run). Sizes and key bounds are
decimal strings (see layout).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.partition import KeyRange
from ..errors import (IncompleteCheckpointError, ManifestError, NewerFormatError,
                     NotACheckpointError, UnknownTableError)
from .layout import (FORMAT_NAME, FORMAT_VERSION, MANIFEST, STEP_DIR_RE, ShardInfo, ShardRange,
                     TableMeta, shard_name)


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


def check_shards(where, num_servers: int, tables: dict, shards: list[ShardInfo], error) -> None:
    """Raise ``error(where, ...)`` unless the shards are servers 0..S-1 with the canonical file
    names, each holding every table, and each table's ranges tile [0, size) in server order."""
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
    for name, meta in tables.items():
        _check_tiling(where, meta, [(s.file, s.ranges[name]) for s in shards], error)


def _check_tiling(where, meta: TableMeta, ranges, error) -> None:
    expect = 0
    for file, rng in ranges:
        if rng.key_range.begin != expect:
            raise error(where, f"table {meta.name!r}: {file} starts at key {rng.key_range.begin}, "
                               f"expected {expect} (ranges must tile [0, {meta.size}))")
        limit = rng.key_range.size
        if rng.rows > limit or (meta.kind == "dense" and rng.rows != limit):
            raise error(where, f"table {meta.name!r}: {file} claims {rng.rows} rows for "
                               f"the key range {rng.key_range}")
        expect = rng.key_range.end
    if expect != meta.size:
        raise error(where, f"table {meta.name!r}: key ranges end at {expect}, not at {meta.size}")


def manifest_bytes(step: int, num_servers: int, shards: list[ShardInfo], job: dict,
                   where, run: str | None = None) -> bytes:
    """The manifest text; ManifestError if ``job`` is not JSON-serialisable."""
    from .. import __version__

    now = time.time()
    tables = shards[0].tables if shards else {}
    obj = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "step": int(step),
           "num_servers": int(num_servers), "created": now,
           "created_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
           "mpips_version": __version__,
           "tables": {name: meta.to_json() for name, meta in tables.items()},
           "shards": [s.to_json() for s in shards], "job": job}
    if run is not None:
        obj["run"] = str(run)
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
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(path, f"missing or malformed field ({exc!r})") from None
    match = STEP_DIR_RE.match(directory.name)
    if match and int(match.group(1)) != step:
        raise ManifestError(path, f"says step {step} but lives in {directory.name}")
    check_shards(path, num_servers, tables, shards, ManifestError)
    return Manifest(directory, version, step, num_servers, created, tables, shards, job, run)


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
