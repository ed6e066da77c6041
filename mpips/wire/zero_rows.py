"""Pull replies without their zero rows: what a server sends back for a pull chunk of a table
whose codec drops zeros (``codec="zeros"``, mpips.wire.codec). Pure module: no MPI.

A model trained with an L1 penalty (FTRL, mpips.core.rules) holds mostly exact zeros, and a
pull of them as raw float32 rows would cost 4 * width bytes each. The reply is instead one
uint8 buffer: a 16-byte header (magic, rows asked for, rows sent, width: four little-endian
uint32), a bitmask of the rows that are not all-zero bits (bit i % 8 of byte i // 8, zero-padded
to a multiple of 8 bytes) and those rows, float32, in order. A row is dropped only when every
bit of it is zero, so -0.0 and NaN travel, and the worker gets back exactly what the server
holds. ``decode_into`` checks every field, the padding and the mask against the header before
mpips.kernels.codec_values.expand_rows reads a row.
"""
from __future__ import annotations

import numpy as np

from ..errors import MessageError
from ..kernels import codec_values as V

MAGIC = 0x5A52504D  # b"MPRZ" read as little-endian uint32
HEADER = np.dtype([("magic", "<u4"), ("rows", "<u4"), ("sent", "<u4"), ("width", "<u4")])
HEADER_SIZE = HEADER.itemsize


def _mask_bytes(n: int) -> int:
    return -(-n // 8)


def _padded(nbytes: int) -> int:
    return -(-nbytes // 8) * 8


def max_bytes(n: int, width: int) -> int:
    """Size of the largest reply for ``n`` rows of ``width`` (none of them zero)."""
    return HEADER_SIZE + _padded(_mask_bytes(n)) + 4 * n * width


def encode(values: np.ndarray) -> np.ndarray:
    """The reply for ``values`` (float32 (n, width)), a uint8 buffer of the exact length."""
    values = np.ascontiguousarray(values, np.float32)
    n, width = values.shape
    mask = np.zeros(_padded(_mask_bytes(n)), np.uint8)
    packed = np.empty((n, width), np.uint32)
    sent = V.drop_zero_rows(values.view(np.uint32), mask[:_mask_bytes(n)], packed)
    out = np.empty(HEADER_SIZE + mask.size + 4 * sent * width, np.uint8)
    out[:HEADER_SIZE].view(HEADER)[0] = (MAGIC, n, sent, width)
    out[HEADER_SIZE:HEADER_SIZE + mask.size] = mask
    out[HEADER_SIZE + mask.size:] = packed[:sent].reshape(-1).view(np.uint8)
    return out


def decode_into(buf: np.ndarray, out: np.ndarray) -> int:
    """Fill ``out`` (float32 (n, width), C-contiguous) from the reply ``buf`` (uint8, at least
    the reply's length; bytes past it are ignored); returns the bytes the reply took.
    MessageError, before any row is read, unless the header matches ``out``'s shape and the
    mask its header."""
    n, width = out.shape
    if buf.size < HEADER_SIZE:
        raise MessageError(f"zero-row reply of {buf.size} bytes, shorter than its header")
    magic, rows, sent, got_width = (int(v) for v in buf[:HEADER_SIZE].view(HEADER)[0])
    if magic != MAGIC or rows != n or got_width != width or sent > n:
        raise MessageError(f"zero-row reply header (magic {magic:#x}, rows {rows}, sent {sent}, "
                           f"width {got_width}) does not answer {n} rows of width {width}")
    mask_at, size = HEADER_SIZE, _padded(_mask_bytes(n))
    end = mask_at + size + 4 * sent * width
    if buf.size < end:
        raise MessageError(f"zero-row reply of {buf.size} bytes, {end} expected")
    mask = buf[mask_at:mask_at + _mask_bytes(n)]
    if buf[mask_at + mask.size:mask_at + size].any() or (n % 8 and mask.size
                                                         and mask[-1] >> (n % 8)):
        raise MessageError("zero-row reply mask has bits or padding set past its rows")
    if int(np.bitwise_count(mask).sum()) != sent:
        raise MessageError(f"zero-row reply mask marks {int(np.bitwise_count(mask).sum())} "
                           f"rows, its header {sent}")
    packed = np.ascontiguousarray(buf[mask_at + size:end]).view(np.uint32).reshape(sent, width)
    V.expand_rows(np.ascontiguousarray(mask), packed, out.view(np.uint32))
    return end
