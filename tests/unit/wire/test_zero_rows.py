"""Pull replies without their zero rows (mpips.wire.zero_rows): exact round trips, sizes, and
every malformed reply refused before a row is read."""
import numpy as np
import pytest

from mpips.errors import MessageError
from mpips.wire import zero_rows as Z


@pytest.mark.parametrize("n, width, zero_share", [(0, 1, 0.0), (1, 1, 1.0), (7, 1, 0.5),
                                                   (8, 3, 0.9), (1001, 1, 0.9), (333, 4, 0.0)])
def test_a_reply_comes_back_bit_for_bit_and_zero_rows_cost_a_bit_each(n, width, zero_share):
    rng = np.random.default_rng(n)
    values = rng.standard_normal((n, width)).astype(np.float32)
    values[rng.random(n) < zero_share] = 0.0
    if n > 2:
        values[1, 0], values[2, 0] = -0.0, np.nan  # not all-zero bits: they travel
    buf = Z.encode(values)
    kept = int(np.count_nonzero(values.view(np.uint32).any(axis=1)))
    assert buf.size == Z.HEADER_SIZE + -(-(-(-n // 8)) // 8) * 8 + 4 * kept * width
    assert buf.size <= Z.max_bytes(n, width)
    out = np.full((n, width), 7.0, np.float32)
    room = np.zeros(Z.max_bytes(n, width), np.uint8)
    room[:buf.size] = buf
    assert Z.decode_into(room, out) == buf.size
    assert np.array_equal(out.view(np.uint32), values.view(np.uint32))


def test_a_pull_of_a_mostly_zero_model_is_a_tenth_of_its_raw_bytes():
    values = np.zeros((10000, 1), np.float32)
    values[::10] = 1.5
    assert Z.encode(values).size < 0.14 * values.nbytes


def reply(n=20, width=2):
    values = np.zeros((n, width), np.float32)
    values[3] = 1.0
    values[17] = 2.0
    return Z.encode(values), np.empty((n, width), np.float32)


def header_set(buf, field, value):
    bad = buf.copy()
    bad[:Z.HEADER_SIZE].view(Z.HEADER)[0][field] = value
    return bad


@pytest.mark.parametrize("damage, message", [
    (lambda b: header_set(b, "magic", 1), "header .* does not answer"),
    (lambda b: header_set(b, "rows", 21), "does not answer 20 rows"),
    (lambda b: header_set(b, "width", 1), "does not answer"),
    (lambda b: header_set(b, "sent", 21), "does not answer"),
    (lambda b: header_set(b, "sent", 3), "expected|marks 2 rows, its header 3"),
    (lambda b: b[:Z.HEADER_SIZE - 1], "shorter than its header"),
    (lambda b: b[:-1], "bytes, .* expected"),
    (lambda b: _flip(b, Z.HEADER_SIZE, 0x01), "marks 3 rows, its header 2"),
    (lambda b: _flip(b, Z.HEADER_SIZE + 2, 0x10), "past its rows"),
    (lambda b: _flip(b, Z.HEADER_SIZE + 5, 0x01), "past its rows")])
def test_a_malformed_reply_is_refused_naming_the_problem(damage, message):
    buf, out = reply()
    with pytest.raises(MessageError, match=message):
        Z.decode_into(damage(buf), out)


def _flip(buf, at, bit):
    bad = buf.copy()
    bad[at] ^= bit
    return bad
