"""mpips.wire.replica: batch headers and acks between servers are checked before use."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpips.errors import MessageError
from mpips.wire.message import MAGIC, VERSION
from mpips.wire.replica import (BATCH_WORDS, Batch, Kind, check_marks, encode_ack,
                                encode_batch, parse_ack, parse_batch)

ARRAYS = [1, 2]  # table 0: a sum table (values only); table 1: adagrad (values + accumulator)


def test_batch_round_trip():
    buf = encode_batch(Kind.TRANSFER, 2, 1, 1000, 2, 7)
    assert buf.shape == (BATCH_WORDS,)
    assert parse_batch(buf, 3, ARRAYS) == Batch(Kind.TRANSFER, 2, 1, 1000, 2, 7)


def test_stash_batches_carry_their_entry_and_clock_and_rows_may_name_an_applied_entry():
    stash = encode_batch(Kind.STASH, 1, 1, 4, 1, 3, entry=(2, 2**39 + 5), clock=17)
    assert parse_batch(stash, 3, ARRAYS, num_workers=3) == Batch(Kind.STASH, 1, 1, 4, 1, 3,
                                                                 (2, 2**39 + 5), 17)
    rows = encode_batch(Kind.ROWS, 1, 1, 4, 2, 4, entry=(0, 9))
    assert parse_batch(rows, 3, ARRAYS, num_workers=3).entry == (0, 9)


def _with(index, value):
    buf = encode_batch(Kind.ROWS, 0, 1, 5, 2, 1)
    buf[index] = value
    return buf


@pytest.mark.parametrize("buf,fragment", [
    (_with(0, 0), "not mpips wire version"),
    (_with(0, MAGIC << 16 | (VERSION - 1)), "not mpips wire version"),
    (_with(1, 9), "unknown kind 9"),
    (_with(2, 3), "segment 3 outside"),
    (_with(3, 2), "table id 2 unknown"),
    (_with(4, 1 << 50), "implausible"),
    (_with(5, 1), "1 arrays per row, but table 1 keeps 2"),
    (_with(6, 0), "batch number 0"),
    (_with(9, 1), "reserved word 1"),
    (_with(7, 1 + (5 << 40)), "stash entry of worker 5"),
    (_with(8, 3), "clock 3 in a ROWS batch"),
    (encode_batch(Kind.STASH, 0, 1, 2, 1, 1), "STASH batch without its entry"),
    (encode_batch(Kind.STASH, 0, 1, 2, 2, 1, entry=(0, 1)), "table 1 stashes 1"),
    (encode_batch(Kind.TRANSFER, 0, 1, 2, 2, 1, entry=(0, 1)), "in a TRANSFER batch"),
    (encode_batch(Kind.FIN, 0, 0, 3, 1, 1), "FIN batch with keys"),
    (encode_batch(Kind.ROWS, 0, 0, 1, 1, 1).astype(np.int64), "must be uint64"),
    (encode_batch(Kind.ROWS, 0, 0, 1, 1, 1)[:-1], "must be uint64"),
])
def test_bad_batch_headers_are_refused(buf, fragment):
    with pytest.raises(MessageError, match=fragment):
        parse_batch(buf, 3, ARRAYS, num_workers=2)


@settings(deadline=None, max_examples=300)
@given(st.lists(st.one_of(st.integers(0, 4), st.integers(0, 2**64 - 1),
                          st.just(MAGIC << 16 | VERSION)), min_size=BATCH_WORDS,
                max_size=BATCH_WORDS))
def test_fuzzed_batch_headers_parse_to_sane_batches_or_message_error(words):
    try:
        batch = parse_batch(np.array(words, np.uint64), 3, ARRAYS, num_workers=2)
    except MessageError:
        return
    assert 0 <= batch.segment < 3 and batch.arrays == ARRAYS[batch.table_id]
    assert batch.number >= 1 and (batch.entry is None or batch.entry[0] < 2)


def test_acks_must_name_the_next_batch():
    parse_ack(encode_ack(4), 4)
    with pytest.raises(MessageError, match="batch 5 where 4"):
        parse_ack(encode_ack(5), 4)
    with pytest.raises(MessageError, match="not an mpips ack"):
        parse_ack(np.zeros(2, np.uint64), 1)


def test_watermarks_are_sequence_numbers_or_minus_one():
    check_marks(np.array([-1, 0, 12], np.int64))
    with pytest.raises(MessageError, match="-2 is not a sequence number"):
        check_marks(np.array([3, -2], np.int64))
