"""Wire format: header/reply encode and parse, and validation of untrusted bytes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpips.errors import MessageError
from mpips.wire.message import (HEADER_WORDS, MAGIC, MAX_CHUNK_KEYS, REPLY_WORDS, VERDICT, VERSION,
                           Header, Op, Status, check_key_chunk, chunk_keys_for, encode_header,
                           encode_reply, parse_header, parse_reply)
from mpips.core.partition import positions

MAX = 2**64 - 1
WORD0 = MAGIC << 16 | VERSION
WIDTHS = [1, 8, 3]  # the tables a test server knows: ids 0, 1, 2


def parse(buf):
    return parse_header(buf, len(WIDTHS), WIDTHS)


def header(**fields) -> np.ndarray:
    """An encoded valid PUSH header for table 1, with ``fields`` overriding words."""
    words = dict(op=Op.PUSH, table_id=1, request_id=42, num_keys=1000, width=WIDTHS[1],
                 chunk_keys=256)
    words.update(fields)
    return encode_header(**words)


def with_word(buf: np.ndarray, index: int, value: int) -> np.ndarray:
    buf = buf.copy()
    buf[index] = value
    return buf


# =============================================================================== round trips

@pytest.mark.parametrize("op", [Op.PUSH, Op.PULL, Op.PUSH_PULL])
@pytest.mark.parametrize("table_id", range(len(WIDTHS)))
@pytest.mark.parametrize("num_keys, chunk_keys, request_id", [(0, 1, 0), (1, 1, 1),
                                                              (10**6, 256, 2**40),
                                                              (2**63, MAX_CHUNK_KEYS, MAX)])
def test_header_round_trip(op, table_id, num_keys, chunk_keys, request_id):
    buf = encode_header(op, table_id, request_id, num_keys, WIDTHS[table_id], chunk_keys)
    assert buf.dtype == np.uint64 and buf.shape == (HEADER_WORDS,)
    assert int(buf[0]) == WORD0 and int(buf[7]) == 0
    assert parse(buf) == Header(op, table_id, request_id, num_keys, WIDTHS[table_id],
                                chunk_keys, seq=request_id)


def test_segment_and_sequence_number_travel_in_words_8_and_9():
    buf = encode_header(Op.PUSH, 1, 7, 3, WIDTHS[1], 256, segment=2, seq=5)
    assert [int(buf[8]), int(buf[9])] == [2, 5]
    hdr = parse_header(buf, len(WIDTHS), WIDTHS, num_segments=3)
    assert (hdr.segment, hdr.seq, hdr.request_id) == (2, 5, 7)


def test_encode_header_fills_a_given_buffer():
    out = np.full(HEADER_WORDS, 99, np.uint64)
    assert encode_header(Op.PULL, 2, 7, 5, 3, 2, out=out) is out
    assert out.tolist() == [WORD0, Op.PULL, 2, 7, 5, 3, 2, 0, 0, 7]


def test_done_header_skips_table_checks():
    # DONE carries no table: whatever the other words say, only op and request id matter.
    buf = encode_header(Op.DONE, 999, 5, 0, 0, 0)
    assert parse(buf) == Header(Op.DONE, 0, 5, 0, 1, 1)


@pytest.mark.parametrize("num_keys, chunk_keys, bounds", [
    (0, 4, []),
    (1, 4, [(0, 1)]),
    (8, 4, [(0, 4), (4, 8)]),
    (9, 4, [(0, 4), (4, 8), (8, 9)]),
])
def test_header_chunks(num_keys, chunk_keys, bounds):
    hdr = Header(Op.PUSH, 0, 0, num_keys, 1, chunk_keys)
    assert hdr.num_chunks == len(bounds)
    assert [hdr.chunk_bounds(i) for i in range(hdr.num_chunks)] == bounds


@pytest.mark.parametrize("width", [1, 2, 100, 1 << 20])
def test_chunk_keys_for(width):
    n = chunk_keys_for(width)
    assert 256 <= n <= MAX_CHUNK_KEYS
    assert n == 256 or n * (8 + 4 * width) <= 1 << 21


@pytest.mark.parametrize("status, error_len", [(Status.OK, 0), (Status.BAD_REQUEST, 57)])
def test_reply_round_trip(status, error_len):
    buf = encode_reply(123, status, error_len)
    assert buf.dtype == np.uint64 and buf.shape == (REPLY_WORDS,)
    assert parse_reply(buf, 123) == (status, error_len)


# ============================================================================ bad headers

BAD_HEADERS = {
    "bad_magic": (with_word(header(), 0, (MAGIC + 1) << 16 | VERSION), "bad magic"),
    "zero_word": (with_word(header(), 0, 0), "bad magic"),
    "bad_version": (with_word(header(), 0, MAGIC << 16 | (VERSION + 1)), f"wire version {VERSION + 1}"),
    "op_zero": (with_word(header(), 1, 0), "unknown op 0"),
    "op_unknown": (with_word(header(), 1, 77), "unknown op 77"),
    "op_huge": (with_word(header(), 1, MAX), f"unknown op {MAX}"),
    "table_id_unknown": (header(table_id=3, width=1), "table id 3 unknown"),
    "table_id_huge": (header(table_id=MAX, width=1), f"table id {MAX} unknown"),
    "wrong_width": (header(width=2), "width 2 but table 1 has width 8"),
    "width_zero": (header(width=0), "width 0"),
    "chunk_zero": (header(chunk_keys=0), "chunk of 0 keys"),
    "chunk_huge": (header(chunk_keys=MAX_CHUNK_KEYS + 1), f"chunk of {MAX_CHUNK_KEYS + 1}"),
    "chunk_max": (header(chunk_keys=MAX), f"chunk of {MAX} keys"),
    "wrong_dtype_int64": (header().astype(np.int64), "must be uint64"),
    "wrong_dtype_float": (header().astype(np.float64), "must be uint64"),
    "too_short": (header()[:-1], "must be uint64"),
    "too_long": (np.append(header(), np.uint64(0)), "must be uint64"),
    "two_d": (header().reshape(2, 5), "must be uint64"),
    "segment_unknown": (header(segment=1), "segment 1 unknown"),
    "segment_huge": (header(segment=MAX), f"segment {MAX} unknown"),
    "empty": (np.empty(0, np.uint64), "must be uint64"),
}


@pytest.mark.parametrize("case", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_parse_header_rejects(case):
    buf, fragment = case
    with pytest.raises(MessageError, match=fragment):
        parse(buf)


@settings(deadline=None, max_examples=500)
@given(words=st.lists(st.one_of(st.integers(0, 8), st.integers(0, MAX), st.just(WORD0)),
                      min_size=HEADER_WORDS, max_size=HEADER_WORDS))
def test_parse_header_fuzz_returns_sane_header_or_message_error(words):
    buf = np.array(words, np.uint64)
    try:
        hdr = parse(buf)
    except MessageError:
        return
    assert isinstance(hdr, Header) and isinstance(hdr.op, Op)
    assert words[0] == WORD0
    assert hdr.request_id == words[3]
    if hdr.op is not Op.DONE:
        assert 0 <= hdr.table_id < len(WIDTHS)
        assert hdr.width == WIDTHS[hdr.table_id]
        assert 1 <= hdr.chunk_keys <= MAX_CHUNK_KEYS
        assert hdr.num_chunks >= 0


@settings(deadline=None, max_examples=300)
@given(buf=hnp.arrays(np.uint64, HEADER_WORDS))
def test_parse_header_fuzz_raw_arrays(buf):
    try:
        hdr = parse(buf)
    except MessageError:
        return
    assert isinstance(hdr, Header)


# ============================================================================== bad replies

BAD_REPLIES = {
    "bad_magic": (np.array([123, 5, 0, 0], np.uint64), "bad magic"),
    "bad_version": (np.array([MAGIC << 16 | 9, 5, 0, 0], np.uint64), "wire version 9"),
    "other_request": (encode_reply(6, Status.OK), "request 6 arrived where 5 was expected"),
    "unknown_status": (np.array([WORD0, 5, 7, 0], np.uint64), "unknown status 7"),
    "huge_error_text": (encode_reply(5, Status.BAD_REQUEST, (1 << 20) + 1), "implausible"),
    "too_short": (encode_reply(5, Status.OK)[:3], "reply"),
    "too_long": (np.append(encode_reply(5, Status.OK), np.uint64(0)), "reply"),
    "wrong_dtype_int64": (encode_reply(5, Status.OK).astype(np.int64), "reply"),
    "wrong_dtype_float": (encode_reply(5, Status.OK).astype(np.float64), "reply"),
    "two_d": (encode_reply(5, Status.OK).reshape(2, 2), "reply"),
    "empty": (np.empty(0, np.uint64), "reply"),
}


@pytest.mark.parametrize("case", BAD_REPLIES.values(), ids=BAD_REPLIES.keys())
def test_parse_reply_rejects(case):
    buf, fragment = case
    with pytest.raises(MessageError, match=fragment):
        parse_reply(buf, 5)


# =========================================================================== check_key_chunk

def keys(*values):
    return np.array(values, np.uint64)


GOOD_CHUNKS = {
    "empty": (keys(), 0, 10, None),
    "empty_after_prev": (keys(), 0, 10, 9),
    "single": (keys(5), 0, 10, None),
    "range_edges": (keys(10, 19), 10, 20, None),
    "after_prev": (keys(6, 7), 0, 10, 5),
    "key_zero": (keys(0), 0, 1, None),
    "max_key_in_sparse_range": (keys(0, MAX), 0, 2**64, None),
    "max_key_after_prev": (keys(MAX), 2**63, 2**64, MAX - 1),
}


@pytest.mark.parametrize("case", GOOD_CHUNKS.values(), ids=GOOD_CHUNKS.keys())
def test_check_key_chunk_accepts(case):
    assert check_key_chunk(*case) is None


BAD_CHUNKS = {
    "below_range": (keys(9, 12), 10, 20, None, "key 9 at position 0 outside .* \\[10, 20\\)"),
    "at_range_end": (keys(12, 20), 10, 20, None, "key 20 at position 1 outside"),
    "above_range_sparse_half": (keys(5), 2**63, 2**64, None, "key 5 at position 0 outside"),
    "unsorted": (keys(3, 2), 0, 10, None, "key 2 at position 1 is not greater"),
    "duplicate": (keys(1, 4, 4), 0, 10, None, "key 4 at position 2 is not greater"),
    "duplicate_max": (keys(MAX, MAX), 0, 2**64, None, f"key {MAX} at position 1 is not greater"),
    "equal_to_prev": (keys(5, 6), 0, 10, 5, "key 5 at position 0 is not greater"),
    "before_prev": (keys(3, 6), 0, 10, 5, "key 3 at position 0 is not greater"),
    "zero_after_prev_zero": (keys(0), 0, 10, 0, "key 0 at position 0 is not greater"),
}


@pytest.mark.parametrize("case", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
def test_check_key_chunk_rejects(case):
    *args, pattern = case
    with pytest.raises(MessageError, match=pattern):
        check_key_chunk(*args)


def test_check_key_chunk_random_chunks_in_sequence():
    rng = np.random.default_rng(11)
    stream = np.unique(rng.integers(1000, 2000, size=300, dtype=np.uint64))
    prev = None
    for chunk in np.array_split(stream, 7):
        check_key_chunk(chunk, 1000, 2000, prev)
        prev = int(chunk[-1]) if chunk.size else prev
    with pytest.raises(MessageError, match="not greater"):
        check_key_chunk(stream[:5], 1000, 2000, int(stream[-1]))  # replayed chunk


# ================================================================== verdicts and placement

def test_a_push_whose_verdict_follows_says_so_in_word_1():
    buf = header(verdict=True)
    assert int(buf[1]) == Op.PUSH | VERDICT
    assert parse(buf).verdict and not parse(header()).verdict


@pytest.mark.parametrize("word1", [Op.PULL | VERDICT, Op.PUSH | 1 << 9, Op.PUSH_CODED | VERDICT])
def test_verdict_flag_only_on_push_and_no_other_flags(word1):
    with pytest.raises(MessageError, match="unknown flags"):
        parse(with_word(header(), 1, int(word1)))


def test_hashed_chunks_are_checked_by_position_and_key_order():
    ids = np.arange(200, dtype=np.uint64)
    low = ids[positions(ids, True) < np.uint64(2**63)]
    check_key_chunk(low, 0, 2**63, None, hashed=True)
    with pytest.raises(MessageError, match="outside this server's range .*hashed position"):
        check_key_chunk(ids[:20], 0, 2**63, None, hashed=True)
    with pytest.raises(MessageError, match="not greater"):
        check_key_chunk(low[::-1].copy(), 0, 2**63, None, hashed=True)
