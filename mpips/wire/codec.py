"""Message codec: (keys, values) as one contiguous uint8 buffer, with compression levers.
Pure module: no MPI.

    codec = Codec(key_cache=True, drop_zeros=True, values="fp16")
    buf = codec.encode(keys, vals, sent=sent_to[peer])      # sender
    keys, vals = decode(buf, width=w, cache=key_cache)      # receiver, untrusted bytes

Levers: ``compact_keys`` sends the keys as varints of their gaps; ``key_cache`` sends only a
64-bit signature of a key list the receiver has already seen (the sender remembers what it
sent in a SentKeys, the receiver keeps a bounded LRU KeyCache; a miss raises KeyCacheMiss and
the caller resends with full keys); ``drop_zeros`` sends a bitmask of the non-zero rows and
only those rows; ``values`` picks float32, fp16, or 8/16-bit fixed point with a per-message
scale and stochastic rounding (unbiased).

Layout (little-endian): a HEADER_SIZE-byte header (HEADER dtype: magic, version, flags,
value encoding, reserved zeros, width, num_keys, num_rows, signature, scale, key_bytes,
mask_bytes, value_bytes), then the key section, the mask section (each zero-padded to a
multiple of 8 bytes) and the value section (num_rows x width values). ``decode`` checks every
header field, every length, the padding, the key order and the [lo, hi] bounds before any
kernel reads a payload byte, and raises MessageError naming the problem.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import KeyCacheMiss, MessageError, NonFiniteError, ValueShapeError
from ..kernels import codec as K
from ..kernels import codec_values as V
from ..kernels.keys import first_bad_key
from .keycache import KeyCache, SentKeys
from .keys import as_keys

MAGIC = 0x4443504D  # b"MPCD" read as little-endian uint32
VERSION = 1
MAX_KEY = 2**64 - 1
MAX_WIDTH = 1 << 20
F32_MAX = float(np.finfo(np.float32).max)
F_VARINT, F_KEY_REF, F_CACHE, F_ZEROS = 1, 2, 4, 8  # header flags
KNOWN_FLAGS = F_VARINT | F_KEY_REF | F_CACHE | F_ZEROS
HEADER = np.dtype([("magic", "<u4"), ("version", "<u2"), ("flags", "<u2"), ("values", "u1"),
                   ("reserved", "u1", (3,)), ("width", "<u4"), ("num_keys", "<u8"),
                   ("num_rows", "<u8"), ("signature", "<u8"), ("scale", "<f8"),
                   ("key_bytes", "<u8"), ("mask_bytes", "<u8"), ("value_bytes", "<u8")])
HEADER_SIZE = HEADER.itemsize  # 72


# ------------------------------------------------------------------------ value encodings

class ValueEncoding:
    """How value rows travel: wire dtype, and float32 <-> wire conversion (flat arrays)."""

    name, code, dtype = "float32", 0, np.dtype("<f4")

    def encode(self, flat: np.ndarray, out: np.ndarray, seed: int) -> float:
        """Fill out (wire dtype) from float32 flat; returns the scale to put in the header."""
        out[:] = flat
        return 0.0

    def decode(self, wire: np.ndarray, scale: float) -> np.ndarray:
        return wire


class Float16(ValueEncoding):
    name, code, dtype = "fp16", 1, np.dtype("<u2")
    LIMIT = 65520.0  # |x| from here on rounds to inf

    def encode(self, flat, out, seed):
        big = float(np.abs(flat).max()) if flat.size else 0.0
        if not big < self.LIMIT:
            raise NonFiniteError(f"values up to {big!r} in magnitude do not fit fp16 "
                                 f"(largest finite half is 65504)")
        V.f16_encode(flat.view(np.uint32), out)
        return 0.0

    def decode(self, wire, scale):
        out = np.empty(wire.size, np.float32)
        V.f16_decode(wire, out.view(np.uint32))
        return out


class Fixed(ValueEncoding):
    """Signed fixed point in ``dtype``: value = q * scale, scale = max|x| / qmax per message,
    q rounded stochastically (a seeded counter-based PRNG), so E[decoded] = value."""

    def __init__(self, name: str, code: int, dtype: str):
        self.name, self.code, self.dtype = name, code, np.dtype(dtype)
        self.qmax = float(np.iinfo(self.dtype).max)

    def encode(self, flat, out, seed):
        big = float(np.abs(flat).max()) if flat.size else 0.0
        if not math.isfinite(big):
            raise NonFiniteError(f"{self.name} values must be finite, got max |x| = {big!r}")
        # at least float32's smallest normal, so that 1 / scale stays finite
        scale = np.float32(max(big / self.qmax, float(np.finfo(np.float32).tiny)))
        V.fixed_encode(flat, np.float32(1.0 / float(scale)), np.float32(self.qmax),
                       np.uint64(seed), out)
        return float(scale)

    def decode(self, wire, scale):
        out = np.empty(wire.size, np.float32)
        V.fixed_decode(wire, np.float32(scale), out)
        return out


VALUE_ENCODINGS: dict[str, ValueEncoding] = {
    e.name: e for e in (ValueEncoding(), Float16(), Fixed("fixed8", 2, "i1"),
                        Fixed("fixed16", 3, "<i2"))}
BY_CODE = {e.code: e for e in VALUE_ENCODINGS.values()}


# ---------------------------------------------------------------------------------- encode

def _pad8(n: int) -> int:
    return -(-n // 8) * 8


def _splitmix(x: int) -> int:
    """splitmix64 finaliser on a Python int (mod 2**64): per-message rounding seeds."""
    x &= MAX_KEY
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MAX_KEY
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MAX_KEY
    return x ^ (x >> 31)


def _as_rows(vals, n: int) -> np.ndarray:
    arr = np.asarray(vals)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[0] != n or not 1 <= arr.shape[1] <= MAX_WIDTH:
        raise ValueShapeError(f"values must be ({n}, width) with 1 <= width <= {MAX_WIDTH} "
                              f"(or ({n},)), got shape {np.shape(vals)}")
    if arr.dtype.kind != "f":
        raise ValueShapeError(f"values must be floating point, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, np.float32)


@dataclass
class Codec:
    """Which levers a sender pulls; ``encode`` builds a message that ``decode`` reads back
    (decode needs no Codec: everything it needs is in the header)."""

    key_cache: bool = False
    compact_keys: bool = True
    drop_zeros: bool = False
    values: str = "float32"
    seed: int = 0
    _messages: int = field(default=0, init=False, repr=False)

    def __post_init__(self):
        if self.values not in VALUE_ENCODINGS:
            raise ValueError(f"unknown value encoding {self.values!r}; known: "
                             f"{', '.join(VALUE_ENCODINGS)}")
        if not (isinstance(self.seed, int) and 0 <= self.seed <= MAX_KEY):
            raise ValueError(f"codec seed must be an int in [0, 2**64), got {self.seed!r}")

    def encode(self, keys, vals, *, sent: SentKeys | None = None,
               seed: int | None = None) -> np.ndarray:
        """One uint8 buffer holding keys (uint64, sorted, unique) and vals (float32-able,
        (n, width) or (n,)). With key_cache, a key list already in ``sent`` travels as its
        signature only, and a new one is added to ``sent``. ``seed`` drives stochastic
        rounding (default: derived from the codec seed and a message counter)."""
        keys = as_keys(keys)
        rows = _as_rows(vals, keys.size)
        if seed is None:
            self._messages += 1
            seed = _splitmix(self.seed + self._messages * int(K.GOLDEN))
        hdr = np.zeros((), HEADER)
        hdr["magic"], hdr["version"], hdr["width"] = MAGIC, VERSION, rows.shape[1]
        hdr["num_keys"] = keys.size
        flags = self._key_flags(keys, hdr, sent)
        mask = None
        if self.drop_zeros:
            flags |= F_ZEROS
            mask = np.empty(-(-keys.size // 8), np.uint8)
            packed = np.empty_like(rows).view(np.uint32)
            rows = packed[: V.drop_zero_rows(rows.view(np.uint32), mask, packed)].view(np.float32)
        enc = VALUE_ENCODINGS[self.values]
        hdr["flags"], hdr["num_rows"], hdr["values"] = flags, rows.shape[0], enc.code
        hdr["key_bytes"] = 0 if flags & F_KEY_REF else (
            K.varint_size(keys) if flags & F_VARINT else 8 * keys.size)
        hdr["mask_bytes"] = 0 if mask is None else mask.size
        hdr["value_bytes"] = rows.size * enc.dtype.itemsize
        buf, (key_at, mask_at, value_at) = _allocate(hdr)
        if flags & F_VARINT:
            K.varint_encode(keys, buf[key_at: key_at + int(hdr["key_bytes"])])
        elif not flags & F_KEY_REF:
            buf[key_at: mask_at].view("<u8")[:] = keys
        if mask is not None:
            buf[mask_at: mask_at + mask.size] = mask
        hdr["scale"] = enc.encode(rows.reshape(-1), buf[value_at:].view(enc.dtype), seed)
        buf[:HEADER_SIZE] = np.frombuffer(hdr.tobytes(), np.uint8)
        return buf

    def _key_flags(self, keys, hdr, sent) -> int:
        flags = F_VARINT if self.compact_keys else 0
        if self.key_cache:
            signature = int(K.key_signature(keys))
            hdr["signature"] = signature
            if sent is not None and sent.knows(signature):
                return F_KEY_REF
            if sent is not None:
                sent.add(signature)
            flags |= F_CACHE
        return flags


CODEC_WORDS = {"keycache": {"key_cache": True}, "varint": {"compact_keys": True},
               "rawkeys": {"compact_keys": False}, "zeros": {"drop_zeros": True},
               **{name: {"values": name} for name in VALUE_ENCODINGS}}
"""Words of a table's codec text ("keycache,zeros,fp16") and the Codec fields they set."""


def codec_from_text(text: str) -> Codec | None:
    """The Codec a table's codec text names; None for "" or "none" (raw keys and values).
    Varint keys are on unless "rawkeys" is given."""
    words = [w.strip() for w in (text or "").split(",") if w.strip()]
    if words in ([], ["none"]):
        return None
    fields: dict = {}
    for word in words:
        if word not in CODEC_WORDS:
            raise ValueError(f"unknown codec word {word!r} in {text!r}; known: "
                             f"{', '.join(CODEC_WORDS)} (comma-separated), or none")
        fields.update(CODEC_WORDS[word])
    return Codec(**fields)


def _offsets(key_bytes: int, mask_bytes: int) -> tuple[int, int, int]:
    """Where the key, mask and value sections start."""
    mask_at = HEADER_SIZE + _pad8(key_bytes)
    return HEADER_SIZE, mask_at, mask_at + _pad8(mask_bytes)


def _allocate(hdr):
    """The message buffer for a filled-in header, its padding zeroed, and section offsets."""
    key_bytes, mask_bytes = int(hdr["key_bytes"]), int(hdr["mask_bytes"])
    offsets = key_at, mask_at, value_at = _offsets(key_bytes, mask_bytes)
    buf = np.empty(value_at + int(hdr["value_bytes"]), np.uint8)
    buf[key_at + key_bytes: mask_at] = 0
    buf[mask_at + mask_bytes: value_at] = 0
    return buf, offsets


# ---------------------------------------------------------------------------------- decode

def _as_bytes(buf) -> np.ndarray:
    if isinstance(buf, (bytes, bytearray, memoryview)):
        return np.frombuffer(buf, np.uint8)
    if not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.ndim != 1:
        what = f"{getattr(buf, 'dtype', type(buf).__name__)}{getattr(buf, 'shape', '')}"
        raise MessageError(f"a codec message is a 1-D uint8 array or bytes, got {what}")
    return np.require(buf, requirements="C")


def parse_header(buf, width: int | None = None) -> dict:
    """The checked header fields (Python ints) of a message; MessageError unless every
    field, every section length and the total size agree."""
    buf = _as_bytes(buf)
    if buf.size < HEADER_SIZE:
        raise MessageError(f"codec message of {buf.size} bytes is shorter than its "
                           f"{HEADER_SIZE}-byte header")
    raw = buf[:HEADER_SIZE].copy().view(HEADER)[0]
    h = {name: raw[name].item() for name in HEADER.names if name != "reserved"}
    if h["magic"] != MAGIC:
        raise MessageError(f"bad magic {h['magic']:#010x}: not an mpips codec message")
    if h["version"] != VERSION:
        raise MessageError(f"codec version {h['version']}, this mpips reads {VERSION}")
    if h["flags"] & ~KNOWN_FLAGS or raw["reserved"].any():
        raise MessageError(f"unknown flags {h['flags']:#x} or non-zero reserved bytes")
    if h["values"] not in BY_CODE:
        raise MessageError(f"unknown value encoding {h['values']}")
    if not 1 <= h["width"] <= MAX_WIDTH or width is not None and h["width"] != width:
        raise MessageError(f"row width {h['width']}, expected "
                           f"{width if width is not None else f'1..{MAX_WIDTH}'}")
    _check_lengths(h, buf)
    return h


def _check_lengths(h: dict, buf: np.ndarray) -> None:
    flags, n, rows = h["flags"], h["num_keys"], h["num_rows"]
    if flags & F_KEY_REF and flags & (F_VARINT | F_CACHE):
        raise MessageError(f"flags {flags:#x}: a key reference carries no keys to decode or cache")
    if not flags & (F_KEY_REF | F_CACHE) and h["signature"]:
        raise MessageError("a key signature in a message that neither caches nor references keys")
    if rows > n or (rows != n and not flags & F_ZEROS):
        raise MessageError(f"{rows} value rows for {n} keys")
    key_ok = (h["key_bytes"] == 0 if flags & F_KEY_REF else
              n <= h["key_bytes"] <= 10 * n if flags & F_VARINT else h["key_bytes"] == 8 * n)
    if not key_ok:
        raise MessageError(f"key section of {h['key_bytes']} bytes cannot hold {n} keys "
                           f"with flags {flags:#x}")
    if h["mask_bytes"] != (-(-n // 8) if flags & F_ZEROS else 0):
        raise MessageError(f"zero-row mask of {h['mask_bytes']} bytes for {n} keys")
    enc = BY_CODE[h["values"]]
    if h["value_bytes"] != rows * h["width"] * enc.dtype.itemsize:
        raise MessageError(f"value section of {h['value_bytes']} bytes, expected {rows} rows "
                           f"x {h['width']} x {enc.dtype.itemsize} bytes")
    fixed = isinstance(enc, Fixed)
    scale = h["scale"]
    ok = (0 < scale <= F32_MAX and float(np.float32(scale)) == scale) if fixed else scale == 0
    if not ok:
        raise MessageError(f"scale {scale!r} is invalid for {enc.name} values")
    key_at, mask_at, value_at = _offsets(h["key_bytes"], h["mask_bytes"])
    if buf.size != value_at + h["value_bytes"]:
        raise MessageError(f"codec message of {buf.size} bytes, its header describes "
                           f"{value_at + h['value_bytes']}")
    padding = (buf[key_at + h["key_bytes"]: mask_at], buf[mask_at + h["mask_bytes"]: value_at])
    if padding[0].any() or padding[1].any():
        raise MessageError("non-zero padding between sections")


def decode(buf, *, width: int | None = None, lo: int = 0, hi: int = MAX_KEY,
           cache: KeyCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(keys uint64 (n,), values float32 (n, width)) of a message from untrusted bytes.

    Raises MessageError unless the message is well formed, its keys are strictly increasing
    and all in [lo, hi] and, when ``width`` is given, its rows have that width; KeyCacheMiss
    (a MessageError) when it references a key list ``cache`` does not hold. Keys arriving with
    a cache flag are checked against their signature and stored in ``cache``. The arrays may
    share memory with ``buf`` or the cache (cached keys are read-only). Values are not
    checked for NaN/inf. Pass ``width`` for untrusted bytes: it bounds what a small message
    can make decode allocate (a zero-row mask expands to num_keys x width floats).
    """
    buf = _as_bytes(buf)
    h = parse_header(buf, width)
    key_at, mask_at, value_at = _offsets(h["key_bytes"], h["mask_bytes"])
    keys = _decode_keys(buf[key_at: key_at + h["key_bytes"]], h, lo, hi, cache)
    vals = _decode_values(buf[mask_at: mask_at + h["mask_bytes"]], buf[value_at:], h)
    return keys, vals


def _decode_keys(section, h, lo, hi, cache) -> np.ndarray:
    n, flags, signature = h["num_keys"], h["flags"], h["signature"]
    if not 0 <= lo <= hi <= MAX_KEY:
        raise ValueError(f"key bounds must satisfy 0 <= lo <= hi < 2**64, got [{lo}, {hi}]")
    if flags & F_KEY_REF:
        keys = None if cache is None else cache.get(signature)
        if keys is None:
            raise KeyCacheMiss(signature, "no cache given" if cache is None else "not cached")
        if keys.size != n:
            raise MessageError(f"cached key list {signature:#x} has {keys.size} keys, "
                               f"the message says {n}")
        if n and (keys[0] < lo or keys[-1] > hi):
            raise MessageError(f"cached keys span [{keys[0]}, {keys[-1]}], outside [{lo}, {hi}]")
        return keys
    if flags & F_VARINT:
        count, pos = K.varint_check(section, np.uint64(lo), np.uint64(hi))
        if count < 0:
            bounds = f" (allowed [{lo}, {hi}])" if count == K.KEY_OUT_OF_RANGE else ""
            raise MessageError(f"key section: {K.ERRORS[count]} at byte {pos}{bounds}")
        if count != n:
            raise MessageError(f"key section holds {count} keys, the header says {n}")
        keys = np.empty(n, np.uint64)
        K.varint_decode(section, keys)
    else:
        keys = np.require(section.view("<u8"), np.uint64, "AC")
        bad = first_bad_key(keys, np.uint64(lo), np.uint64(hi), np.uint64(0), False)
        if bad >= 0:
            raise MessageError(f"key {int(keys[bad])} at position {bad} is out of [{lo}, {hi}] "
                               "or not greater than the key before it")
    if flags & F_CACHE and cache is not None:
        if int(K.key_signature(keys)) != signature:
            raise MessageError(f"keys do not match their signature {signature:#x}")
        cache.put(signature, keys)
    return keys


def _decode_values(mask, section, h) -> np.ndarray:
    n, rows, width = h["num_keys"], h["num_rows"], h["width"]
    enc = BY_CODE[h["values"]]
    wire = np.require(section.view(enc.dtype), enc.dtype.newbyteorder("="), "AC")
    vals = enc.decode(wire, h["scale"]).reshape(rows, width)
    if not h["flags"] & F_ZEROS:
        return vals
    if n % 8 and mask[-1] >> (n % 8):
        raise MessageError(f"zero-row mask has bits set past row {n}")
    if int(np.bitwise_count(mask).sum()) != rows:
        raise MessageError(f"zero-row mask marks {int(np.bitwise_count(mask).sum())} rows, "
                           f"the header says {rows}")
    out = np.empty((n, width), np.float32)
    V.expand_rows(mask, np.require(vals.view(np.uint32), requirements="C"), out.view(np.uint32))
    return out


def bytes_per_kv(buf) -> float:
    """Bytes on the wire per (key, value row) of a message, header included (the raw cost
    is 8 + 4 * width: a uint64 key and float32 values)."""
    buf = _as_bytes(buf)
    return buf.size / max(parse_header(buf)["num_keys"], 1)
