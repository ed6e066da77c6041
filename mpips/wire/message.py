"""Wire layout of mpips data-path messages, and validation of received bytes. Pure module.

A request is a fixed header followed by payload chunks, all plain numpy buffers (never
pickle). The header is ``HEADER_WORDS`` uint64 words:

    word 0  MAGIC << 16 | VERSION
    word 1  op (Op) in the low 8 bits; bit 8 set on a PUSH that a verdict follows
    word 2  table id
    word 3  request id (also picks the MPI tag of the payload and the reply)
    word 4  number of keys
    word 5  row width
    word 6  keys per chunk
    word 7  clocks: the sender's clock (low 32 bits) and, for a pull, the clock count the
            read requires of every worker (high 32 bits; mpips.core.consistency)
    word 8  segment: the server index whose key range the keys lie in (with replicas, a
            segment moves to another server when its server dies: mpips.core.hosting)
    word 9  sequence number of a push: its request id when first sent; a push resent to a
            segment's new server keeps it, so the server can tell it applied it already

A PUSH_CODED request (a table with a codec) carries, instead, one uint8 message of
mpips.wire.codec (word 6 is its length in bytes), checked whole by the worker before it is sent.

After a header with n keys, the sender sends ceil(n / chunk) key chunks (uint64) and, for a
push, after each key chunk the matching value chunk (float32, chunk x width). A pull is
answered chunk by chunk with float32 values, then by a status reply of ``REPLY_WORDS`` words:
MAGIC << 16 | VERSION, request id, status (Status), length in bytes of an error text that
follows as a uint8 message when status is not OK.

A push of more than one chunk of keys is followed by the worker's verdict on its own input
(the VERDICT flag), a message in the reply layout on the request's verdict tag
(mpips.mpi.transport): the worker validates keys and values while the server is already
receiving and applying them, and the server keeps an undo log until the verdict says OK; a
verdict of WITHDRAWN makes the server roll the push back, so a bad push changes nothing. A
smaller push is validated by the worker before it is sent and carries no verdict.

Every field of a received header or reply is checked by ``parse_header``/``parse_reply``, and
every key chunk by ``check_key_chunk`` (order, and each key's position inside the server's
range: mpips.kernels.placement), before any kernel sees it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ..errors import MessageError
from ..kernels.placement import count_bad_placed, first_bad_placed

MAGIC = 0x4D50_4950_5331  # "MPIPS1"
VERSION = 4
HEADER_WORDS = 10
REPLY_WORDS = 4
MAX_WIDTH = 1 << 20
MAX_CHUNK_KEYS = 1 << 24
MAX_CODED_BYTES = (1 << 31) - 1  # one MPI message (int count)
CHUNK_BYTES = 1 << 21
"""Target payload bytes per chunk: small enough to stay in cache while the server applies
it, large enough that per-chunk overhead (a few MPI and kernel calls) is noise."""


class Op(enum.IntEnum):
    """What a request asks of a server."""

    PUSH = 1
    PULL = 2
    PUSH_PULL = 3
    DONE = 4  # the sending worker will send no more requests
    CLOCK = 5  # the sending worker finished the clock in word 7 (all its tables)
    PUSH_CODED = 6  # one mpips.wire.codec message of word 6 bytes instead of chunks; no verdict
    SAVE = 7  # checkpoint order (JSON text of word 6 bytes; mpips.ckpt.checkpoint)


class Status(enum.IntEnum):
    """Outcome of a request, sent back in the reply."""

    OK = 0
    BAD_REQUEST = 1
    WITHDRAWN = 2  # the worker found its own push invalid; nothing was applied
    KEY_CACHE_MISS = 3  # a coded push named a key list this server does not hold: resend it


@dataclass(frozen=True)
class Header:
    """A decoded, validated request header."""

    op: Op
    table_id: int
    request_id: int
    num_keys: int
    width: int
    chunk_keys: int
    clock: int = 0
    required: int = 0
    segment: int = 0
    seq: int = 0
    verdict: bool = False  # a PUSH whose verdict follows

    @property
    def num_chunks(self) -> int:
        return -(-self.num_keys // self.chunk_keys)

    def chunk_bounds(self, index: int) -> tuple[int, int]:
        """[lo, hi) of chunk ``index`` within the request's keys."""
        lo = index * self.chunk_keys
        return lo, min(lo + self.chunk_keys, self.num_keys)


def chunk_keys_for(width: int) -> int:
    """Keys per chunk for a row width: about CHUNK_BYTES of keys and values together."""
    return max(256, CHUNK_BYTES // (8 + 4 * width))


MAX_CLOCK = (1 << 32) - 1
VERDICT = 1 << 8
"""Flag in word 1 of a PUSH: the worker's verdict follows (a push of more than one chunk)."""


def encode_header(op: Op, table_id: int, request_id: int, num_keys: int, width: int,
                  chunk_keys: int, out: np.ndarray | None = None, *, clock: int = 0,
                  required: int = 0, segment: int = 0, seq: int | None = None,
                  verdict: bool = False) -> np.ndarray:
    """Fill (or allocate) a uint64[HEADER_WORDS] request header (``seq`` defaults to the
    request id; ``verdict``: a PUSH whose verdict follows)."""
    if not (0 <= clock <= MAX_CLOCK and 0 <= required <= MAX_CLOCK):
        raise ValueError(f"clock {clock} / required {required} outside [0, {MAX_CLOCK}]")
    hdr = np.empty(HEADER_WORDS, np.uint64) if out is None else out
    hdr[:] = (MAGIC << 16 | VERSION, int(op) | (VERDICT if verdict else 0), table_id, request_id, num_keys, width,
              chunk_keys, required << 32 | clock, segment,
              request_id if seq is None else seq)
    return hdr


def _check_magic(word: int, what: str) -> None:
    if word >> 16 != MAGIC:
        raise MessageError(f"{what}: bad magic {word >> 16:#x}, not an mpips message")
    if word & 0xFFFF != VERSION:
        raise MessageError(f"{what}: wire version {word & 0xFFFF}, this mpips speaks {VERSION}")


def parse_header(buf: np.ndarray, num_tables: int, widths: list[int],
                 num_segments: int = 1) -> Header:
    """Validate a received request header against the tables this server knows and the
    number of segments (servers of the launch)."""
    if buf.dtype != np.uint64 or buf.shape != (HEADER_WORDS,):
        raise MessageError(f"request header must be uint64[{HEADER_WORDS}], got {buf.dtype}{buf.shape}")
    w = [int(x) for x in buf]
    _check_magic(w[0], "request header")
    flags = w[1] & ~0xFF
    try:
        op = Op(w[1] & 0xFF)
    except ValueError:
        raise MessageError(f"request header: unknown op {w[1]}") from None
    if flags and (flags != VERDICT or op is not Op.PUSH):
        raise MessageError(f"request header: unknown flags {flags:#x} on op {op.name}")
    clock, required = w[7] & MAX_CLOCK, w[7] >> 32
    if op in (Op.DONE, Op.CLOCK):
        return Header(op, 0, w[3], 0, 1, 1, clock)
    if op is Op.SAVE:
        if not 1 <= w[6] <= 1 << 20:
            raise MessageError(f"request header: save order of {w[6]} bytes outside [1, 2**20]")
        return Header(op, 0, w[3], 0, 1, w[6], clock)
    if w[8] >= num_segments:
        raise MessageError(f"request header: segment {w[8]} unknown (the launch has "
                           f"{num_segments} servers)")
    if w[2] >= num_tables:
        raise MessageError(f"request header: table id {w[2]} unknown (server has {num_tables})")
    if w[5] != widths[w[2]]:
        raise MessageError(f"request header: width {w[5]} but table {w[2]} has width {widths[w[2]]}")
    if op is Op.PUSH_CODED:
        if not 1 <= w[6] <= MAX_CODED_BYTES:
            raise MessageError(f"request header: coded message of {w[6]} bytes outside "
                               f"[1, {MAX_CODED_BYTES}]")
    elif not 1 <= w[6] <= MAX_CHUNK_KEYS:
        raise MessageError(f"request header: chunk of {w[6]} keys outside [1, {MAX_CHUNK_KEYS}]")
    return Header(op, w[2], w[3], w[4], w[5], w[6], clock, required, w[8], w[9], bool(flags))


def encode_reply(request_id: int, status: Status, error_len: int = 0) -> np.ndarray:
    """A uint64[REPLY_WORDS] status reply."""
    return np.array([MAGIC << 16 | VERSION, request_id, int(status), error_len], np.uint64)


def parse_reply(buf: np.ndarray, request_id: int) -> tuple[Status, int]:
    """Validate a status reply for ``request_id``; returns (status, error text length)."""
    if not isinstance(buf, np.ndarray) or buf.dtype != np.uint64 or buf.shape != (REPLY_WORDS,):
        raise MessageError(f"reply must be uint64[{REPLY_WORDS}], got "
                           f"{getattr(buf, 'dtype', type(buf).__name__)}{getattr(buf, 'shape', '')}")
    w = [int(x) for x in buf]
    _check_magic(w[0], "reply")
    if w[1] != request_id:
        raise MessageError(f"reply for request {w[1]} arrived where {request_id} was expected")
    try:
        status = Status(w[2])
    except ValueError:
        raise MessageError(f"reply: unknown status {w[2]}") from None
    if w[3] > 1 << 20:
        raise MessageError(f"reply: error text of {w[3]} bytes is implausible")
    return status, w[3]


def check_key_chunk(keys: np.ndarray, lo: int, hi: int, prev: int | None, *,
                    hashed: bool = False) -> None:
    """Raise MessageError unless keys are strictly increasing, all greater than ``prev`` (the
    last key of the previous chunk, or None), and each key's position (mpips.kernels.placement:
    its mix64 when ``hashed``, else the key) lies in ``[lo, hi)``."""
    if keys.size == 0:
        return
    bounds = (np.uint64(lo), np.uint64(hi - 1), np.uint64(0 if prev is None else prev),
              prev is not None, hashed)
    if count_bad_placed(keys, *bounds):
        bad = first_bad_placed(keys, *bounds)
        key = int(keys[bad])
        before = prev if bad == 0 else int(keys[bad - 1])
        if (bad > 0 or prev is not None) and key <= before:
            raise MessageError(f"key {key} at position {bad} is not greater than the key "
                               f"before it")
        how = " (by its hashed position)" if hashed else ""
        raise MessageError(f"key {key} at position {bad} outside this server's range "
                           f"[{lo}, {hi}){how}")
