"""mpips.consistency (and mpips.vclock under it) import and work with mpi4py made unimportable.

Same pattern as tests/unit/test_layering_core.py."""
import subprocess
import sys

import pytest

from tests.data import REPO_ROOT

MODULES = ["mpips.vclock", "mpips.consistency"]

PROGRAM = """
import sys
sys.modules["mpi4py"] = None  # any `import mpi4py` now raises ImportError
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
from mpips.consistency import ClockScheduler, Consistency, RangedVectorClock
assert Consistency.parse("ssp:4").required_clock(10) == 6
v = RangedVectorClock(0, 2**64, 2)
v.advance(0, 0, 0, 10)
assert len(v) == 2 and v.min_clock() == 0
s = ClockScheduler(2, {0: "bsp"})
assert s.on_push(1, 0, "p1") == [] and s.on_push(0, 0, "p0") == []
assert s.on_clock(1, 0) == [] and s.on_clock(0, 0) == ["p0", "p1"]
loaded = sorted(m for m in sys.modules if m == "mpi4py" or m.startswith("mpi4py."))
assert loaded == ["mpi4py"] and sys.modules["mpi4py"] is None, loaded
print("ok")
"""


def run_without_mpi4py(*modules):
    return subprocess.run([sys.executable, "-c", PROGRAM, *modules], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120)


@pytest.mark.parametrize("module", MODULES)
def test_consistency_imports_without_mpi4py(module):
    proc = run_without_mpi4py(module)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
