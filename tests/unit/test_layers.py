"""Imports point down the layers, folder by folder (README, Layout): a module imports from its
own folder or from a lower layer, never from beside or above it."""
import ast
from pathlib import Path

import pytest

from tests.data import REPO_ROOT

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
    """``mpips.server.push`` -> ``server``; ``mpips.errors`` -> ``errors``; ``mpips`` -> ``__init__``."""
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
