"""Chains of incremental checkpoints: following them, and applying their changes (numpy; no
MPI, no h5py).

An incremental checkpoint ``step-N`` holds the rows changed since its parent ``step-P`` beside
it (under the same root) and the keys removed since then; the parent is full or incremental
itself, down to the chain's full checkpoint, its *base*. The model at step N is the base with
every delta applied in order, oldest first: its removed keys dropped, then its changed rows
set. A delta names its parent by step *and* by the sha256 of the parent's MANIFEST.json, so a
parent that was set aside and saved again under the same step breaks the chain (BrokenChainError)
rather than lending it rows of another model.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import BrokenChainError, CheckpointError
from .layout import MANIFEST, step_dir_name
from .manifest import Manifest, load_manifest


def manifest_digest(directory) -> str:
    """The sha256 of the checkpoint's MANIFEST.json (hex): what a delta on it records."""
    return hashlib.sha256((Path(directory) / MANIFEST).read_bytes()).hexdigest()


def parent_path(manifest: Manifest) -> Path | None:
    """Where an incremental checkpoint's parent lives (None for a full checkpoint)."""
    if manifest.parent is None:
        return None
    return manifest.directory.parent / step_dir_name(int(manifest.parent["step"]))


def parent_entry(parent: Manifest) -> dict:
    """The ``parent`` manifest entry of a delta written on ``parent``."""
    return {"step": parent.step, "digest": manifest_digest(parent.directory),
            "base": parent.base, "depth": parent.depth + 1}


def chain_of(manifest: Manifest) -> list[Manifest]:
    """The checkpoints whose rows make the model at ``manifest``: the base first, ``manifest``
    last ([manifest] for a full checkpoint). Reads only manifests. BrokenChainError naming
    ``manifest``'s directory when a parent is missing, unreadable, another checkpoint than the
    one the delta was written on, or defines the tables otherwise."""
    chain = [manifest]
    while chain[-1].parent is not None:
        child = chain[-1]
        path = parent_path(child)
        step = int(child.parent["step"])
        try:
            parent = load_manifest(path)
            digest = manifest_digest(path)
        except (CheckpointError, OSError) as exc:
            raise _broken(manifest, f"its parent step {step} cannot be read ({exc})") from None
        if digest != child.parent["digest"]:
            raise _broken(manifest, f"{path} is not the checkpoint step {child.step} was "
                                    f"written on (its manifest changed: saved again?)")
        if parent.tables != child.tables:
            raise _broken(manifest, f"{path} defines the tables otherwise than step "
                                    f"{child.step}")
        if (parent.depth, parent.base) != (child.depth - 1, child.base):
            raise _broken(manifest, f"{path} is at depth {parent.depth} of a chain from step "
                                    f"{parent.base}; step {child.step} says depth "
                                    f"{child.depth - 1} from step {child.base}")
        chain.append(parent)
    return chain[::-1]


def _broken(manifest: Manifest, problem: str) -> BrokenChainError:
    return BrokenChainError(manifest.directory, f"incremental checkpoint (chain from step "
                                                f"{manifest.base}): {problem}")


def apply_sparse(keys: np.ndarray, values: np.ndarray, state: dict, changed_keys: np.ndarray,
                 changed_values: np.ndarray, changed_state: dict, removed: np.ndarray):
    """Rows (``keys`` sorted unique, ``values``, ``state`` name → array) after a delta:
    ``removed`` keys dropped, then the changed rows set (inserted or replaced). Returns
    (keys, values, state), keys sorted."""
    drop = np.isin(keys, removed, assume_unique=True) if removed.size else None
    if changed_keys.size:
        replaced = np.isin(keys, changed_keys, assume_unique=True)
        drop = replaced if drop is None else drop | replaced
    if drop is not None and drop.any():
        keep = ~drop
        keys, values = keys[keep], values[keep]
        state = {name: array[keep] for name, array in state.items()}
    if not changed_keys.size:
        return keys, values, state
    keys = np.concatenate([keys, changed_keys])
    order = np.argsort(keys, kind="stable")
    values = np.concatenate([values, changed_values])[order]
    state = {name: np.concatenate([array, changed_state[name]])[order]
             for name, array in state.items()}
    return keys[order], values, state


def apply_dense(begin: int, values: np.ndarray, state: dict, changed_keys: np.ndarray,
                changed_values: np.ndarray, changed_state: dict) -> None:
    """Set the changed rows of a dense key range starting at key ``begin`` in place."""
    rows = (changed_keys - np.uint64(begin)).astype(np.int64)
    values[rows] = changed_values
    for name, array in state.items():
        array[rows] = changed_state[name]
