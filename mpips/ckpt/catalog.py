"""The checkpoints under a root directory: list, pick the newest valid one, prune old ones.

Only ``<root>/step-<N:012d>/`` directories are considered; anything else (temporary
``.pruned-*`` directories of an interrupted prune, ``step-N.skipped-*`` checkpoints a restore
set aside, user files) is ignored.

A *run* is one chain of checkpoints: a job started afresh takes a new run id (``new_run_id``)
and a resumed one carries on the id of the checkpoint it resumed from; every manifest
records it. ``prune`` deletes only checkpoints of the run it is given, and never one that an
incremental checkpoint it keeps builds on (mpips.ckpt.chain).
"""
from __future__ import annotations

import os
import secrets
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .durable import fsync_path
from ..errors import CheckpointError, CheckpointWarning
from .layout import MANIFEST, STEP_DIR_RE
from .verify import verify


@dataclass(frozen=True)
class CheckpointInfo:
    """One step directory: valid or not (``reason``/``error`` say why), and what the manifest
    says when it could be read (servers, tables name → TableMeta, total shard bytes, job,
    run id)."""

    path: Path
    step: int
    valid: bool
    reason: str | None = None
    error: CheckpointError | None = None
    num_servers: int | None = None
    tables: dict = field(default_factory=dict)
    nbytes: int = 0
    created: float | None = None
    job: dict = field(default_factory=dict)
    run: str | None = None
    parent: int | None = None  # an incremental checkpoint's parent step
    base: int | None = None  # the step of the full checkpoint of its chain (its own if full)
    depth: int = 0  # how many incremental checkpoints its chain holds (0: full)
    chain: tuple = ()  # the steps of its chain, the full checkpoint first, when it could be read

    @property
    def kind(self) -> str:
        """"full", or "delta of step P" for an incremental checkpoint."""
        return "full" if self.parent is None else f"delta of step {self.parent}"


def step_dirs(root) -> list[tuple[int, Path]]:
    """(step, path) of every ``step-N`` directory under ``root``, newest first ([] if none)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = STEP_DIR_RE.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def inspect_checkpoint(path, level: str = "quick", memo: dict | None = None) -> CheckpointInfo:
    """CheckpointInfo of one directory after ``verify(path, level, memo)``."""
    path = Path(path)
    match = STEP_DIR_RE.match(path.name)
    report = verify(path, level, memo)
    manifest = report.manifest
    step = manifest.step if manifest else int(match.group(1)) if match else -1
    error = report.errors[0] if report.errors else None
    reason = None
    if error is not None:
        more = len(report.errors) - 1
        reason = f"{type(error).__name__}: {error}" + (f" (+{more} more)" if more else "")
    if manifest is None:
        nbytes = sum(p.stat().st_size for p in path.iterdir() if p.is_file()) if path.is_dir() else 0
        return CheckpointInfo(path, step, False, reason, error, nbytes=nbytes)
    return CheckpointInfo(path, step, error is None, reason, error, manifest.num_servers,
                          dict(manifest.tables), manifest.total_bytes, manifest.created,
                          dict(manifest.job), manifest.run,
                          manifest.parent["step"] if manifest.parent else None, manifest.base,
                          manifest.depth, tuple(m.step for m in report.chain))


def list_checkpoints(root, level: str = "quick") -> list[CheckpointInfo]:
    """Every step directory under ``root``: the valid ones newest first, then the invalid or
    incomplete ones (newest first) with the reason. ``level`` as in verify (quick by default:
    metadata only)."""
    memo: dict = {}  # each checkpoint of a chain checked once
    infos = [inspect_checkpoint(path, level, memo) for _, path in step_dirs(root)]
    return [i for i in infos if i.valid] + [i for i in infos if not i.valid]


def _warn(message: str) -> None:
    warnings.warn(message, CheckpointWarning, stacklevel=3)


def newest_valid(root, warn=None, level: str = "sha256") -> CheckpointInfo | None:
    """The newest checkpoint under ``root`` that passes ``verify(level)`` (sha256 by
    default), or None. Each newer incomplete/corrupt one is skipped with
    ``warn(message)`` naming it and the reason (default: a CheckpointWarning).

    ``level="quick"`` skips hashing whole checkpoints and relies on the fletcher32 checks
    that ``read_table`` does on every chunk it restores (errors then surface at restore)."""
    warn, memo = warn or _warn, {}
    for _, path in step_dirs(root):
        info = inspect_checkpoint(path, level, memo)
        if info.valid:
            return info
        warn(f"skipping checkpoint {path}: {info.reason}")
    return None


def prune(root, keep_last: int = 1, level: str = "sha256", run: str | None = None
          ) -> list[Path]:
    """Delete the valid checkpoints of run ``run`` older than its ``keep_last`` newest valid
    ones (those are verified at ``level`` first), except those that a checkpoint left in
    place builds on (an incremental checkpoint's chain). Checkpoints of other runs (a run id
    other than ``run``; with ``run=None``, any run id) and incomplete or invalid directories
    are never touched. Each removal is atomic (``remove_checkpoint``), and the ``.pruned-*``
    leftovers of a prune that was killed mid-delete go too (they are no checkpoint any
    more; otherwise each would keep a whole checkpoint's bytes forever). Returns the
    checkpoint paths removed."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    kept, removed, candidates, needed, memo = 0, [], [], set(), {}
    for step, path in step_dirs(root):
        info = inspect_checkpoint(path, "quick", memo)
        if not info.valid:
            continue
        if info.run == run and kept >= keep_last:
            candidates.append((step, path))
            continue
        if info.run == run and (level == "quick"
                                or inspect_checkpoint(path, level, memo).valid):
            kept += 1  # kept only if it passes ``level`` too (and spared if it does not)
        needed.update(info.chain[:-1])  # what every checkpoint that stays builds on stays
    for step, path in candidates:
        if step not in needed:
            remove_checkpoint(path)
            removed.append(path)
    for tomb in Path(root).glob(".pruned-step-*"):
        if tomb.is_dir() and not tomb.is_symlink():
            shutil.rmtree(tomb, ignore_errors=True)
    return removed


def remove_checkpoint(path) -> None:
    """Delete one step directory atomically: rename it to a hidden ``.pruned-*`` name, fsync
    the root, then delete that (a crash leaves no half-deleted checkpoint, only a
    ``.pruned-*`` directory that the next prune removes)."""
    path = Path(path)
    tomb = path.with_name(f".pruned-{path.name}-{secrets.token_hex(4)}")
    os.rename(path, tomb)
    fsync_path(path.parent)
    shutil.rmtree(tomb)


def committed(root) -> list[Path]:
    """The step directories under ``root`` that hold a manifest (valid or not: checkpoints
    that some run committed), newest first."""
    return [path for _, path in step_dirs(root) if (path / MANIFEST).exists()]


def set_aside(path) -> Path:
    """Rename the checkpoint ``path`` (``step-N``) to ``step-N.skipped-<hex>`` beside it, so
    that it no longer counts as a checkpoint, keeps its bytes for a look, and a new save
    may take its step. Returns the new path."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.skipped-{secrets.token_hex(4)}")
    os.rename(path, aside)
    fsync_path(path.parent)
    return aside


def new_run_id() -> str:
    """A fresh run id: UTC start time and random hex, e.g. ``20240606T101500Z-1a2b3c4d``."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"
