"""Run a snippet in a fresh interpreter where ``import mpi4py`` fails, for the layering tests:
the kernels and pure modules must import and work on a machine without MPI."""
import subprocess
import sys

from tests.helpers.data import REPO_ROOT

PRELUDE = """
import sys
sys.modules["mpi4py"] = None  # any `import mpi4py` now raises ImportError
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
"""

EPILOGUE = """
loaded = sorted(m for m in sys.modules if m == "mpi4py" or m.startswith("mpi4py."))
assert loaded == ["mpi4py"] and sys.modules["mpi4py"] is None, loaded
print("ok")
"""


def assert_works_without_mpi4py(body: str, *modules: str, timeout: float = 180) -> None:
    """Import ``modules``, run ``body``, and check no mpi4py module got loaded."""
    proc = subprocess.run([sys.executable, "-c", PRELUDE + body + EPILOGUE, *modules],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
