"""Layers 1-2 (kernels and pure modules) import and work with mpi4py made unimportable.

(tests/unit/test_layering.py does the same for the data-side modules.)"""
import subprocess
import sys

import pytest

from tests.data import REPO_ROOT
from tests.unit.nompi import assert_works_without_mpi4py

CORE_MODULES = ["mpips.kernels.keys", "mpips.kernels.rows", "mpips.kernels.placement",
                "mpips.kernels.hashindex", "mpips.kernels.prefetch", "mpips.core.partition",
                "mpips.wire.message", "mpips.core.spec", "mpips.core.rules", "mpips.core.checks", "mpips.errors",
                "mpips.store.undo", "mpips.registry", "mpips.store.sparse_rows", "mpips.store.request_cache"]

BODY = """
import numpy as np
from mpips.core.checks import as_keys
from mpips.wire.message import Op, encode_header, parse_header
from mpips.core.spec import TableSpec
spec = TableSpec("w", "sparse", 0, 2, rule="adagrad")
assert as_keys([1, 2, 3], spec).dtype == np.uint64
assert parse_header(encode_header(Op.PULL, 0, 1, 3, 1, 256), 1, [1]).num_keys == 3
from mpips.store.sparse_rows import SparseRows
store = SparseRows(1, 1, 0.0)
rows = np.empty(3, np.int64)
store.push(np.arange(3, dtype=np.uint64), np.ones((3, 1), np.float32), rows,
           spec.make_rule().kernel)
assert store.size == 3 and [len(p) if not isinstance(p, slice) else 0 for _, p in
                            spec.split(np.arange(100, dtype=np.uint64))] != []
"""


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_without_mpi4py(module):
    assert_works_without_mpi4py(BODY, module)


def test_all_core_modules_together_without_mpi4py():
    assert_works_without_mpi4py(BODY, *CORE_MODULES, "mpips")


def test_mpi_names_fail_clearly_without_mpi4py():
    # The lazy MPI-dependent names of the package raise ImportError only when touched.
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import mpips\n"
            "try:\n    mpips.init\nexcept ImportError:\n    print('import error')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert proc.stdout.strip() == "import error", proc.stderr
