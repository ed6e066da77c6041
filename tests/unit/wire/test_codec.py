"""mpips.wire.codec: round trips through every lever, the key cache with its resend fallback, and
validation of untrusted bytes (header tampering, truncation, bit flips, random bytes)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpips.wire.codec import (F_CACHE, F_KEY_REF, F_VARINT, F_ZEROS, HEADER, HEADER_SIZE, MAGIC,
                         VALUE_ENCODINGS, Codec, bytes_per_kv, decode, parse_header)
from mpips.errors import (KeyCacheMiss, KeyOrderError, KeyRangeError, MessageError, NonFiniteError,
                          ValueShapeError)
from mpips.wire.keycache import KeyCache, SentKeys

MAX = 2**64 - 1
LEVERS = list(itertools.product([False, True], [False, True], [False, True], VALUE_ENCODINGS))
# worst-case error of a decoded value relative to max |x| of the message
TOLERANCE = {"float32": 0.0, "fp16": 2**-10, "fixed8": 1 / 127, "fixed16": 1 / 32767}


def sample(n=300, width=3, zeros=0.5, seed=0, span=2**40):
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, span, n, dtype=np.uint64))
    vals = rng.standard_normal((keys.size, width)).astype(np.float32)
    vals[rng.random(keys.size) < zeros] = 0
    return keys, vals


def assert_decodes_to(buf, keys, vals, values="float32", **kw):
    got_k, got_v = decode(buf, **kw)
    np.testing.assert_array_equal(got_k, keys)
    assert got_v.dtype == np.float32 and got_v.shape == vals.shape
    bound = TOLERANCE[values] * (float(np.abs(vals).max()) if vals.size else 0)
    assert np.abs(got_v - vals).max(initial=0) <= bound * 1.0001
    assert (got_v[vals == 0] == 0).all()  # zeros stay exactly zero


# ============================================================================== round trips

@pytest.mark.parametrize("key_cache, compact_keys, drop_zeros, values", LEVERS)
def test_round_trip_every_lever(key_cache, compact_keys, drop_zeros, values):
    codec = Codec(key_cache=key_cache, compact_keys=compact_keys, drop_zeros=drop_zeros,
                  values=values)
    keys, vals = sample()
    buf = codec.encode(keys, vals)
    assert buf.dtype == np.uint8 and buf.ndim == 1
    assert_decodes_to(buf, keys, vals, values, width=3, cache=KeyCache())
    assert_decodes_to(bytes(buf), keys, vals, values)  # plain bytes work too


EDGE_KEYS = {"empty": [], "single_zero": [0], "single_max": [MAX], "zero_and_max": [0, MAX],
             "top_of_range": list(range(MAX - 9, MAX + 1))}


@pytest.mark.parametrize("keys", EDGE_KEYS.values(), ids=EDGE_KEYS.keys())
@pytest.mark.parametrize("compact_keys, drop_zeros", [(False, False), (True, True)])
def test_round_trip_edge_keys(keys, compact_keys, drop_zeros):
    keys = np.array(keys, np.uint64)
    vals = np.arange(keys.size, dtype=np.float32).reshape(-1, 1)
    buf = Codec(compact_keys=compact_keys, drop_zeros=drop_zeros).encode(keys, vals)
    assert_decodes_to(buf, keys, vals)


def test_one_dimensional_values_are_width_one():
    keys, vals = sample(width=1)
    got_k, got_v = decode(Codec().encode(keys, vals[:, 0]))
    np.testing.assert_array_equal(got_v, vals)


def test_compression_levers_shrink_messages():
    keys = np.arange(0, 30_000, 3, dtype=np.uint64)  # small gaps: 1-byte varints
    vals = np.zeros((keys.size, 1), np.float32)
    vals[::10] = 1.5
    sizes = {name: bytes_per_kv(Codec(**levers).encode(keys, vals)) for name, levers in {
        "raw": dict(compact_keys=False), "varint": {}, "zeros": dict(drop_zeros=True),
        "fixed8": dict(drop_zeros=True, values="fixed8")}.items()}
    assert 12 <= sizes["raw"] < 12.01
    assert sizes["varint"] < 5.01 and sizes["zeros"] < 1.6 and sizes["fixed8"] < 1.3


def test_fixed_point_is_unbiased_over_messages():
    keys = np.arange(1000, dtype=np.uint64)
    vals = np.random.default_rng(2).uniform(-1, 1, (1000, 1)).astype(np.float32)
    vals[0] = 1.0  # pins the scale to 1/127
    codec = Codec(values="fixed8", seed=7)
    mean = np.mean([decode(codec.encode(keys, vals))[1] for _ in range(200)], axis=0)
    assert np.abs(mean - vals).max() < 0.3 / 127 * 3  # one level is 1/127; rounding averages out
    a, b = codec.encode(keys, vals, seed=1), codec.encode(keys, vals, seed=1)
    np.testing.assert_array_equal(a, b)  # an explicit seed is reproducible


# ============================================================================ encode checks

@pytest.mark.parametrize("keys, vals, error", [
    ([2, 1], [[1.0], [2.0]], KeyOrderError),
    ([1, 1], [[1.0], [2.0]], KeyOrderError),
    ([-1, 2], [[1.0], [2.0]], KeyRangeError),
    ([1.5, 2.0], [[1.0], [2.0]], KeyRangeError),
    ([[1, 2]], [[1.0], [2.0]], ValueShapeError),
    ([1, 2], [[1.0]], ValueShapeError),
    ([1, 2], [[1, 2]], ValueShapeError),
    ([1, 2], np.zeros((2, 0)), ValueShapeError),
])
def test_encode_rejects_bad_input(keys, vals, error):
    with pytest.raises(error):
        Codec().encode(np.array(keys), np.array(vals))


@pytest.mark.parametrize("values, bad", [("fixed8", np.nan), ("fixed16", np.inf),
                                         ("fp16", 1e6), ("fp16", np.nan)])
def test_encode_rejects_values_the_encoding_cannot_hold(values, bad):
    with pytest.raises(NonFiniteError):
        Codec(values=values).encode(np.array([1], np.uint64), np.array([[bad]], np.float32))


@pytest.mark.parametrize("kw", [dict(values="int4"), dict(seed=-1), dict(seed=2**64)])
def test_codec_rejects_bad_configuration(kw):
    with pytest.raises(ValueError):
        Codec(**kw)


# ================================================================================ key cache

def test_key_cache_sends_signature_only_the_second_time():
    keys, vals = sample(1000, width=1)
    codec, sent, cache = Codec(key_cache=True), SentKeys(), KeyCache()
    first = codec.encode(keys, vals, sent=sent)
    second = codec.encode(keys, vals, sent=sent)
    assert parse_header(first)["flags"] & F_CACHE and parse_header(second)["flags"] == F_KEY_REF
    assert second.size < first.size - 4 * keys.size
    assert_decodes_to(first, keys, vals, cache=cache)
    assert_decodes_to(second, keys, vals, cache=cache)
    assert (cache.hits, len(cache)) == (1, 1)


def test_key_cache_miss_then_resend_with_full_keys():
    keys, vals = sample(200)
    codec, sent, cache = Codec(key_cache=True, drop_zeros=True), SentKeys(), KeyCache()
    decode(codec.encode(keys, vals, sent=sent), cache=cache)
    cache.clear()  # the receiver lost the list (restart, eviction)
    ref_only = codec.encode(keys, vals, sent=sent)
    with pytest.raises(KeyCacheMiss) as info:
        decode(ref_only, cache=cache)
    assert isinstance(info.value, MessageError) and "resend" in str(info.value)
    with pytest.raises(KeyCacheMiss):
        decode(ref_only)  # no cache at all
    sent.forget(info.value.signature)  # the fallback: forget, encode again
    assert_decodes_to(codec.encode(keys, vals, sent=sent), keys, vals, cache=cache)
    assert_decodes_to(codec.encode(keys, vals, sent=sent), keys, vals, cache=cache)


def test_key_cache_evicts_least_recently_used():
    cache = KeyCache(capacity=2, max_keys=10)
    a, b, c = (np.arange(i, i + 3, dtype=np.uint64) for i in (0, 10, 20))
    cache.put(1, a)
    cache.put(2, b)
    assert cache.get(1) is not None  # 1 is now the most recent
    cache.put(3, c)
    assert 2 not in cache and 1 in cache and 3 in cache
    cache.put(4, np.arange(8, dtype=np.uint64))  # 3 + 3 + 8 keys > 10: drop oldest until fits
    assert list(cache._items) == [4] and cache.num_keys == 8
    with pytest.raises(ValueError):
        cache.get(4)[0] = 5  # cached lists are read-only


def test_sent_keys_is_bounded():
    sent = SentKeys(capacity=2)
    for sig in (1, 2, 3):
        sent.add(sig)
    assert not sent.knows(1) and sent.knows(2) and sent.knows(3)
    with pytest.raises(ValueError):
        SentKeys(capacity=0)


def test_cached_keys_checked_against_range_and_signature():
    keys, vals = sample(50)
    codec, sent, cache = Codec(key_cache=True), SentKeys(), KeyCache()
    decode(codec.encode(keys, vals, sent=sent), cache=cache)
    ref_only = codec.encode(keys, vals, sent=sent)
    with pytest.raises(MessageError, match="outside"):
        decode(ref_only, cache=cache, hi=int(keys[-1]) - 1)
    forged = Codec(key_cache=True).encode(keys, vals).copy()
    forged[HEADER_SIZE + 3] ^= 1  # keys no longer match the signature the header carries
    with pytest.raises(MessageError):
        decode(forged, cache=KeyCache())


# ============================================================================ decode checks

def tampered(buf, **fields):
    buf = buf.copy()
    hdr = buf[:HEADER_SIZE].view(HEADER)
    for name, value in fields.items():
        hdr[name] = value
    return buf


BASE_KEYS, BASE_VALS = sample(64)


@pytest.fixture(params=[dict(), dict(compact_keys=False), dict(drop_zeros=True, values="fixed8")],
                ids=["varint", "raw", "zeros-fixed8"])
def message(request):
    return Codec(**request.param).encode(BASE_KEYS, BASE_VALS)


@pytest.mark.parametrize("fields, match", [
    (dict(magic=0), "magic"), (dict(version=9), "version"), (dict(flags=64), "flags"),
    (dict(values=9), "value encoding"), (dict(width=0), "width"), (dict(width=2**21), "width"),
    (dict(num_keys=65), ""), (dict(num_keys=2**63), ""), (dict(num_rows=65), "rows"),
    (dict(key_bytes=3), ""), (dict(mask_bytes=1), ""), (dict(value_bytes=0), "value section"),
    (dict(scale=np.nan), "scale"), (dict(signature=5), "signature"),
    (dict(flags=F_KEY_REF | F_VARINT), ""),
])
def test_decode_rejects_tampered_header(message, fields, match):
    with pytest.raises(MessageError, match=match or None):
        decode(tampered(message, **fields))


def test_decode_rejects_reserved_bytes_padding_and_size(message):
    bad = message.copy()
    bad[10] = 1  # a reserved header byte (9..11)
    with pytest.raises(MessageError, match="reserved"):
        decode(bad)
    for size in (0, 10, HEADER_SIZE, message.size - 1):
        with pytest.raises(MessageError):
            decode(message[:size])
    with pytest.raises(MessageError):
        decode(np.concatenate([message, np.zeros(8, np.uint8)]))
    with pytest.raises(MessageError, match="1-D uint8"):
        decode(message.view(np.int8))


def test_decode_names_the_key_problem():
    keys = np.array([5, 6, 7], np.uint64)
    buf = Codec().encode(keys, np.ones(3, np.float32))
    with pytest.raises(MessageError, match=r"key outside the allowed range at byte 2"):
        decode(buf, hi=6)
    with pytest.raises(MessageError, match="out of"):
        decode(Codec(compact_keys=False).encode(keys, np.ones(3, np.float32)), lo=6)
    dup = buf.copy()
    dup[HEADER_SIZE + 1] = 0  # the second gap becomes 0
    with pytest.raises(MessageError, match="duplicate"):
        decode(dup)
    with pytest.raises(MessageError, match="width"):
        decode(buf, width=2)


def test_decode_checks_the_zero_mask():
    keys, vals = np.arange(5, dtype=np.uint64), np.array([[1], [0], [2], [0], [0]], np.float32)
    buf = Codec(compact_keys=False, drop_zeros=True).encode(keys, vals)
    mask_at = HEADER_SIZE + 40
    assert buf[mask_at] == 0b101
    for byte in (0b111, 0b100101):  # one bit too many; a bit past the last row
        bad = buf.copy()
        bad[mask_at] = byte
        with pytest.raises(MessageError, match="mask"):
            decode(bad)


def test_header_constants():
    assert HEADER_SIZE == 72 and HEADER_SIZE % 8 == 0
    assert bytes(np.array(MAGIC, "<u4").tobytes()) == b"MPCD"
    assert len({F_VARINT, F_KEY_REF, F_CACHE, F_ZEROS}) == 4


# =================================================================================== fuzzing

def check_valid_or_message_error(buf, **kw):
    """decode must raise MessageError or return a well-formed result; nothing else."""
    try:
        keys, vals = decode(buf, **kw)
    except MessageError:
        return False
    assert keys.dtype == np.uint64 and keys.ndim == 1
    assert vals.dtype == np.float32 and vals.shape[0] == keys.size
    assert (keys[1:] > keys[:-1]).all()
    lo, hi = kw.get("lo", 0), kw.get("hi", MAX)
    assert keys.size == 0 or (lo <= int(keys[0]) and int(keys[-1]) <= hi)
    return True


@st.composite
def messages(draw):
    levers = draw(st.sampled_from(LEVERS))
    n = draw(st.integers(0, 40))
    keys = np.array(sorted(draw(st.sets(st.one_of(st.integers(0, 1000), st.integers(0, MAX)),
                                        min_size=n, max_size=n))), np.uint64)
    width = draw(st.integers(1, 3))
    vals = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, -2.5, 1e-3, 300.0]),
                                  min_size=keys.size * width, max_size=keys.size * width)),
                    np.float32).reshape(keys.size, width)
    codec = Codec(**dict(zip(["key_cache", "compact_keys", "drop_zeros", "values"], levers)))
    return codec.encode(keys, vals), keys, vals


FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(messages())
def test_fuzz_valid_messages_decode(msg):
    buf, keys, vals = msg
    assert check_valid_or_message_error(buf, cache=KeyCache())


@FUZZ
@given(messages(), st.lists(st.integers(0, 10**6), min_size=1, max_size=6))
def test_fuzz_bit_flips(msg, positions):
    buf = msg[0].copy()
    for p in positions:
        bit = p % (8 * buf.size)
        buf[bit // 8] ^= np.uint8(1 << bit % 8)
    check_valid_or_message_error(buf, cache=KeyCache(), hi=2**63)


@FUZZ
@given(messages(), st.integers(0, 10**6), st.binary(max_size=16))
def test_fuzz_truncation_and_trailing_bytes(msg, cut, extra):
    buf = msg[0]
    assert not check_valid_or_message_error(buf[: cut % buf.size])
    if extra:
        assert not check_valid_or_message_error(np.concatenate(
            [buf, np.frombuffer(extra, np.uint8)]))


@FUZZ
@given(messages(), st.sampled_from([n for n in HEADER.names if n != "reserved"]),
       st.integers(0, MAX), st.booleans())
def test_fuzz_header_fields(msg, name, value, small):
    buf = msg[0]
    field_type = HEADER.fields[name][0]
    if field_type.kind == "f":
        value = float(np.frombuffer(np.uint64(value).tobytes(), "<f8")[0]) if not small else 1.0
    else:
        value = (value % 16 if small else value) % (1 << 8 * field_type.itemsize)
    check_valid_or_message_error(tampered(buf, **{name: value}), cache=KeyCache())


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_fuzz_random_bytes(data, with_header):
    buf = np.frombuffer(data, np.uint8).copy()
    if with_header and buf.size >= HEADER_SIZE:  # a plausible header over random sections
        buf[:4] = np.frombuffer(np.array(MAGIC, "<u4").tobytes(), np.uint8)
        buf[4:6] = [1, 0]
    check_valid_or_message_error(buf)


@FUZZ
@given(messages(), st.integers(0, 10**6), st.integers(0, 255))
def test_fuzz_payload_bytes(msg, where, byte):
    buf = msg[0].copy()
    if buf.size > HEADER_SIZE:
        buf[HEADER_SIZE + where % (buf.size - HEADER_SIZE)] = byte
    check_valid_or_message_error(buf, lo=1, hi=MAX - 1)
