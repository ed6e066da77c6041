"""Checking a checkpoint before trusting it (h5py; no MPI).

Three levels, each including the previous one:

- ``quick``: MANIFEST.json present, parseable, not from a newer format, self-consistent;
  every shard present, HDF5, ours (format attribute), attributes and dataset shapes agreeing
  with the manifest, and of the recorded size. Reads only metadata.
- ``sha256``: plus the sha256 of every shard file (reads every byte once).
- ``full``: plus every dataset read completely, so HDF5 checks every chunk's fletcher32
  checksum (and sparse keys are checked sorted and inside the shard's key range); this names
  the damaged dataset when the sha256 only says "the file changed".

An incremental checkpoint is valid only with its chain (mpips.ckpt.chain): each checkpoint it
builds on, down to the full one, is verified at the same level, and a failure there is a
BrokenChainError of this one naming the checkpoint and the problem.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .durable import sha256_file
from ..errors import (BrokenChainError, ChecksumError, CheckpointError,
                     InconsistentCheckpointError, MissingShardError, TruncatedShardError)
from .chain import chain_of
from .layout import ShardInfo, keys_inside
from .manifest import Manifest, load_manifest
from .chunkio import read_rows
from .shardfile import check_root, check_signature, check_table, open_hdf5

LEVELS = ("quick", "sha256", "full")


@dataclass
class VerifyReport:
    """Outcome of ``verify``: ``ok``, the errors found (CheckpointError instances whose
    messages name the file and the problem) and what was checked."""

    directory: Path
    level: str
    manifest: Manifest | None = None
    chain: list = field(default_factory=list)  # Manifests, the full checkpoint first
    errors: list = field(default_factory=list)
    checked: list = field(default_factory=list)
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def check(self) -> "VerifyReport":
        """Raise the first error found (the most fundamental one); return self if ok."""
        if self.errors:
            raise self.errors[0]
        return self


def verify(checkpoint_dir, level: str = "full", memo: dict | None = None) -> VerifyReport:
    """Check the checkpoint in ``checkpoint_dir`` at ``level`` (quick/sha256/full).

    Never raises for a bad checkpoint: the problems are in ``report.errors`` (one per damaged
    shard, more in ``full`` mode); ``verify(d).check()`` raises the first of them. ``memo``
    (a dict kept by the caller across calls) remembers each directory's own checks, so
    that checking many checkpoints of one chain checks each of them once."""
    if level not in LEVELS:
        raise ValueError(f"verify level must be one of {LEVELS}, got {level!r}")
    report = _verify_alone(Path(checkpoint_dir), level, memo)
    if report.manifest is not None and report.manifest.parent is not None:
        _verify_chain(report, level, memo)
    elif report.manifest is not None:
        report.chain = [report.manifest]
    return report


def _verify_chain(report: VerifyReport, level: str, memo: dict | None) -> None:
    """The checkpoints an incremental one builds on, each verified at ``level``."""
    try:
        report.chain = chain_of(report.manifest)
    except CheckpointError as exc:
        report.errors.append(exc)
        return
    for ancestor in report.chain[:-1]:
        below = _verify_alone(ancestor.directory, level, memo)
        report.bytes_read += below.bytes_read
        report.checked.append(f"chain: {ancestor.directory.name} "
                              f"{'ok' if below.ok else 'FAILED'}")
        if not below.ok:
            first = below.errors[0]
            report.errors.append(BrokenChainError(report.directory, f"it builds on "
                                                  f"{ancestor.directory.name}, which fails: "
                                                  f"{type(first).__name__}: {first}"))


def _verify_alone(directory: Path, level: str, memo: dict | None = None) -> VerifyReport:
    """One checkpoint's own manifest and shards, not its chain (from ``memo`` if there)."""
    key = (str(directory.resolve()), level)
    if memo is not None and key in memo:
        done = memo[key]
        return VerifyReport(directory, level, done.manifest, [], list(done.errors),
                            list(done.checked), done.bytes_read)
    report = VerifyReport(directory, level)
    try:
        report.manifest = load_manifest(directory)
    except CheckpointError as exc:
        report.errors.append(exc)
        return report
    report.checked.append(f"{directory.name}/MANIFEST.json: step {report.manifest.step}, "
                          f"{report.manifest.num_servers} shard(s)")
    for shard in report.manifest.shards:
        try:
            _verify_shard(report, shard)
        except CheckpointError as exc:
            report.errors.append(exc)
    if memo is not None:  # a copy: the caller may add the chain's errors to ``report``
        memo[key] = VerifyReport(directory, level, report.manifest, [], list(report.errors),
                                 list(report.checked), report.bytes_read)
    return report


def open_shard(manifest: Manifest, shard: ShardInfo) -> h5py.File:
    """Open one shard of a checkpoint after the cheap checks (present, HDF5, ours, same
    step/server/size as the manifest). The caller closes it."""
    path = manifest.directory / shard.file
    if not path.is_file():
        raise MissingShardError(path, f"missing: the manifest lists it as server "
                                      f"{shard.server_index}'s shard")
    check_signature(path)
    f = open_hdf5(path)
    try:
        check_root(f, path, shard)
        size = path.stat().st_size
        if size < shard.nbytes:
            raise TruncatedShardError(path, f"truncated: {size} bytes, the manifest says "
                                            f"{shard.nbytes}")
        if size != shard.nbytes:
            raise InconsistentCheckpointError(path, f"{size} bytes, the manifest says {shard.nbytes}")
        names = set(f["tables"]) if isinstance(f.get("tables"), h5py.Group) else set()
        if names != set(manifest.tables):
            raise InconsistentCheckpointError(path, f"holds tables {sorted(names)}, the manifest "
                                                    f"lists {sorted(manifest.tables)}")
    except BaseException:
        f.close()
        raise
    return f


def check_sha256(manifest: Manifest, shard: ShardInfo) -> int:
    """Hash one shard; ChecksumError on mismatch. Returns the bytes read."""
    path = manifest.directory / shard.file
    size, digest = sha256_file(path)
    if digest != shard.sha256:
        raise ChecksumError(path, f"sha256 mismatch (file {digest[:16]}…, manifest "
                                  f"{shard.sha256[:16]}…): the file changed after it was written "
                                  "(bit flip, partial overwrite or a different file)")
    return size


def _verify_shard(report: VerifyReport, shard: ShardInfo) -> None:
    manifest = report.manifest
    path = manifest.directory / shard.file
    with open_shard(manifest, shard) as f:
        groups = {name: check_table(f, path, meta, shard.ranges[name])
                  for name, meta in manifest.tables.items()}
        report.checked.append(f"{shard.file}: HDF5 attributes and shapes match the manifest")
        if report.level != "quick":
            try:
                report.bytes_read += check_sha256(manifest, shard)
                report.checked.append(f"{shard.file}: sha256 ok")
            except ChecksumError as exc:
                if report.level != "full":
                    raise
                report.errors.append(exc)  # keep reading: fletcher32 names the dataset
        if report.level == "full":
            for name, group in groups.items():
                report.bytes_read += _read_group(path, name, group, shard)
            report.checked.append(f"{shard.file}: every chunk's fletcher32 checksum ok")


def _read_group(path: Path, table: str, group: h5py.Group, shard: ShardInfo) -> int:
    datasets: list[tuple[str, h5py.Dataset]] = []
    group.visititems(lambda n, obj: datasets.append((n, obj)) if isinstance(obj, h5py.Dataset)
                     else None)
    total = 0
    for name, dset in datasets:
        check = _KeyCheck(path, table, shard.ranges[table].key_range,
                          shard.tables[table].hashed) if name in ("keys", "removed") else None
        n = dset.shape[0] if dset.ndim else 1
        total += read_rows(path, f"table {table!r} dataset {name}", dset, 0, n, on_block=check)
    return total


class _KeyCheck:
    """Streams over a sparse shard's keys: strictly increasing, their positions (keys, or
    hashed: mpips.core.partition.positions) inside its key range."""

    def __init__(self, path: Path, table: str, key_range, hashed: bool):
        self.path, self.table, self.range, self.prev = path, table, key_range, None
        self.hashed = hashed

    def __call__(self, keys: np.ndarray) -> None:
        if not keys.size:
            return
        ordered = bool((keys[1:] > keys[:-1]).all()) and (self.prev is None or keys[0] > self.prev)
        if not ordered or not keys_inside(keys, self.range, self.hashed):
            raise InconsistentCheckpointError(self.path, f"table {self.table!r}: stored keys are "
                                              f"not sorted/unique inside {self.range}")
        self.prev = keys[-1]
