"""The codec, merge and filter layers (kernels and pure modules) import and work with mpi4py
made unimportable (the same check as tests/unit/test_layering_core.py)."""
import pytest

from tests.unit.nompi import assert_works_without_mpi4py

CODEC_MODULES = ["mpips.kernels.codec", "mpips.kernels.codec_values", "mpips.kernels.merge",
                 "mpips.kernels.codec_reference", "mpips.kernels.warmup_codec",
                 "mpips.wire.keycache", "mpips.wire.codec", "mpips.wire.filters"]

BODY = """
import numpy as np
from mpips.wire.codec import Codec, KeyCache, SentKeys, decode
from mpips.wire.filters import make_filter
from mpips.kernels.warmup_codec import warm_codec
assert "merge_sum_k" in warm_codec()
keys, vals = np.arange(5, dtype=np.uint64), np.ones((5, 2), np.float32)
codec, sent, cache = Codec(key_cache=True, drop_zeros=True, values="fp16"), SentKeys(), KeyCache()
for _ in range(2):
    got_keys, got_vals = decode(codec.encode(keys, vals, sent=sent), width=2, cache=cache)
    assert (got_keys == keys).all() and (got_vals == vals).all()
assert make_filter("significantly_modified", delta=1.5).apply(keys, vals)[0].size == 0
"""


@pytest.mark.parametrize("module", CODEC_MODULES)
def test_codec_module_imports_without_mpi4py(module):
    assert_works_without_mpi4py(BODY, module)


def test_all_codec_modules_together_without_mpi4py():
    assert_works_without_mpi4py(BODY, *CODEC_MODULES, "mpips")
