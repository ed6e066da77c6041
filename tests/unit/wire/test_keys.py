"""mpips.wire.keys is the one key validator: a worker's request (mpips.core.checks), a codec's
message and a push filter's input accept and refuse the same key lists alike."""
import numpy as np
import pytest

from mpips.core.checks import as_keys as request_keys
from mpips.core.spec import TableSpec
from mpips.errors import KeyOrderError, KeyRangeError, ValueShapeError
from mpips.wire.codec import Codec, decode
from mpips.wire.filters import make_filter
from mpips.wire.keys import as_keys

SPARSE = TableSpec("w", "sparse", 0, 1)


def through_request(keys):
    return request_keys(keys, SPARSE)


def through_codec(keys):
    n = len(keys) if hasattr(keys, "__len__") else 0
    got, _ = decode(Codec().encode(keys, np.ones((n, 1), np.float32)), width=1)
    return got


def through_filter(keys):
    n = len(keys) if hasattr(keys, "__len__") else 0
    every_entry = make_filter("significantly_modified", delta=0.0)
    return every_entry.apply(keys, np.ones((n, 1), np.float32))[0]


PATHS = [as_keys, through_request, through_codec, through_filter]


@pytest.mark.parametrize("path", PATHS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("keys,expected", [
    ([0, 2**63, 2**64 - 1], [0, 2**63, 2**64 - 1]),  # Python ints past int64 stay exact
    (np.array([1, 5], np.int32), [1, 5]),            # non-negative signed ints convert
    ([], []),
])
def test_every_path_accepts_the_same_keys(path, keys, expected):
    got = path(keys)
    assert got.dtype == np.uint64 and got.tolist() == expected


@pytest.mark.parametrize("path", PATHS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("keys,error", [
    ([2, 1], KeyOrderError), ([1, 1], KeyOrderError), ([-1, 2], KeyRangeError),
    ([1.5, 2.0], KeyRangeError), (np.array([[1, 2]]), ValueShapeError), ([2**64], KeyRangeError),
])
def test_every_path_refuses_the_same_keys_with_the_same_error(path, keys, error):
    with pytest.raises(error):
        path(keys)
