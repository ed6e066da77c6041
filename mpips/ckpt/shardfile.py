"""The HDF5 layout of one shard file, written and checked here (h5py; no MPI).

Root attributes: ``format`` = "mpips-checkpoint", ``format_version``, ``step``,
``server_index``, ``num_servers``, ``created`` (unix seconds), ``created_iso``,
``mpips_version`` and ``shard_id`` (random hex, recorded in the manifest). One group
``/tables/<name>`` per table with attributes ``kind``, ``size``, ``key_begin``, ``key_end``
(decimal strings: 2**64 does not fit uint64), ``width``, ``rows``, ``rule``, ``rule_params``
and ``state_names`` (JSON), ``init``, ``table_id``, and datasets ``keys`` (uint64 (rows,),
sparse only: dense row i is key ``key_begin + i``), ``values`` (float32 (rows, width)),
``state/<name>`` (float32 (rows, width)) and optionally ``clocks`` (int64, a vector clock) and
``admission`` (uint32 (depth, width): the slice's admission sketch, mpips.core.admission;
compressed, lzf unless the options say gzip, since most of its counters are zero).
A shard of an incremental checkpoint (``format_version`` 3) holds only the rows changed since
the checkpoint it builds on: ``keys`` for every kind of table, a ``removed`` attribute (how
many keys it removes) and a ``removed`` dataset (uint64: those keys).
Every dataset is chunked (whole rows, ~4 MiB) with fletcher32 checksums, optionally
shuffle+gzip or lzf; uncompressed ones are written chunk by chunk by mpips.ckpt.chunkio (same
bytes as HDF5's filter, faster). Files use the HDF5 1.8 format (checksummed superblock and
object headers), readable by h5py and Debian's h5dump/h5ls.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .chunkio import write_chunks
from .durable import crash_point
from ..errors import (ForeignFileError, InconsistentCheckpointError,
                     NewerFormatError, NotHDF5Error, TruncatedShardError)
from .layout import FORMAT_NAME, FORMAT_VERSION, FULL_VERSION, ShardInfo, SliceData, TableMeta

LIBVER = ("v108", "v108")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
CHUNK_BYTES = 4 << 20
COMPRESSIONS = (None, "gzip", "lzf")


@dataclass(frozen=True)
class WriteOptions:
    """Dataset creation options: compression None/"gzip"/"lzf", target chunk size in bytes."""

    compression: str | None = None
    chunk_bytes: int = CHUNK_BYTES

    def __post_init__(self):
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if self.chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be positive, got {self.chunk_bytes}")


def write_hdf5(path: Path, server_index: int, num_servers: int, step: int,
               tables: list[SliceData], options: WriteOptions, shard_id: str) -> None:
    """Create the shard file ``path`` (which must not exist) and write every table into it."""
    from .. import __version__

    now = time.time()
    version = FORMAT_VERSION if any(data.delta for data in tables) else FULL_VERSION
    with h5py.File(path, "x", libver=LIBVER) as f:
        f.attrs.update({"format": FORMAT_NAME, "format_version": version,
                        "step": int(step), "server_index": int(server_index),
                        "num_servers": int(num_servers), "created": now,
                        "created_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                        "mpips_version": __version__, "shard_id": shard_id})
        group = f.create_group("tables")
        for data in tables:
            _write_table(group.create_group(data.name), data, options)
            crash_point("table-written")
        f.flush()


def _write_table(group, data: SliceData, options: WriteOptions) -> None:
    meta = data.meta
    group.attrs.update({"kind": meta.kind, "size": str(meta.size), "width": meta.width,
                        "key_begin": str(data.key_range.begin), "key_end": str(data.key_range.end),
                        "rows": data.rows, "rule": meta.rule,
                        "rule_params": json.dumps(meta.rule_params, sort_keys=True),
                        "state_names": json.dumps(list(meta.state_names)), "init": meta.init,
                        "table_id": meta.table_id, "placement": meta.placement})
    if data.keys is not None:
        _create(group, "keys", data.keys, options)
    if data.delta:
        group.attrs["removed"] = int(data.removed.size)
        _create(group, "removed", data.removed, options)
    _create(group, "values", data.values, options)
    state = group.create_group("state")
    for name in meta.state_names:
        _create(state, name, data.state[name], options)
    if data.clocks is not None:
        _create(group, "clocks", data.clocks, options)
    if data.admission is not None:  # 16 MiB of counters, mostly zero: compressed always
        _create(group, "admission", data.admission,
                dataclasses.replace(options, compression=options.compression or "lzf"))


def _create(group, name: str, data: np.ndarray, options: WriteOptions):
    """A chunked dataset with fletcher32 checksums holding ``data`` (rows on axis 0)."""
    row_shape = data.shape[1:]
    row_bytes = data.itemsize * int(np.prod(row_shape, dtype=np.int64))
    n = data.shape[0]
    kwargs = {"chunks": (max(1, min(n, options.chunk_bytes // row_bytes)),) + row_shape,
              "fletcher32": True}
    if n == 0:  # a chunk may not exceed a fixed shape: let the (empty) axis grow
        kwargs["maxshape"] = (None,) + row_shape
    if options.compression:
        kwargs.update(compression=options.compression, shuffle=True)
        return group.create_dataset(name, data=data, **kwargs)
    dset = group.create_dataset(name, shape=data.shape, dtype=data.dtype, **kwargs)
    write_chunks(dset, data)  # same bytes as HDF5's fletcher32 filter, ~3x faster
    return dset


# ---------------------------------------------------------------------------- reading side

def check_signature(path: Path) -> int:
    """Size of ``path`` after checking that it starts like an HDF5 file.

    TruncatedShardError (empty, or cut inside the signature), NotHDF5Error (garbage)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(len(HDF5_SIGNATURE))
    if size == 0 or (len(head) < len(HDF5_SIGNATURE) and HDF5_SIGNATURE.startswith(head)):
        raise TruncatedShardError(path, f"truncated to {size} bytes")
    if head != HDF5_SIGNATURE:
        raise NotHDF5Error(path, "not an HDF5 file (no HDF5 signature at byte 0)")
    return size


def open_hdf5(path: Path) -> h5py.File:
    """Open read-only; TruncatedShardError / NotHDF5Error instead of h5py's OSError."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "truncated" in str(exc):
            raise TruncatedShardError(path, f"truncated HDF5 file ({exc})") from None
        raise NotHDF5Error(path, f"HDF5 cannot open it ({exc})") from None


def check_root(f: h5py.File, path: Path, expect: ShardInfo) -> None:
    """ForeignFileError / NewerFormatError / InconsistentCheckpointError unless the root
    attributes say this is shard ``expect.server_index`` of the expected checkpoint (and,
    when the manifest records one, the very shard it committed: same shard id)."""
    attrs = f.attrs
    found = attrs.get("format")
    if found != FORMAT_NAME:
        what = "no 'format' attribute" if found is None else f"format {found!r}"
        raise ForeignFileError(path, f"an HDF5 file but not an mpips checkpoint shard ({what}, "
                                     f"expected {FORMAT_NAME!r})")
    version = int(attrs.get("format_version", -1))
    if version > FORMAT_VERSION:
        raise NewerFormatError(path, f"written by a newer mpips (format {version}, this reads "
                                     f"≤ {FORMAT_VERSION})")
    got = {k: int(attrs.get(k, -1)) for k in ("step", "server_index", "num_servers")}
    want = {"step": expect.step, "server_index": expect.server_index,
            "num_servers": expect.num_servers}
    if got != want:
        raise InconsistentCheckpointError(path, f"shard attributes {got} disagree with the "
                                                f"manifest {want}")
    if expect.shard_id is not None and attrs.get("shard_id") != expect.shard_id:
        raise ForeignFileError(path, f"shard id {attrs.get('shard_id')!r}, but the manifest "
                                     f"committed {expect.shard_id!r}: a shard of another save "
                                     "(copied or left here), not this checkpoint's")


def check_table(f: h5py.File, path: Path, meta: TableMeta, expect) -> h5py.Group:
    """The group of table ``meta.name``; InconsistentCheckpointError unless its attributes
    and dataset shapes match the manifest (``expect`` is the manifest's ShardRange)."""
    group = f.get(f"tables/{meta.name}")
    if not isinstance(group, h5py.Group):
        raise InconsistentCheckpointError(path, f"no group /tables/{meta.name} (manifest lists it)")
    a = group.attrs
    got = (a.get("kind"), a.get("size"), _int(a, "width"), a.get("rule"), _json(a, "rule_params"),
           _float(a, "init"), _int(a, "table_id"), _json(a, "state_names"), a.get("key_begin"),
           a.get("key_end"), _int(a, "rows"), a.get("placement", "range"), _int(a, "removed"))
    want = (meta.kind, str(meta.size), meta.width, meta.rule, meta.rule_params, meta.init,
            meta.table_id, list(meta.state_names), str(expect.key_range.begin),
            str(expect.key_range.end), expect.rows, meta.placement, expect.removed)
    if got != want:
        diff = [f"{n}={g!r} (manifest {w!r})" for n, g, w in zip(_ATTRS, got, want) if g != w]
        raise InconsistentCheckpointError(path, f"table {meta.name!r}: {', '.join(diff)}")
    for name, (shape, dtype) in expected_datasets(meta, expect.rows, expect.removed).items():
        dset = group.get(name)
        if not isinstance(dset, h5py.Dataset) or dset.shape != shape or dset.dtype != dtype:
            found = (dset.shape, str(dset.dtype)) if isinstance(dset, h5py.Dataset) else "missing"
            raise InconsistentCheckpointError(path, f"table {meta.name!r}: dataset {name} is "
                                                    f"{found}, expected {shape} {dtype}")
    return group


_ATTRS = ("kind", "size", "width", "rule", "rule_params", "init", "table_id", "state_names",
          "key_begin", "key_end", "rows", "placement", "removed")


def _int(attrs, name):
    value = attrs.get(name)
    return int(value) if isinstance(value, (int, np.integer)) else value


def _float(attrs, name):
    value = attrs.get(name)
    return float(value) if isinstance(value, (float, np.floating)) else value


def _json(attrs, name):
    try:
        return json.loads(attrs.get(name))
    except (TypeError, ValueError):
        return attrs.get(name)


def expected_datasets(meta: TableMeta, rows: int, removed: int | None = None) -> dict:
    """Dataset path (inside the table group) → (shape, dtype) a shard must hold (``removed``:
    an incremental checkpoint's count of removed keys, None for a full one)."""
    out = {"values": ((rows, meta.width), np.dtype(np.float32))}
    if meta.kind == "sparse" or removed is not None:
        out["keys"] = ((rows,), np.dtype(np.uint64))
    if removed is not None:
        out["removed"] = ((removed,), np.dtype(np.uint64))
    for name in meta.state_names:
        out[f"state/{name}"] = ((rows, meta.width), np.dtype(np.float32))
    return out
