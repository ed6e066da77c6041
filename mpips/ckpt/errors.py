"""Exceptions of the checkpoint file layer. Pure module: no MPI import.

Every message names the file (or directory) and the problem, so that one line printed by a
restoring rank is enough to find the bad shard. All classes derive from CheckpointError,
itself an mpips.errors.MpipsError.
"""
from __future__ import annotations

from ..errors import MpipsError, UsageError


class CheckpointError(MpipsError):
    """A checkpoint cannot be written, read or trusted; ``path`` is the file or directory."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class NotACheckpointError(CheckpointError, UsageError):
    """The path is no checkpoint directory at all: missing, a file, a checkpoint root (it
    holds step-N directories: name one of them), or another directory."""


class IncompleteCheckpointError(CheckpointError):
    """The directory has no MANIFEST.json: a save crashed or is still running."""


class ManifestError(CheckpointError):
    """MANIFEST.json is unreadable, not JSON, or lacks/contradicts required fields."""


class NewerFormatError(CheckpointError):
    """Written by a newer mpips whose format this code cannot read."""


class MissingShardError(CheckpointError):
    """A shard named by the manifest does not exist."""


class TruncatedShardError(CheckpointError):
    """A shard is shorter than the manifest (or its own HDF5 superblock) says."""


class ChecksumError(CheckpointError):
    """Bytes changed after the write: sha256 of a shard or a fletcher32 chunk checksum differs."""


class NotHDF5Error(CheckpointError):
    """The file is not HDF5 at all (no HDF5 signature, or HDF5 cannot open it)."""


class ForeignFileError(CheckpointError):
    """An HDF5 file, but not an mpips checkpoint shard (no or another 'format' attribute)."""


class InconsistentCheckpointError(CheckpointError):
    """Manifest and shard disagree (step, server, table attributes, key ranges, shapes)."""


class CheckpointExistsError(CheckpointError):
    """Refused: the step directory already holds a checkpoint (never clobbered)."""


class UnknownTableError(CheckpointError):
    """The checkpoint has no table of that name."""


class InvalidSliceError(CheckpointError):
    """The arrays handed to the writer do not describe a valid table slice."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (incomplete or corrupt) while looking for a valid one."""
