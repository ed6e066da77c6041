"""mpips.core.consistency (and mpips.core.vclock under it) import and work with mpi4py made unimportable.

Same pattern as tests/unit/test_layering_core.py."""
import pytest

from tests.unit.nompi import assert_works_without_mpi4py

MODULES = ["mpips.core.vclock", "mpips.core.consistency"]

BODY = """
from mpips.core.consistency import ClockScheduler, Consistency, RangedVectorClock
assert Consistency.parse("ssp:4").required_clock(10) == 6
v = RangedVectorClock(0, 2**64, 2)
v.advance(0, 0, 0, 10)
assert len(v) == 2 and v.min_clock() == 0
s = ClockScheduler(2, {0: "bsp"})
assert s.on_push(1, 0, "p1") == [] and s.on_push(0, 0, "p0") == []
assert s.on_clock(1, 0) == [] and s.on_clock(0, 0) == ["p0", "p1"]
"""


@pytest.mark.parametrize("module", MODULES)
def test_consistency_imports_without_mpi4py(module):
    assert_works_without_mpi4py(BODY, module)
