"""The data-side modules are pure: they import (and work) with mpi4py made unimportable."""
import subprocess
import sys

import pytest

from tests.data import REPO_ROOT

PURE_MODULES = ["mpips.ml.dataset", "mpips.ml.libsvm", "mpips.ml.synthetic", "mpips.ml.metrics", "mpips.ml.lr"]

PROGRAM = """
import sys
sys.modules["mpi4py"] = None  # any `import mpi4py` now raises ImportError
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
from mpips.ml.synthetic import make_sparse_classification
from mpips.ml import lr, metrics
data = make_sparse_classification(200, 100, 5, seed=0)
batch = lr.minibatch(data)
loss, _, _ = lr.loss_and_gradient(batch, [0.0] * batch.keys.size)
assert abs(loss - metrics.logloss(data.labels, [0.5] * data.n_rows)) < 1e-12
loaded = sorted(m for m in sys.modules if m == "mpi4py" or m.startswith("mpi4py."))
assert loaded == ["mpi4py"] and sys.modules["mpi4py"] is None, loaded
print("ok")
"""


@pytest.mark.parametrize("module", PURE_MODULES)
def test_module_imports_without_mpi4py(module):
    proc = subprocess.run([sys.executable, "-c", PROGRAM, module], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
