"""Reading tables back, for any key range: the re-partitioning restore (h5py; no MPI).

A restore on S' servers calls ``read_table(dir, name, RangePartition(size, S').range_of(i))``
on each new server i; the rows of that range are gathered from every shard that overlaps it,
whatever the number of servers that wrote the checkpoint. Every shard opened is checked
against the manifest first, and every chunk read is verified against its fletcher32 checksum.
An incremental checkpoint reads as the model it saved: its chain's full checkpoint with every
delta applied in order (mpips.ckpt.chain), each read for the same key range.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import BrokenChainError, KeyRangeError
from ..core.partition import KEY_SPACE, KeyRange, positions
from .chunkio import read_rows, reading
from .durable import tmp_name
from ..errors import InconsistentCheckpointError
from .chain import apply_dense, apply_sparse, chain_of
from .layout import TableMeta, keys_inside
from .manifest import Manifest, load_manifest
from .shardfile import check_table
from .verify import check_sha256, open_shard


class TableRows(NamedTuple):
    """Rows of one key range: ``keys`` uint64 (n,) (None for a dense table read with
    ``dense_keys=False``), ``values`` float32 (n, width), ``state`` name → float32 (n, width)."""

    keys: np.ndarray | None
    values: np.ndarray
    state: dict


def read_table(checkpoint_dir, name: str, key_range: KeyRange | None = None, *,
               out_values: np.ndarray | None = None, out_state: dict | None = None,
               dense_keys: bool = True, check_sha256_first: bool = False,
               placement: str | None = None) -> TableRows:
    """The rows of table ``name`` whose keys lie in ``key_range`` (default: the whole table).

    A sparse table's ``key_range`` is a range of positions under ``placement`` (default: the
    checkpoint's own; mpips.core.partition.positions), so a table restored with another placement
    than it was saved with still finds its keys; its keys come back sorted. Dense tables may
    be read straight into ``out_values``/``out_state`` (e.g. a server's window memory; shapes
    (range size, width), float32). ``check_sha256_first`` hashes each shard read before
    trusting it. Raises the CheckpointError subclasses of verify, and ChecksumError when a
    chunk read fails its fletcher32 checksum (``out_*`` then hold partial data)."""
    manifest = load_manifest(checkpoint_dir)
    meta = manifest.table(name)
    key_range = KeyRange(0, meta.size) if key_range is None else key_range
    if key_range.end > meta.size:
        raise KeyRangeError(f"key range {key_range} exceeds table {name!r} of size {meta.size}")
    placement = meta.placement if placement is None else placement
    chain = chain_of(manifest)
    with contextlib.ExitStack() as stack:
        parts = _open_parts(stack, chain[0], meta, key_range, placement, check_sha256_first)
        if meta.kind == "dense":
            rows = _read_dense(meta, key_range, parts, out_values, out_state, dense_keys)
        else:
            rows = _read_sparse(meta, key_range, parts, placement == "hash")
    if meta.kind == "dense":
        for delta in chain[1:]:
            changed, _ = _read_delta(delta, meta, key_range, placement, check_sha256_first)
            apply_dense(key_range.begin, rows.values, rows.state, *changed)
        return rows
    if len(chain) == 1:
        return rows
    # the deltas composed first (small), then applied to the base rows once
    width = meta.width
    changed = (np.empty(0, np.uint64), np.empty((0, width), np.float32),
               {s: np.empty((0, width), np.float32) for s in meta.state_names})
    removed = np.empty(0, np.uint64)
    for delta in chain[1:]:
        rows_i, removed_i = _read_delta(delta, meta, key_range, placement, check_sha256_first)
        changed = apply_sparse(*changed, *rows_i, removed_i)
        removed = np.union1d(removed, removed_i)
    return TableRows(*apply_sparse(*rows, *changed, removed))


def _open_parts(stack, manifest: Manifest, meta: TableMeta, key_range: KeyRange,
                placement: str, check_sha256_first: bool) -> list:
    """(path, shard key range, checked table group) of every shard of ``manifest`` that may
    hold keys of ``key_range`` (positions under ``placement``), opened in ``stack``."""
    parts = []
    # shards cut by another placement may hold keys of any range
    wanted = key_range if placement == meta.placement else KeyRange(0, meta.size)
    for shard in manifest.shards_for(meta.name, wanted):
        if check_sha256_first:
            check_sha256(manifest, shard)
        f = stack.enter_context(open_shard(manifest, shard))
        path = manifest.directory / shard.file
        parts.append((path, shard.ranges[meta.name].key_range,
                      check_table(f, path, meta, shard.ranges[meta.name])))
    return parts


def _read_delta(manifest: Manifest, meta: TableMeta, key_range: KeyRange, placement: str,
                check_sha256_first: bool = False) -> tuple[TableRows, np.ndarray]:
    """The rows an incremental checkpoint changed in ``key_range`` (keys sorted) and the keys
    it removed there (sorted)."""
    hashed = placement == "hash"
    with contextlib.ExitStack() as stack:
        parts = _open_parts(stack, manifest, meta, key_range, placement, check_sha256_first)
        changed = _read_sparse(meta, key_range, parts, hashed)
        removed = []
        for path, shard_range, group in parts:
            keys = np.empty(group["removed"].shape, np.uint64)
            read_rows(path, f"table {meta.name!r} removed", group["removed"], 0, keys.size,
                      out=keys)
            if keys.size and (not bool((keys[1:] > keys[:-1]).all())
                              or not keys_inside(keys, shard_range, meta.hashed)):
                raise InconsistentCheckpointError(path, f"table {meta.name!r}: removed keys "
                                                        f"are not sorted/unique inside "
                                                        f"{shard_range}")
            removed.append(keys[_placed_in(keys, key_range, hashed)])
    removed = np.sort(np.concatenate(removed)) if removed else np.empty(0, np.uint64)
    return changed, removed


def _placed_in(keys: np.ndarray, key_range: KeyRange, hashed: bool) -> np.ndarray:
    """Which of ``keys`` have their position (hashed or not) in ``key_range``."""
    pos = positions(keys, True) if hashed else keys
    take = pos >= np.uint64(key_range.begin)
    if key_range.end < KEY_SPACE:
        take &= pos < np.uint64(key_range.end)
    return take


def _dense_out(meta: TableMeta, n: int, out, what: str) -> np.ndarray:
    if out is None:
        return np.empty((n, meta.width), np.float32)
    if not isinstance(out, np.ndarray) or out.shape != (n, meta.width) \
            or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"{what} must be a C-contiguous float32 array of shape {(n, meta.width)}")
    return out


def _read_dense(meta, key_range, parts, out_values, out_state, dense_keys) -> TableRows:
    n = key_range.size
    values = _dense_out(meta, n, out_values, "out_values")
    out_state = out_state or {}
    state = {s: _dense_out(meta, n, out_state.get(s), f"out_state[{s!r}]") for s in meta.state_names}
    targets = [("values", values)] + [(f"state/{s}", a) for s, a in state.items()]
    for path, shard_range, group in parts:
        lo, hi = max(key_range.begin, shard_range.begin), min(key_range.end, shard_range.end)
        at = lo - key_range.begin
        for dataset, array in targets:
            read_rows(path, f"table {meta.name!r} {dataset} keys [{lo}, {hi})", group[dataset],
                      lo - shard_range.begin, hi - shard_range.begin,
                      out=array[at:at + hi - lo])
    keys = np.arange(key_range.begin, key_range.end, dtype=np.uint64) if dense_keys else None
    return TableRows(keys, values, state)


def _read_sparse(meta, key_range, parts, hashed: bool) -> TableRows:
    """Rows of the keys whose position (hashed or not) lies in ``key_range``, keys sorted."""
    pieces = []
    for path, shard_range, group in parts:
        keys = np.empty(group["keys"].shape, np.uint64)
        read_rows(path, f"table {meta.name!r} keys", group["keys"], 0, keys.size, out=keys)
        ordered = keys.size == 0 or bool((keys[1:] > keys[:-1]).all())
        if not ordered or not keys_inside(keys, shard_range, meta.hashed):
            raise InconsistentCheckpointError(path, f"table {meta.name!r}: stored keys are not "
                                                    f"sorted/unique inside {shard_range}")
        if not hashed:  # keys are positions: one run
            lo = int(np.searchsorted(keys, np.uint64(key_range.begin)))
            hi = keys.size if key_range.end == KEY_SPACE else \
                int(np.searchsorted(keys, np.uint64(key_range.end)))
            pieces.append((path, group, keys[lo:hi], slice(lo, hi)))
            continue
        pos = positions(keys, True)
        take = (pos >= np.uint64(key_range.begin)) if key_range.begin else np.ones(keys.size, bool)
        if key_range.end < KEY_SPACE:
            take &= pos < np.uint64(key_range.end)
        pieces.append((path, group, keys[take], slice(0, keys.size) if take.all() else take))
    total = sum(p[2].size for p in pieces)
    values = np.empty((total, meta.width), np.float32)
    state = {s: np.empty((total, meta.width), np.float32) for s in meta.state_names}
    targets = [("values", values)] + [(f"state/{s}", a) for s, a in state.items()]
    at = 0
    for path, group, keys, take in pieces:
        for dataset, array in targets:
            if isinstance(take, slice):
                read_rows(path, f"table {meta.name!r} {dataset}", group[dataset], take.start,
                          take.stop, out=array[at:at + keys.size])
            else:  # scattered rows: read the shard's dataset whole, keep the wanted ones
                whole = np.empty(group[dataset].shape, np.float32)
                read_rows(path, f"table {meta.name!r} {dataset}", group[dataset], 0,
                          whole.shape[0], out=whole)
                array[at:at + keys.size] = whole[take]
        at += keys.size
    keys = np.concatenate([p[2] for p in pieces]) if pieces else np.empty(0, np.uint64)
    if len(pieces) > 1 and (hashed or meta.hashed):  # pieces of shards cut by position
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        state = {s: a[order] for s, a in state.items()}
    return TableRows(keys, values, state)


def read_clocks(checkpoint_dir, name: str) -> dict[int, np.ndarray]:
    """Server index → the int64 vector clock that server saved with table ``name`` (servers
    that saved none are absent). How to merge them on a new layout is the caller's policy."""
    manifest: Manifest = load_manifest(checkpoint_dir)
    meta = manifest.table(name)
    clocks = {}
    for shard in manifest.shards:
        path = manifest.directory / shard.file
        with open_shard(manifest, shard) as f:
            group = check_table(f, path, meta, shard.ranges[name])
            if "clocks" in group:
                with reading(path, f"table {name!r} clocks"):
                    clocks[shard.server_index] = group["clocks"][()]
    return clocks


def read_admission(checkpoint_dir, name: str, key_range: KeyRange,
                   placement: str | None = None) -> list[np.ndarray]:
    """The admission sketches (mpips.core.admission) that the shards holding keys of
    ``key_range`` (positions under ``placement``, as in read_table) of sparse table ``name``
    saved, checksums checked; [] when they saved none. One shard: its own sketch; several (a
    restore on other servers): the caller merges them."""
    manifest: Manifest = load_manifest(checkpoint_dir)
    meta = manifest.table(name)
    if placement is not None and placement != meta.placement:
        key_range = KeyRange(0, meta.size)  # shards cut by another placement: any of them
    sketches = []
    for shard in manifest.shards_for(name, key_range):
        path = manifest.directory / shard.file
        with open_shard(manifest, shard) as f:
            group = check_table(f, path, meta, shard.ranges[name])
            dset = group.get("admission")
            if dset is None:
                continue
            if dset.ndim != 2 or dset.dtype != np.uint32:
                raise InconsistentCheckpointError(path, f"table {name!r}: dataset admission is "
                                                        f"{dset.shape} {dset.dtype}, expected a "
                                                        f"2-D uint32 sketch")
            counts = np.empty(dset.shape, np.uint32)
            read_rows(path, f"table {name!r} admission", dset, 0, dset.shape[0], out=counts)
            sketches.append(counts)
    return sketches


def read_changes(checkpoint_dir, name: str, since: int, key_range: KeyRange | None = None
                 ) -> tuple[TableRows, np.ndarray]:
    """What changed in table ``name`` between the checkpoint of step ``since`` and the one at
    ``checkpoint_dir``, which must have ``since`` in its chain (BrokenChainError otherwise):
    the rows of every key a later delta of the chain changed, as they are at
    ``checkpoint_dir`` (keys sorted), and the keys removed since (sorted; absent at the end)."""
    manifest = load_manifest(checkpoint_dir)
    meta = manifest.table(name)
    chain = chain_of(manifest)
    steps = [m.step for m in chain]
    if since not in steps:
        raise BrokenChainError(manifest.directory, f"step {since} is not in its chain (steps "
                                                   f"{', '.join(map(str, steps))}): the rows "
                                                   f"changed since then are not recorded")
    key_range = KeyRange(0, meta.size) if key_range is None else key_range
    now = read_table(checkpoint_dir, name, key_range)
    changed, removed = [np.empty(0, np.uint64)], [np.empty(0, np.uint64)]
    for delta in chain[steps.index(since) + 1:]:
        rows, gone = _read_delta(delta, meta, key_range, meta.placement)
        changed.append(rows.keys)
        removed.append(gone)
    take = np.isin(now.keys, np.concatenate(changed))
    gone = np.setdiff1d(np.concatenate(removed), now.keys)
    return TableRows(now.keys[take], now.values[take],
                     {n: a[take] for n, a in now.state.items()}), gone


def export_npz(checkpoint_dir, table: str, path, key_range: KeyRange | None = None, *,
               since: int | None = None) -> Path:
    """Write table ``table`` (or one key range of it) to ``path`` as .npz with arrays
    ``keys`` (uint64), ``values`` (float32 (n, width)), ``state_<name>`` for each optimizer
    state, and ``meta`` (a JSON string: step, table metadata). With ``since`` (a step in the
    checkpoint's chain, read_changes), only the rows changed since then, and ``removed``: the
    keys removed since then. Written atomically."""
    manifest = load_manifest(checkpoint_dir)
    meta = manifest.table(table)
    key_range = KeyRange(0, meta.size) if key_range is None else key_range
    extra = {}
    if since is None:
        rows = read_table(checkpoint_dir, table, key_range)
    else:
        rows, removed = read_changes(checkpoint_dir, table, since, key_range)
        extra = {"removed": removed}
    info = {"step": manifest.step, "table": table, **meta.to_json(),
            "key_range": [str(key_range.begin), str(key_range.end)], "since": since}
    arrays = {"keys": rows.keys, "values": rows.values,
              **{f"state_{n}": a for n, a in rows.state.items()}, **extra,
              "meta": np.array(json.dumps(info))}
    path = Path(path)
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
