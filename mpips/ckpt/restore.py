"""Restoring a running job's tables from the newest HDF5 checkpoint that verifies (MPI
layer; saving them: mpips.ckpt.checkpoint).

``restore`` (collective over the launch, before ``PS.run``) loads it into the tables on any
number of servers, re-partitioning key ranges; an incremental checkpoint reads as its chain
(mpips.ckpt.chain). Afterwards the slices track their changes against it, so that the next
save may be a delta of it. Control messages are small JSON texts: no pickling.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .. import ckpt
from ..mpi.agree import first_error, on_root
from .catalog import step_dirs
from .checkpoint import tracked_since
from .verify import check_sha256
from ..errors import MpipsError, TableError


def restore(ps, root, *, log=None) -> dict | None:
    """Load the newest checkpoint under ``root`` that verifies into ``ps``'s tables; returns
    its job dict plus "checkpoint_step", "checkpoint_path", "checkpoint_run" (its run id,
    or None) and "checkpoint_depth" (how many deltas its chain holds: 0 for a full one) on
    every rank, or None when there is none. Collective over the launch, before
    ``PS.run``.

    No row is served before every shard read was verified: the shard is the one the manifest
    committed (its shard id; the sha256 for checkpoints written before shard ids), and every
    chunk read matches its fletcher32 checksum. A checkpoint that fails anywhere, on any
    server, is skipped with a warning (``log``, on rank 0) that names it, and set aside as
    ``step-N.skipped-*`` (mpips.ckpt.set_aside: kept for a look, and the job may save step N
    again); then the next older one is tried. When none is left, the tables are reset to
    their initial rows and None is returned. Raises TableError on every rank when the job's
    tables differ from the checkpoint's, CheckpointError when ``root`` cannot be read."""
    comm = ps.topology.data
    warn = (lambda message: log(f"warning: {message}")) if log else _print_warning
    below, tried = None, False
    while True:
        found, error = on_root(comm, lambda: _newest_below(root, below, warn))
        if error is not None:
            raise ckpt.CheckpointError(root, f"restore failed: {error}")
        if found is None:
            if tried:  # a skipped checkpoint may have filled some rows
                for table in ps._all_slices():
                    _reset_slice(table)
            return None
        tried, below = True, found["step"]
        problem = first_error(comm, _load_slices(ps, found["path"]) if ps.is_server else None)
        if problem is None:
            for table in ps._all_slices():  # the next save may be a delta of this one
                table.track_changes(found["since"])
            return {**found["job"], "checkpoint_step": found["step"],
                    "checkpoint_path": found["path"], "checkpoint_run": found["run"],
                    "checkpoint_depth": found["depth"]}
        kind, text = json.loads(problem)
        if kind == "tables":
            raise TableError(text)
        if kind != "corrupt":
            raise ckpt.CheckpointError(found["path"], f"restore failed: {text}")
        on_root(comm, lambda: _skip(found["path"], text, warn, set_aside=True))


def _print_warning(message: str) -> None:
    print(f"[mpips rank 0] warning: {message}", file=sys.stderr, flush=True)


def _newest_below(root, below: int | None, warn) -> dict | None:
    """Rank 0: the newest checkpoint under ``root`` older than step ``below`` that passes
    the quick checks (manifest, shard attributes and ids, sizes), skipping newer ones with a
    warning (those with a manifest are set aside)."""
    for step, path in step_dirs(root):
        if below is not None and step >= below:
            continue
        info = ckpt.inspect_checkpoint(path, "quick")
        if info.valid:
            return {"path": str(path), "step": info.step, "job": info.job, "run": info.run,
                    "depth": info.depth, "since": tracked_since(root, path)}
        _skip(path, info.reason, warn, set_aside=(path / ckpt.MANIFEST).exists()
              and not isinstance(info.error, ckpt.NewerFormatError))
    return None


def _skip(path, reason: str, warn, *, set_aside: bool) -> None:
    """Rank 0: warn that checkpoint ``path`` is skipped and why; ``set_aside`` it too (a
    committed checkpoint that failed: its step may be saved again)."""
    where = ""
    if set_aside:
        try:
            where = f"; set aside as {ckpt.set_aside(path).name}"
        except OSError as exc:
            where = f"; could not set it aside ({exc})"
    warn(f"skipping checkpoint {path}: {reason}{where}")


def _load_slices(ps, path: str) -> str | None:
    """Server: fill this server's slices from the checkpoint at ``path``; None, or the JSON
    of [kind, text] naming what failed: "tables" (the job's tables differ), "corrupt" (the
    checkpoint failed verification: try an older one) or "error" (it could not be read)."""
    where = f"rank {ps.rank}"
    try:
        manifest = ckpt.load_manifest(path)
        for table in ps._all_slices():
            _check_table(table, manifest)
        _check_unidentified_shards(ps._all_slices(), manifest)
        for table in ps._all_slices():
            _read_slice(table, path)
    except TableError as exc:
        return json.dumps(["tables", str(exc)])
    except ckpt.CheckpointError as exc:
        return json.dumps(["corrupt", f"{where}: {type(exc).__name__}: {exc}"])
    except (MpipsError, OSError) as exc:
        return json.dumps(["error", f"{where}: {type(exc).__name__}: {exc}"])
    return None


def _check_table(table, manifest) -> None:
    """TableError unless the checkpoint holds this slice's table, defined alike."""
    spec, path = table.spec, manifest.directory
    if spec.name not in manifest.tables:
        raise TableError(f"table {spec.name!r} is not in checkpoint {path} "
                         f"(it has {sorted(manifest.tables)})")
    meta, mine = manifest.tables[spec.name], ckpt.TableMeta.from_spec(spec)
    fields = ("kind", "size", "width", "rule", "rule_params", "state_names")
    differ = [f for f in fields if getattr(meta, f) != getattr(mine, f)]
    if differ:
        raise TableError(f"table {spec.name!r} differs from checkpoint {path} in "
                         f"{', '.join(differ)}: checkpoint {meta}, job {mine}")


def _check_unidentified_shards(slices, manifest) -> None:
    """A checkpoint whose manifest records no shard ids (written before them) cannot tell
    a shard of another save by its id: hash each shard these slices read (ChecksumError)."""
    if all(shard.shard_id for shard in manifest.shards):
        return
    files = {shard.file: shard for table in slices
             for shard in manifest.shards_for(table.spec.name, table.key_range)}
    for shard in files.values():
        check_sha256(manifest, shard)


def _read_slice(table, path: str) -> None:
    """Fill one server slice from the checkpoint at ``path`` (its own key range); every
    chunk read is checked against its fletcher32 checksum (ChecksumError)."""
    spec = table.spec
    if spec.kind == "dense":
        ckpt.read_table(path, spec.name, table.key_range, out_values=table.values,
                        out_state=table.state)
    else:
        rows = ckpt.read_table(path, spec.name, table.key_range, placement=spec.placement)
        table.load(rows.keys, rows.values, rows.state)
        if table.admission is not None:  # the counts of keys not admitted yet go on
            sketches = ckpt.read_admission(path, spec.name, table.key_range, spec.placement)
            try:
                table.admission.load(sketches)
            except ValueError as exc:
                raise ckpt.InconsistentCheckpointError(Path(path), f"table {spec.name!r}: "
                                                                   f"{exc}") from None


def _reset_slice(table) -> None:
    """Back to the rows of a new table: dense rows at ``init`` with zero optimizer state,
    a sparse slice empty."""
    width = table.spec.width
    if table.spec.kind == "dense":
        table.values.fill(table.spec.init)
        for array in table.state.values():
            array.fill(0.0)
    else:
        table.load(np.empty(0, np.uint64), np.empty((0, width), np.float32),
                   {name: np.empty((0, width), np.float32) for name in table.rule.state_names})
        if table.admission is not None:
            table.admission.load([])
