"""Durable HDF5 checkpoints, file layer (h5py, numpy, one numba kernel; no mpi4py).

A checkpoint of step N written by S servers is ``<root>/step-<N:012d>/`` holding one HDF5
shard per server, ``shard-<i:05d>-of-<S:05d>.h5``, and ``MANIFEST.json`` written last (tmp →
fsync → rename → fsync dir); only a directory with a valid manifest is a checkpoint. Any key
range can be read back from any number of shards, so a job restarts on S' != S servers.

Write from one process (tests, tools)::

    slices = split_table(TableMeta.from_spec(spec), S, values, keys=keys, state=state)
    save_checkpoint(root, step, [[s] for s in slices], job_meta={"loss": 0.3})

Write from an MPI job (the steps save_checkpoint runs; see mpips.ckpt.writer)::

    d = prepare_checkpoint_dir(root, step)             # one rank, then barrier
    info = write_shard(d, i, S, step, [SliceData.from_spec(spec, rng, values, state=...)])
    commit(d, step, gathered_infos, job_meta, run=run) # one rank, after a gather
    prune(root, keep_last=2, run=run)                  # only this run's older checkpoints

Restore on S' servers::

    info = newest_valid(root)                     # skips incomplete/corrupt ones, warning
    rng = RangePartition(meta.size, S_new).range_of(i)
    keys, values, state = read_table(info.path, "w", rng)

Incremental checkpoints (mpips.ckpt.chain): slices with ``removed`` set hold only the rows
changed since a parent checkpoint beside them, ``save_checkpoint(..., parent=P)`` /
``commit(..., parent=dir)`` record it, and every reader (read_table, verify, export_npz)
follows the chain down to its full checkpoint; ``read_changes`` gives the rows changed since
a step of the chain.

Every shard carries a random shard id that its manifest records, so a shard of another save
(same name, same size) fails even the quick checks; ``read_table`` verifies the fletcher32
checksum of every chunk it reads.
"""
from .catalog import (CheckpointInfo, committed, inspect_checkpoint, list_checkpoints,
                      new_run_id, newest_valid, prune, remove_checkpoint, set_aside)
from .chain import chain_of, manifest_digest
from ..errors import (BrokenChainError, CheckpointError, CheckpointExistsError, CheckpointWarning, ChecksumError,
                     ForeignFileError, IncompleteCheckpointError, InconsistentCheckpointError,
                     InvalidSliceError, ManifestError, MissingShardError, NewerFormatError,
                     NotACheckpointError, NotHDF5Error, TruncatedShardError, UnknownTableError)
from .layout import (FORMAT_NAME, FORMAT_VERSION, FULL_VERSION, MANIFEST, ShardInfo, ShardRange, SliceData,
                     TableMeta, shard_name, step_dir_name)
from .manifest import Manifest, load_manifest
from .reader import (TableRows, export_npz, read_admission, read_changes, read_clocks,
                     read_table)
from .verify import LEVELS, VerifyReport, verify
from .writer import (commit, prepare_checkpoint_dir, prepare_root, save_checkpoint, split_table,
                     write_shard)

__all__ = [
    "CheckpointInfo", "committed", "inspect_checkpoint", "list_checkpoints", "new_run_id",
    "newest_valid", "prune", "remove_checkpoint", "set_aside", "chain_of", "manifest_digest",
    "BrokenChainError", "CheckpointError", "CheckpointExistsError", "CheckpointWarning", "ChecksumError",
    "ForeignFileError", "IncompleteCheckpointError", "InconsistentCheckpointError",
    "InvalidSliceError", "ManifestError", "MissingShardError", "NewerFormatError",
    "NotACheckpointError", "NotHDF5Error", "TruncatedShardError", "UnknownTableError",
    "FORMAT_NAME", "FORMAT_VERSION", "FULL_VERSION", "MANIFEST", "ShardInfo", "ShardRange", "SliceData",
    "TableMeta", "shard_name", "step_dir_name", "Manifest", "load_manifest",
    "TableRows", "export_npz", "read_admission", "read_changes", "read_clocks", "read_table",
    "LEVELS", "VerifyReport", "verify",
    "commit", "prepare_checkpoint_dir", "prepare_root", "save_checkpoint", "split_table",
    "write_shard",
]
