"""Wire layout of replica batches between servers, and its validation. Pure module.

A server that hosts a segment (mpips.core.hosting) sends the rows a push changed to the server
keeping the segment's replica, as a *batch*: a header of ``BATCH_WORDS`` uint64 words

    word 0  MAGIC << 16 | VERSION (of mpips.wire.message)
    word 1  kind: ROWS (rows of keys one push changed), TRANSFER (the whole segment, sent
            to a new replica holder: the copy is replaced), STASH (a push to a BSP table,
            accepted and waiting for its clock boundary: its keys and gradients) or FIN (the
            sender is done serving: no batch follows; no keys)
    word 2  segment
    word 3  table id
    word 4  number of keys n
    word 5  arrays per row: 1 + the update rule's state arrays (values first); 1 for STASH
    word 6  batch number (per sending server and receiver, from 1)
    word 7  stash entry: 1 + (worker << 40 | sequence number) of the STASH push, or of the
            stashed push whose application these ROWS are (the replica forgets it); else 0
    word 8  STASH: the push's clock; else 0
    word 9  0

then, as separate messages on the same tag, when n > 0: keys uint64[n]; for ROWS and
TRANSFER the keys' row numbers on the sender int64[n] (a replica keeps its host's row
numbers, so it writes a batch without looking the keys up: mpips.store.sparse_rows.mirror); and
rows float32[n, width x arrays] (STASH: the gradients); then always the segment's push
watermarks int64[number of workers]: the sequence number (mpips.wire.message word 9) of each
worker's last push applied to (or, BSP, accepted by) the segment. Rows, not gradients,
travel ("replication after aggregation"): a row is exact for every update rule, and applying
it twice changes nothing. The receiver answers with an ack of
``ACK_WORDS`` words: MAGIC << 16 | VERSION, batch number.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ..errors import MessageError
from .message import MAGIC, VERSION

BATCH_WORDS = 10
ACK_WORDS = 2
MAX_BATCH_KEYS = 1 << 40


class Kind(enum.IntEnum):
    ROWS = 1
    TRANSFER = 2
    STASH = 3
    FIN = 4


SEQ_BITS = 40


@dataclass(frozen=True)
class Batch:
    """A decoded, validated batch header."""

    kind: Kind
    segment: int
    table_id: int
    num_keys: int
    arrays: int
    number: int
    entry: tuple[int, int] | None = None  # (worker, sequence number) of a stash entry
    clock: int = 0


def encode_batch(kind: Kind, segment: int, table_id: int, num_keys: int, arrays: int,
                 number: int, entry: tuple[int, int] | None = None, clock: int = 0) -> np.ndarray:
    word7 = 0 if entry is None else 1 + (entry[0] << SEQ_BITS | entry[1])
    return np.array([MAGIC << 16 | VERSION, int(kind), segment, table_id, num_keys, arrays,
                     number, word7, clock, 0], np.uint64)


def parse_batch(buf: np.ndarray, num_segments: int, arrays_per_table: list[int],
                num_workers: int = 1) -> Batch:
    """Validate a received batch header against the launch's segments and tables
    (``arrays_per_table[t]``: 1 + state arrays of table t's rule)."""
    if buf.dtype != np.uint64 or buf.shape != (BATCH_WORDS,):
        raise MessageError(f"batch header must be uint64[{BATCH_WORDS}], got "
                           f"{buf.dtype}{buf.shape}")
    w = [int(x) for x in buf]
    if w[0] != MAGIC << 16 | VERSION:
        raise MessageError(f"batch header: word 0 is {w[0]:#x}, not mpips wire version {VERSION}")
    try:
        kind = Kind(w[1])
    except ValueError:
        raise MessageError(f"batch header: unknown kind {w[1]}") from None
    if w[2] >= num_segments:
        raise MessageError(f"batch header: segment {w[2]} outside [0, {num_segments})")
    if w[3] >= len(arrays_per_table):
        raise MessageError(f"batch header: table id {w[3]} unknown")
    if w[4] > MAX_BATCH_KEYS:
        raise MessageError(f"batch header: {w[4]} keys is implausible")
    arrays = 1 if kind is Kind.STASH else arrays_per_table[w[3]]
    if w[5] != arrays:
        raise MessageError(f"batch header: {w[5]} arrays per row, but table {w[3]} "
                           f"{'stashes 1' if kind is Kind.STASH else f'keeps {arrays}'}")
    if w[6] == 0 or w[9] != 0:
        raise MessageError(f"batch header: batch number {w[6]} / reserved word {w[9]}")
    entry = None
    if w[7]:
        worker, seq = (w[7] - 1) >> SEQ_BITS, (w[7] - 1) & ((1 << SEQ_BITS) - 1)
        if worker >= num_workers or kind is Kind.TRANSFER:
            raise MessageError(f"batch header: stash entry of worker {worker} in a "
                               f"{kind.name} batch ({num_workers} workers)")
        entry = (worker, seq)
    if kind is Kind.FIN and (w[4] or entry is not None):
        raise MessageError("batch header: a FIN batch with keys or a stash entry")
    if kind is Kind.STASH and entry is None:
        raise MessageError("batch header: a STASH batch without its entry")
    if kind is not Kind.STASH and w[8]:
        raise MessageError(f"batch header: clock {w[8]} in a {kind.name} batch")
    return Batch(kind, w[2], w[3], w[4], w[5], w[6], entry, w[8])


def encode_ack(number: int) -> np.ndarray:
    return np.array([MAGIC << 16 | VERSION, number], np.uint64)


def parse_ack(buf: np.ndarray, expected: int) -> None:
    """Raise MessageError unless ``buf`` acknowledges batch ``expected``."""
    if buf.dtype != np.uint64 or buf.shape != (ACK_WORDS,) or int(buf[0]) != MAGIC << 16 | VERSION:
        raise MessageError("replica ack: not an mpips ack of this wire version")
    if int(buf[1]) != expected:
        raise MessageError(f"replica ack for batch {int(buf[1])} where {expected} was next")


def check_marks(marks: np.ndarray) -> None:
    """Watermarks are sequence numbers, or -1 for "none yet"."""
    if marks.size and int(marks.min()) < -1:
        raise MessageError(f"batch watermarks: {int(marks.min())} is not a sequence number")
