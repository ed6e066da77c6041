"""Chunk I/O of shard datasets: fast writes, and fast reads with every chunk's fletcher32
checksum verified.

Writes of uncompressed datasets copy each chunk into one buffer, append the fletcher32
(mpips.kernels.fletcher, little-endian as HDF5's filter stores it) and hand it to
``write_direct_chunk``: the file is exactly what HDF5's filter would write (HDF5 verifies
these checksums when it reads), ~3x faster than HDF5's own fletcher32 pipeline.

Two read paths give the same rows and the same verification:

- raw (datasets whose only filter is fletcher32, i.e. uncompressed): HDF5 locates each chunk
  and ``read_direct_chunk`` preads its stored bytes — straight into the destination array
  when the whole chunk lies inside it (its 4 checksum bytes spill into the next chunk's first
  row, overwritten by the next read) — and mpips.kernels.fletcher verifies them. One copy
  from the page cache instead of HDF5's two, and a checksum ~10x faster than HDF5's loop.
- HDF5 (compressed or otherwise filtered datasets): ``read_direct`` through the filter
  pipeline; HDF5 checks fletcher32 itself.

Both ask the kernel to prefetch (posix_fadvise WILLNEED) a few blocks ahead: HDF5 reads one
chunk at a time, synchronously, which from a cold cache is ~5x slower than streaming.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import h5py
import numpy as np

from ..kernels.fletcher import fletcher32
from .errors import ChecksumError

READ_BLOCK = 64 << 20
PREFETCH_BLOCKS = 4
RAW_PATH = True
"""Use the raw path where possible (tests switch it off to compare with HDF5's own)."""


@contextlib.contextmanager
def reading(path: Path, what: str):
    """Turn h5py's OSError while reading ``what`` into a ChecksumError naming file and dataset
    (a fletcher32 mismatch surfaces as 'filter returned failure during read')."""
    try:
        yield
    except OSError as exc:
        raise ChecksumError(path, f"{what}: checksum mismatch or unreadable chunk, the file "
                                  f"changed after it was written ({exc})") from None


def _row_bytes(dset_or_array) -> int:
    return dset_or_array.dtype.itemsize * int(np.prod(dset_or_array.shape[1:], dtype=np.int64))


def write_chunks(dset: h5py.Dataset, data: np.ndarray) -> None:
    """Write ``data`` (the dataset's shape and native dtype) into the chunked, fletcher32-only
    dataset ``dset`` chunk by chunk, checksums computed here. Edge chunks are zero-padded."""
    n, c, tail = data.shape[0], dset.chunks[0], (0,) * (data.ndim - 1)
    if n == 0:
        return
    row_bytes = _row_bytes(data)
    flat = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    chunk_bytes = c * row_bytes
    buf = np.empty(chunk_bytes + 4, np.uint8)
    checksum = buf[chunk_bytes:].view("<u4")
    for start in range(0, n, c):
        body = flat[start * row_bytes:(start + c) * row_bytes]
        buf[:body.size] = body
        buf[body.size:chunk_bytes] = 0
        checksum[0] = fletcher32(buf[:chunk_bytes])
        dset.id.write_direct_chunk((start,) + tail, buf)


def read_rows(path: Path, what: str, dset: h5py.Dataset, start: int, stop: int, *,
              out: np.ndarray | None = None, on_block=None) -> int:
    """Read rows [start, stop) of ``dset`` into ``out`` (C-contiguous, stop - start rows) or,
    without ``out``, hand them block by block (views of a reused buffer) to ``on_block``.
    ChecksumError names the file, dataset and rows of a damaged chunk. Returns bytes read."""
    if dset.ndim == 0:
        with reading(path, what):
            dset[()]
        return dset.dtype.itemsize
    row_bytes = _row_bytes(dset)
    if stop <= start:
        return 0
    if RAW_PATH and _raw_readable(dset):
        _read_raw(path, what, dset, start, stop, out, on_block)
    else:
        _read_hdf5(path, what, dset, start, stop, out, on_block)
    return (stop - start) * row_bytes


def _raw_readable(dset: h5py.Dataset) -> bool:
    """Chunks of whole rows, fletcher32 the only filter, native byte order: a chunk's stored
    bytes are its rows' array bytes plus the checksum."""
    return bool(dset.chunks and dset.chunks[1:] == dset.shape[1:] and dset.fletcher32
                and dset.dtype.isnative and dset.dtype.itemsize
                and dset.id.get_create_plist().get_nfilters() == 1)


def _read_raw(path, what, dset, start, stop, out, on_block) -> None:
    c, tail = dset.chunks[0], (0,) * (dset.ndim - 1)
    chunk_bytes = c * _row_bytes(dset)
    spare = np.empty(chunk_bytes + 4, np.uint8)
    flat = out.reshape(-1).view(np.uint8) if out is not None else None
    fd, per_block = _vfd(dset), max(1, READ_BLOCK // chunk_bytes)
    first, last = start // c, (stop - 1) // c
    _prefetch(fd, dset, start, min(stop, (first + per_block * PREFETCH_BLOCKS) * c))
    for k in range(first, last + 1):
        if k > first and (k - first) % per_block == 0:
            ahead = k + per_block * (PREFETCH_BLOCKS - 1)
            _prefetch(fd, dset, ahead * c, min(stop, (ahead + per_block) * c))
        a, b = max(start, k * c), min(stop, (k + 1) * c)
        pos = (a - start) * (chunk_bytes // c)
        direct = flat is not None and a == k * c and pos + chunk_bytes + 4 <= flat.size
        buf = flat[pos:pos + chunk_bytes + 4] if direct else spare
        label = f"{what} chunk {k} (rows [{k * c}, {(k + 1) * c}))"
        with reading(path, label):
            try:
                mask, raw = dset.id.read_direct_chunk((k * c,) + tail, out=buf)
            except ValueError as exc:  # stored chunk larger than it can be
                raise ChecksumError(path, f"{label}: {exc}") from None
        _check_chunk(path, label, mask, len(raw), buf, chunk_bytes)
        if not direct:
            rows = spare[:chunk_bytes].view(dset.dtype).reshape((c,) + dset.shape[1:])
            rows = rows[a - k * c:b - k * c]
            if out is not None:
                out[a - start:b - start] = rows
            elif on_block is not None:
                on_block(rows)


def _check_chunk(path, label, mask, size, buf, chunk_bytes) -> None:
    if mask != 0 or size != chunk_bytes + 4:
        raise ChecksumError(path, f"{label}: stored as {size} bytes with filter mask {mask}, "
                                  f"expected {chunk_bytes} + 4 checksum bytes, mask 0")
    stored = int.from_bytes(buf[chunk_bytes:chunk_bytes + 4].tobytes(), "little")
    computed = fletcher32(buf[:chunk_bytes])
    if stored != computed:
        raise ChecksumError(path, f"{label}: fletcher32 mismatch (stored {stored:#010x}, "
                                  f"computed {computed:#010x}): the file changed after it was "
                                  "written")


def _read_hdf5(path, what, dset, start, stop, out, on_block) -> None:
    row_bytes = max(1, _row_bytes(dset))
    chunk_rows = dset.chunks[0] if dset.chunks else max(1, stop - start)
    rows = max(chunk_rows, READ_BLOCK // row_bytes // chunk_rows * chunk_rows)
    buf = np.empty((min(rows, stop - start),) + dset.shape[1:], dset.dtype) if out is None else None
    fd = _vfd(dset)
    cuts = [start, *range((start // rows + 1) * rows, stop, rows), stop]
    _prefetch(fd, dset, cuts[0], cuts[min(len(cuts) - 1, PREFETCH_BLOCKS)])
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        if i + PREFETCH_BLOCKS < len(cuts) - 1:
            _prefetch(fd, dset, cuts[i + PREFETCH_BLOCKS], cuts[i + PREFETCH_BLOCKS + 1])
        target = out[a - start:b - start] if out is not None else buf[:b - a]
        with reading(path, f"{what} rows [{a}, {b})"):
            dset.read_direct(target, np.s_[a:b], np.s_[0:b - a])
        if on_block is not None:
            on_block(target)


def _vfd(dset: h5py.Dataset) -> int | None:
    try:
        return int(dset.file.id.get_vfd_handle())
    except Exception:  # another file driver: no prefetch hints
        return None


def _prefetch(fd: int | None, dset: h5py.Dataset, a: int, b: int) -> None:
    """Hint the kernel to read the bytes of the chunks holding rows [a, b) (best effort)."""
    if fd is None or b <= a or not dset.chunks:
        return
    c, tail = dset.chunks[0], (0,) * (dset.ndim - 1)
    try:
        first = dset.id.get_chunk_info_by_coord((a // c * c,) + tail)
        last = dset.id.get_chunk_info_by_coord(((b - 1) // c * c,) + tail)
        if first.byte_offset is None or last.byte_offset is None \
                or last.byte_offset < first.byte_offset:
            return
        os.posix_fadvise(fd, first.byte_offset, last.byte_offset + last.size - first.byte_offset,
                         os.POSIX_FADV_WILLNEED)
    except (OSError, ValueError, AttributeError):
        pass
