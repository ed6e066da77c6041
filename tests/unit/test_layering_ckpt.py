"""The checkpoint file layer and its CLI import and work with mpi4py made unimportable."""
import subprocess
import sys

import pytest

from tests.data import REPO_ROOT
from tests.unit.nompi import assert_works_without_mpi4py

CKPT_MODULES = ["mpips.ckpt", "mpips.ckpt.errors", "mpips.ckpt.layout", "mpips.ckpt.durable",
                "mpips.ckpt.manifest", "mpips.ckpt.shardfile", "mpips.ckpt.chunkio",
                "mpips.kernels.fletcher", "mpips.ckpt.writer",
                "mpips.ckpt.verify", "mpips.ckpt.catalog", "mpips.ckpt.reader", "mpips.cli.ckpt",
                "mpips.cli.main"]

BODY = """
import tempfile
import numpy as np
from mpips.ckpt import TableMeta, read_table, save_checkpoint, split_table, verify
from mpips.core.partition import RangePartition
from mpips.core.spec import TableSpec
meta = TableMeta.from_spec(TableSpec("w", "dense", 0, 2, size=10, rule="adagrad"))
values = np.arange(10, dtype=np.float32).reshape(10, 1)
slices = split_table(meta, 2, values, state={"accum": values * 2})
with tempfile.TemporaryDirectory() as root:
    path = save_checkpoint(root, 1, [[s] for s in slices])
    verify(path).check()
    rows = read_table(path, "w", RangePartition(10, 3).range_of(1))
assert rows.values[:, 0].tolist() == [3.0, 4.0, 5.0], rows
"""


@pytest.mark.parametrize("modules", [["mpips.ckpt"], ["mpips.cli.ckpt"], CKPT_MODULES],
                         ids=["ckpt", "ckpt_cli", "all"])
def test_ckpt_modules_import_and_work_without_mpi4py(modules):
    assert_works_without_mpi4py(BODY, *modules)


def test_ckpt_cli_runs_without_mpi4py(tmp_path):
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "from mpips.cli.main import main\n"
            f"sys.exit(main(['ckpt', 'ls', {str(tmp_path)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0 and "no step-* directories" in proc.stdout, proc.stderr
