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
  row: they are copied out before the next read overwrites them), else into one of two spare
  buffers — and mpips.kernels.fletcher verifies them. One copy from the page cache instead of
  HDF5's two, and a checksum ~10x faster than HDF5's loop. On large reads the checksum of
  chunk k runs on a worker thread (the kernel releases the GIL, and so does h5py's read)
  while this thread reads chunk k + 1, which takes the checksum off the critical path; chunks
  are then finished in file order (compared, spare-buffer rows handed on), so the first bad
  chunk is the one reported and no rows reach ``on_block`` unverified.
- HDF5 (compressed or otherwise filtered datasets): ``read_direct`` through the filter
  pipeline; HDF5 checks fletcher32 itself.

Both ask the kernel to prefetch (posix_fadvise WILLNEED) a few blocks ahead: HDF5 reads one
chunk at a time, synchronously, which from a cold cache is ~5x slower than streaming. Linux
reads at most max(readahead window, largest I/O) bytes of each hint (8 MiB of each 64 MiB
block on the benchmark VM), yet there these hints read a freshly written checkpoint 25-40%
faster than POSIX_FADV_SEQUENTIAL does; SEQUENTIAL wins on re-reads the VM host has cached,
and warm reads of pages it brought in were ~25% faster than of pages WILLNEED brought in.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from ..kernels.fletcher import fletcher32
from ..errors import ChecksumError

READ_BLOCK = 64 << 20
PREFETCH_BLOCKS = 4
RAW_PATH = True
"""Use the raw path where possible (tests switch it off to compare with HDF5's own)."""
PIPELINE_MIN_CHUNK = 1 << 20
PIPELINE_MIN_BYTES = 32 << 20
"""Raw reads of at least PIPELINE_MIN_BYTES in chunks of at least PIPELINE_MIN_CHUNK bytes
checksum on a worker thread (starting one costs ~0.3 ms, handing it a chunk ~20 us); smaller
reads checksum inline. Tests set both to 0."""


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
    """Read, verify and hand on the chunks holding rows [start, stop) in file order. On large
    reads (PIPELINE_MIN_*) the checksum of chunk k runs on a worker thread while this one reads
    chunk k + 1. The first bad chunk in file order is the one reported, and the worker has
    finished when this returns or raises (``out`` may then hold partial data)."""
    c, row_bytes = dset.chunks[0], _row_bytes(dset)
    pipelined = ((stop - 1) // c > start // c and c * row_bytes >= PIPELINE_MIN_CHUNK
                 and (stop - start) * row_bytes >= PIPELINE_MIN_BYTES)
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(1, "mpips-fletcher")) if pipelined else None
        chunks = _RawChunks(path, what, dset, start, stop, out)
        pending = None
        for k in range(chunks.first, chunks.last + 1):
            try:
                chunk = chunks.read(k)
            except ChecksumError:
                _finish(path, pending, out, on_block)  # an earlier bad chunk is named first
                raise
            job = pool.submit(fletcher32, chunk.body) if pool else _done(fletcher32(chunk.body))
            _finish(path, pending, out, on_block)
            pending = chunk, job
        _finish(path, pending, out, on_block)


class _Chunk(NamedTuple):
    label: str
    body: np.ndarray  # the chunk's stored data bytes, checksum excluded
    stored: int  # its stored fletcher32, copied before the next read can overwrite it
    rows: np.ndarray | None  # rows to hand on once verified (None: read straight into out)
    at: int  # row of out they go to


class _RawChunks:
    """Chunk k of rows [start, stop) read with ``read_direct_chunk``: straight into ``out``'s
    bytes when the chunk and its 4 checksum bytes fit there, else into one of two spare
    buffers (the worker may still be checksumming the other). Hints readahead as it goes."""

    def __init__(self, path, what, dset, start, stop, out):
        self.path, self.what, self.dset, self.start, self.stop = path, what, dset, start, stop
        self.c, self.tail = dset.chunks[0], (0,) * (dset.ndim - 1)
        self.chunk_bytes = self.c * _row_bytes(dset)
        self.first, self.last = start // self.c, (stop - 1) // self.c
        self.flat = out.reshape(-1).view(np.uint8) if out is not None else None
        self.spares: dict[int, np.ndarray] = {}
        self.fd, self.per_block = _vfd(dset), max(1, READ_BLOCK // self.chunk_bytes)

    def read(self, k: int) -> _Chunk:
        self._prefetch(k)
        c, n, start, dset = self.c, self.chunk_bytes, self.start, self.dset
        a, b = max(start, k * c), min(self.stop, (k + 1) * c)
        pos = (a - start) * (n // c)
        direct = self.flat is not None and a == k * c and pos + n + 4 <= self.flat.size
        buf = self.flat[pos:pos + n + 4] if direct else self._spare(k % 2)
        label = f"{self.what} chunk {k} (rows [{k * c}, {(k + 1) * c}))"
        with reading(self.path, label):
            try:
                mask, raw = dset.id.read_direct_chunk((k * c,) + self.tail, out=buf)
            except ValueError as exc:  # stored chunk larger than it can be
                raise ChecksumError(self.path, f"{label}: {exc}") from None
        if mask != 0 or len(raw) != n + 4:
            raise ChecksumError(self.path, f"{label}: stored as {len(raw)} bytes with filter "
                                           f"mask {mask}, expected {n} + 4 checksum bytes, mask 0")
        stored = int.from_bytes(buf[n:n + 4].tobytes(), "little")
        rows = None if direct else \
            buf[:n].view(dset.dtype).reshape((c,) + dset.shape[1:])[a - k * c:b - k * c]
        return _Chunk(label, buf[:n], stored, rows, a - start)

    def _spare(self, i: int) -> np.ndarray:
        if i not in self.spares:
            self.spares[i] = np.empty(self.chunk_bytes + 4, np.uint8)
        return self.spares[i]

    def _prefetch(self, k: int) -> None:
        """Keep PREFETCH_BLOCKS blocks of READ_BLOCK bytes hinted ahead of chunk k."""
        c, first, per_block = self.c, self.first, self.per_block
        if k == first:
            _prefetch(self.fd, self.dset, self.start,
                      min(self.stop, (first + per_block * PREFETCH_BLOCKS) * c))
        elif (k - first) % per_block == 0:
            ahead = k + per_block * (PREFETCH_BLOCKS - 1)
            _prefetch(self.fd, self.dset, ahead * c, min(self.stop, (ahead + per_block) * c))


def _done(value) -> Future:
    job: Future = Future()
    job.set_result(value)
    return job


def _finish(path, pending: tuple[_Chunk, Future] | None, out, on_block) -> None:
    """Wait for a chunk's checksum, compare it, then hand its spare-buffer rows on."""
    if pending is None:
        return
    chunk, job = pending
    # a job the worker has not started yet (busy CPU) is cheaper to run here than to wait for
    computed = fletcher32(chunk.body) if job.cancel() else job.result()
    if computed != chunk.stored:
        raise ChecksumError(path, f"{chunk.label}: fletcher32 mismatch (stored "
                                  f"{chunk.stored:#010x}, computed {computed:#010x}): the file "
                                  "changed after it was written")
    if chunk.rows is not None:
        if out is not None:
            out[chunk.at:chunk.at + len(chunk.rows)] = chunk.rows
        elif on_block is not None:
            on_block(chunk.rows)


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
