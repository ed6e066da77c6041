"""Writing a checkpoint: prepare the step directory, one shard per server, commit last.

An MPI save (wired elsewhere) is::

    directory = prepare_checkpoint_dir(root, step)              # one rank, then a barrier
    info = write_shard(directory, server_index, S, step, slices)  # every server
    infos = gather(info)                                         # to one rank
    commit(directory, step, infos, job_meta)                     # that rank: MANIFEST.json

``save_checkpoint`` runs the same three steps in one process. Nothing here ever overwrites a
committed checkpoint: a directory with a MANIFEST.json is refused (CheckpointExistsError),
and only files that belong to no checkpoint (an uncommitted directory) are replaced.
"""
from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np

from ..core.partition import KEY_SPACE, KeyRange, RangePartition, positions
from .durable import (crash_point, fsync_and_hash, fsync_path, is_tmp_name, publish, tmp_name,
                      write_bytes_durably)
from ..errors import (BrokenChainError, CheckpointError, CheckpointExistsError,
                     InconsistentCheckpointError, InvalidSliceError, MissingShardError)
from .chain import chain_of, parent_entry
from .layout import (MANIFEST, SHARD_RE, ShardInfo, ShardRange, SliceData, TableMeta,
                     shard_name, step_dir_name)
from .manifest import check_shards, load_manifest, manifest_bytes
from .shardfile import CHUNK_BYTES, WriteOptions, write_hdf5


def _refuse_if_committed(directory: Path) -> None:
    if (directory / MANIFEST).exists():
        raise CheckpointExistsError(directory, f"already holds a checkpoint ({MANIFEST} exists); "
                                    "refusing to overwrite it: save under another step or "
                                    "remove it by hand")


def prepare_root(root) -> Path:
    """Create the checkpoint root ``root`` if it is missing and check that files can be
    created in it (a probe file, removed again). CheckpointError naming it when it is not a
    directory or not writable (read-only file system, permissions, immutable)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise CheckpointError(root, "not a directory")
    probe = tmp_name(root / ".write-probe")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as exc:
        raise CheckpointError(root, f"cannot write checkpoints here ({exc.strerror or exc})"
                              ) from None
    return root


def prepare_checkpoint_dir(root, step: int) -> Path:
    """Create ``root/step-<step>/`` for a new save and return it.

    CheckpointExistsError if that step is already committed. An uncommitted leftover of a
    crashed save is reused after removing its shard and temporary files (they belong to no
    checkpoint). Call on one rank, then barrier, before the servers call write_shard."""
    root = Path(root)
    directory = root / step_dir_name(step)
    root.mkdir(parents=True, exist_ok=True)
    _refuse_if_committed(directory)
    try:
        directory.mkdir()
    except FileExistsError:
        for path in directory.iterdir():
            if path.is_file() and (SHARD_RE.match(path.name) or is_tmp_name(path.name)):
                path.unlink()
        fsync_path(directory)
    fsync_path(root)
    return directory


def write_shard(directory, server_index: int, num_servers: int, step: int,
                tables: list[SliceData], *, compression: str | None = None,
                chunk_bytes: int = CHUNK_BYTES) -> ShardInfo:
    """Write server ``server_index``'s slices of every table to its shard file in
    ``directory`` durably (tmp → fsync → rename → fsync dir) and return its ShardInfo.

    Validates every slice first (InvalidSliceError); refuses a committed directory
    (CheckpointExistsError). ``compression``: None (default), "gzip" or "lzf"."""
    directory = Path(directory)
    options = WriteOptions(compression, chunk_bytes)
    names = [data.name for data in tables]
    if len(set(names)) != len(names):
        raise InvalidSliceError(directory, f"table names repeat: {names}")
    if len({data.delta for data in tables}) > 1:
        raise InvalidSliceError(directory, "a shard holds either changed rows of every table "
                                           "(incremental) or every row of every table")
    for data in tables:
        data.validate()
    _refuse_if_committed(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / shard_name(server_index, num_servers)
    tmp = tmp_name(final)
    shard_id = secrets.token_hex(16)
    try:
        write_hdf5(tmp, server_index, num_servers, step, tables, options, shard_id)
        crash_point("shard-closed")
        nbytes, digest = fsync_and_hash(tmp)
        crash_point("shard-synced")
        _refuse_if_committed(directory)
        publish(tmp, final, clobber=True)  # uncommitted: an old file here belongs to nothing
        crash_point("shard-published")
    finally:
        if tmp.exists():
            tmp.unlink()
    return ShardInfo(final.name, server_index, num_servers, int(step), nbytes, digest,
                     {d.name: d.meta for d in tables},
                     {d.name: ShardRange(d.key_range, d.rows, d.removed.size if d.delta
                                         else None) for d in tables}, shard_id)


def commit(checkpoint_dir, step: int, shard_infos: list[ShardInfo], job_meta: dict | None = None,
           *, run: str | None = None, parent=None) -> Path:
    """Make the checkpoint valid by writing MANIFEST.json last (durably, never clobbering).

    Checks first that the shards are servers 0..S-1 of ``step`` with the same tables, whose
    key ranges tile each table, and whose files exist with the recorded sizes
    (InconsistentCheckpointError / MissingShardError). ``job_meta``: free-form JSON dict.
    ``run``: the id of the run whose chain of checkpoints this one continues (``prune``
    deletes only checkpoints of the run it is given). ``parent``: for an incremental
    checkpoint (shards of changed rows), the directory of the checkpoint it builds on, which
    must lie beside it, be older, hold the same tables and have a chain that holds
    (BrokenChainError otherwise)."""
    directory = Path(checkpoint_dir)
    infos = sorted(shard_infos, key=lambda s: s.server_index)
    if not infos:
        raise InconsistentCheckpointError(directory, "no shards to commit")
    first = infos[0]
    for info in infos:
        if (info.step, info.num_servers, info.tables) != (step, first.num_servers, first.tables):
            raise InconsistentCheckpointError(directory, f"{info.file}: step/servers/tables "
                                              f"differ from {first.file} or from step {step}")
    delta = any(r.removed is not None for r in first.ranges.values())
    entry = None if parent is None else _parent_entry(directory, step, Path(parent), first.tables)
    if delta != (entry is not None):
        raise InconsistentCheckpointError(directory, "shards of changed rows need the parent "
                                          "they change" if delta else "a parent was given for "
                                          "shards that hold every row")
    check_shards(directory, first.num_servers, first.tables, infos, InconsistentCheckpointError,
                 delta)
    for info in infos:
        path = directory / info.file
        if not path.is_file():
            raise MissingShardError(path, "shard to commit does not exist")
        if path.stat().st_size != info.nbytes:
            raise InconsistentCheckpointError(path, f"{path.stat().st_size} bytes, written as "
                                                    f"{info.nbytes}")
    data = manifest_bytes(step, first.num_servers, infos, dict(job_meta or {}), directory, run,
                          entry)
    _refuse_if_committed(directory)
    crash_point("manifest-start")
    try:
        write_bytes_durably(directory / MANIFEST, data, clobber=False)
    except FileExistsError:
        raise CheckpointExistsError(directory, f"{MANIFEST} appeared during the commit; "
                                    "left untouched") from None
    fsync_path(directory.parent)  # the step directory's own entry, if write_shard created it
    crash_point("committed")
    return directory


def _parent_entry(directory: Path, step: int, parent: Path, tables: dict) -> dict:
    """The manifest's ``parent`` entry of a delta at ``directory`` written on ``parent``."""
    if parent.parent.resolve() != directory.parent.resolve():
        raise BrokenChainError(directory, f"the parent {parent} must lie beside it, under "
                                          f"{directory.parent}")
    try:
        manifest = load_manifest(parent)
        chain_of(manifest)
    except CheckpointError as exc:
        raise BrokenChainError(directory, f"cannot build on {parent}: {exc}") from None
    if manifest.step >= step or manifest.tables != tables:
        raise BrokenChainError(directory, f"cannot build on {parent}: " + (
            f"step {manifest.step} is not older than {step}" if manifest.step >= step
            else "it defines the tables otherwise"))
    return parent_entry(manifest)


def save_checkpoint(root, step: int, slices_by_server: list[list[SliceData]],
                    job_meta: dict | None = None, *, compression: str | None = None,
                    chunk_bytes: int = CHUNK_BYTES, run: str | None = None,
                    parent: int | None = None) -> Path:
    """The whole save in one process: prepare, one shard per entry of ``slices_by_server``
    (server order), commit (``run`` as there; ``parent``: the step, under ``root``, of the
    checkpoint that delta slices change). Returns the checkpoint directory."""
    if not slices_by_server:
        raise InvalidSliceError(root, "a checkpoint needs at least one server's slices")
    directory = prepare_checkpoint_dir(root, step)
    num_servers = len(slices_by_server)
    infos = [write_shard(directory, i, num_servers, step, slices, compression=compression,
                         chunk_bytes=chunk_bytes)
             for i, slices in enumerate(slices_by_server)]
    return commit(directory, step, infos, job_meta, run=run,
                  parent=None if parent is None else Path(root) / step_dir_name(parent))


def split_table(meta: TableMeta, num_servers: int, values: np.ndarray, *, keys=None,
                state=None, clocks=None, removed=None) -> list[SliceData]:
    """Cut a whole table (dense: all rows; sparse: sorted unique keys) into the slices the
    servers of RangePartition(size, num_servers) hold, by position (a sparse table's
    placement: mpips.core.partition.positions). Views, except for hashed sparse tables.
    With ``removed`` (sorted unique keys), the rows are an incremental checkpoint's changed
    rows (``keys`` given, whatever the kind) and the removed keys are cut alike."""
    state = dict(state or {})
    ranges = RangePartition(meta.size, num_servers).ranges()
    takes = _cuts(meta, ranges, keys)
    gone = [None] * num_servers if removed is None else \
        [removed[take] for take in _cuts(meta, ranges, removed)]
    return [SliceData(meta, KeyRange(r.begin, r.end), values[take],
                      None if keys is None else keys[take],
                      {n: a[take] for n, a in state.items()}, clocks, None, out)
            for r, take, out in zip(ranges, takes, gone)]


def _cuts(meta: TableMeta, ranges, keys) -> list:
    """Per range, what of ``keys`` (sorted; None: a dense table's rows) lies in it."""
    if keys is None:
        cuts = [r.begin for r in ranges] + [meta.size]
        return [slice(cuts[i], cuts[i + 1]) for i in range(len(ranges))]
    if meta.hashed:
        pos = positions(keys, True)
        return [(pos >= np.uint64(r.begin)) & ((pos < np.uint64(r.end)) if r.end < KEY_SPACE
                                                else True) for r in ranges]
    bounds = np.array([r.begin for r in ranges[1:]], dtype=np.uint64)
    cuts = [0, *np.searchsorted(keys, bounds).tolist(), len(keys)]
    return [slice(cuts[i], cuts[i + 1]) for i in range(len(ranges))]
