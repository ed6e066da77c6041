"""Layers 1-2 (kernels and pure modules) import and work with mpi4py made unimportable.

(tests/unit/test_layering.py does the same for the data-side modules.)"""
import subprocess
import sys

import pytest

from tests.data import REPO_ROOT

CORE_MODULES = ["mpips.kernels.keys", "mpips.kernels.rows", "mpips.partition", "mpips.message",
                "mpips.spec", "mpips.handlers", "mpips.checks", "mpips.errors", "mpips.undo"]

PROGRAM = """
import sys
sys.modules["mpi4py"] = None  # any `import mpi4py` now raises ImportError
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
import numpy as np
from mpips.checks import as_keys
from mpips.message import Op, encode_header, parse_header
from mpips.spec import TableSpec
spec = TableSpec("w", "sparse", 0, 2, rule="adagrad")
assert as_keys([1, 2, 3], spec).dtype == np.uint64
assert parse_header(encode_header(Op.PULL, 0, 1, 3, 1, 256), 1, [1]).num_keys == 3
loaded = sorted(m for m in sys.modules if m == "mpi4py" or m.startswith("mpi4py."))
assert loaded == ["mpi4py"] and sys.modules["mpi4py"] is None, loaded
print("ok")
"""


def run_without_mpi4py(*modules):
    return subprocess.run([sys.executable, "-c", PROGRAM, *modules], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_without_mpi4py(module):
    proc = run_without_mpi4py(module)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_all_core_modules_together_without_mpi4py():
    proc = run_without_mpi4py(*CORE_MODULES, "mpips")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_mpi_names_fail_clearly_without_mpi4py():
    # The lazy MPI-dependent names of the package raise ImportError only when touched.
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import mpips\n"
            "try:\n    mpips.init\nexcept ImportError:\n    print('import error')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert proc.stdout.strip() == "import error", proc.stderr
