"""The layers (README, Layout): imports point down them, folder by folder (a module imports
from its own folder or from a lower layer, never from beside or above it), and the modules
without MPI import and work with mpi4py made unimportable."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.data import REPO_ROOT
from tests.helpers.nompi import assert_works_without_mpi4py

PACKAGE = Path(REPO_ROOT) / "mpips"
LAYERS = {
    "errors": 0, "registry": 0,  # the root's base: every layer may raise and register
    "kernels": 1,
    "ml": 2, "wire": 2,
    "core": 3,
    "launch": 4,
    "mpi": 5,
    "store": 6, "ckpt": 6,
    "server": 7, "worker": 7,
    "session": 8,
    "cli": 9,
    "__init__": 10, "__main__": 10,  # the package's face
}


def folder_of(module: str) -> str:
    """``mpips.server.kvserver`` -> ``server``; ``mpips.errors`` -> ``errors``;
    ``mpips`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def imported_modules(path: Path) -> set[str]:
    """The mpips modules ``path`` imports (relative imports resolved), at any depth."""
    name, is_package = module_name(path)
    here = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mpips"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = {a.name for a in node.names}
            if target == "mpips" and names == {"__version__"}:
                continue  # a constant the package defines before it imports anything
            if target.split(".")[0] == "mpips":
                modules = {f"{target}.{sub}" for sub in names if _exists(f"{target}.{sub}")}
                found |= modules  # from . import a, b: modules of a package
                if len(modules) < len(names):  # names defined by ``target`` itself
                    found.add(target)
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_sits_in_a_ranked_folder():
    assert {folder_of(module_name(p)[0]) for p in MODULES} <= set(LAYERS)
    assert not [p.name for p in PACKAGE.glob("*.py")
                if p.stem not in ("__init__", "__main__", "errors", "registry")]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    name, _ = module_name(path)
    mine = folder_of(name)
    upward = []
    for target in imported_modules(path):
        theirs = folder_of(target)
        if theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
            upward.append(f"{target} ({theirs}, layer {LAYERS[theirs]})")
    assert not upward, f"{name} (layer {LAYERS[mine]}) imports from beside or above: {upward}"


# ---------------------------------------------------------------- modules without MPI

DATA_MODULES = ["mpips.ml.dataset", "mpips.ml.libsvm", "mpips.ml.synthetic", "mpips.ml.metrics",
                "mpips.ml.lr"]

DATA_PROGRAM = """
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


@pytest.mark.parametrize("module", DATA_MODULES)
def test_module_imports_without_mpi4py(module):
    proc = subprocess.run([sys.executable, "-c", DATA_PROGRAM, module], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


CORE_MODULES = ["mpips.kernels.keys", "mpips.kernels.rows", "mpips.kernels.placement",
                "mpips.kernels.hashindex", "mpips.kernels.prefetch", "mpips.core.partition",
                "mpips.wire.message", "mpips.core.spec", "mpips.core.rules", "mpips.core.checks",
                "mpips.errors", "mpips.store.undo", "mpips.registry", "mpips.store.sparse_rows",
                "mpips.store.request_cache"]

CORE_BODY = """
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
    assert_works_without_mpi4py(CORE_BODY, module)


def test_all_core_modules_together_without_mpi4py():
    assert_works_without_mpi4py(CORE_BODY, *CORE_MODULES, "mpips")


def test_mpi_names_fail_clearly_without_mpi4py():
    # The lazy MPI-dependent names of the package raise ImportError only when touched.
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import mpips\n"
            "try:\n    mpips.init\nexcept ImportError:\n    print('import error')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert proc.stdout.strip() == "import error", proc.stderr


CODEC_MODULES = ["mpips.kernels.codec", "mpips.kernels.codec_values", "mpips.kernels.merge",
                 "mpips.kernels.codec_reference", "mpips.kernels.warmup_codec",
                 "mpips.wire.keycache", "mpips.wire.keys", "mpips.wire.codec", "mpips.wire.filters"]

CODEC_BODY = """
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
    assert_works_without_mpi4py(CODEC_BODY, module)


def test_all_codec_modules_together_without_mpi4py():
    assert_works_without_mpi4py(CODEC_BODY, *CODEC_MODULES, "mpips")


CONSISTENCY_MODULES = ["mpips.core.vclock", "mpips.core.consistency", "mpips.core.scheduler"]

CONSISTENCY_BODY = """
from mpips.core.consistency import Consistency
from mpips.core.scheduler import ClockScheduler
from mpips.core.vclock import RangedVectorClock
assert Consistency.parse("ssp:4").required_clock(10) == 6
v = RangedVectorClock(0, 2**64, 2)
v.advance(0, 0, 0, 10)
assert len(v) == 2 and v.min_clock() == 0
s = ClockScheduler(2, {0: "bsp"})
assert s.on_push(1, 0, "p1") == [] and s.on_push(0, 0, "p0") == []
assert s.on_clock(1, 0) == [] and s.on_clock(0, 0) == ["p0", "p1"]
"""


@pytest.mark.parametrize("module", CONSISTENCY_MODULES)
def test_consistency_imports_without_mpi4py(module):
    assert_works_without_mpi4py(CONSISTENCY_BODY, module)


CKPT_MODULES = ["mpips.ckpt", "mpips.errors", "mpips.ckpt.layout", "mpips.ckpt.durable",
                "mpips.ckpt.manifest", "mpips.ckpt.shardfile", "mpips.ckpt.chunkio",
                "mpips.kernels.fletcher", "mpips.ckpt.writer",
                "mpips.ckpt.verify", "mpips.ckpt.catalog", "mpips.ckpt.reader", "mpips.cli.ckpt",
                "mpips.cli.main"]

CKPT_BODY = """
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
    assert_works_without_mpi4py(CKPT_BODY, *modules)


def test_ckpt_cli_runs_without_mpi4py(tmp_path):
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "from mpips.cli.main import main\n"
            f"sys.exit(main(['ckpt', 'ls', {str(tmp_path)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0 and "no step-* directories" in proc.stdout, proc.stderr
