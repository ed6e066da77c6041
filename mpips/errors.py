"""Exceptions raised by mpips. Pure module: no MPI import.

Every error names the offending thing (table, key index, file:line, rank layout) so that a
message printed by one rank of a large job is enough to find the problem.
"""


class MpipsError(Exception):
    """Base class of every error mpips raises on purpose."""


class LayoutError(MpipsError):
    """The ranks of this launch cannot host the requested server/worker layout."""


class KeyOrderError(MpipsError, ValueError):
    """Keys are not strictly increasing (unsorted or duplicated)."""


class KeyRangeError(MpipsError, ValueError):
    """A key lies outside the table's key range (or is negative / not an integer)."""


class ValueShapeError(MpipsError, ValueError):
    """Values do not match the keys or the table's row width."""


class NonFiniteError(MpipsError, ValueError):
    """Values contain NaN or infinity."""


class MessageError(MpipsError, ValueError):
    """Bytes received on the data path failed validation (header, lengths, key order or bounds)."""


class ReplicaStreamError(MpipsError):
    """A server's stream of replica batches from another server broke (a batch out of order
    or not fitting the copies it kept): a bug, not bad input; the job cannot trust its
    replicas any more, so the rank aborts the launch instead of serving on."""


class LibsvmFormatError(MpipsError, ValueError):
    """A LIBSVM file has a malformed line; the message starts with ``path:line:``."""


class RatingsFormatError(MpipsError, ValueError):
    """A ratings file has a malformed line; the message starts with ``path:line:``."""


class DataFileError(MpipsError, ValueError):
    """An mpips data file (HDF5 CSR, mpips.ml.csr_format) that cannot be read or trusted: not
    HDF5, not an mpips data file, a newer format, a missing or inconsistent dataset, bad
    entries, a checksum failure. The message is ``path: problem``."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class TableError(MpipsError, ValueError):
    """A table was defined inconsistently or used where it does not exist."""


class UsageError(MpipsError, ValueError):
    """A mistake in what the user asked for (an option, a data file, a checkpoint directory),
    raised alike on every rank (agreed before anything depends on it): ``mpips run`` prints
    it once, as one line, and exits with EXIT_USAGE, without a traceback or an abort."""


EXIT_USAGE = 2
"""Exit code of a launch refused for a user mistake (UsageError, LayoutError, bad options)."""


class LauncherError(MpipsError, RuntimeError):
    """mpiexec is missing, unusable, or was asked for something it cannot do."""


EXIT_RANK_LOST = 76
"""Exit code of a launch that lost a rank (killed, its node gone, also during start-up): the
job left cleanly and a relaunch on the remaining ranks can resume from the newest checkpoint
(``mpips launch --relaunch``)."""

EXIT_STOPPED = 75
"""Exit code of a launch stopped on request (SIGTERM, SIGUSR1, Ctrl-C to ``mpips launch``;
slurm/train.sbatch when not requeued): the job saved a checkpoint at a step boundary, or had
nothing to save yet; resume with ``--resume``. (75 is EX_TEMPFAIL: try again later.)"""


class RankLost(MpipsError):
    """A rank of the launch died (MPI reported a process failure) and this rank left the job:
    relaunch on the remaining ranks and resume from the newest checkpoint. ``lost`` lists
    the world ranks MPI reported failed (empty when it could not say)."""

    def __init__(self, message: str, lost: tuple[int, ...] = ()):
        super().__init__(message)
        self.lost = tuple(lost)


# ---------------------------------------------------------------------- checkpoints
# Checkpoint files: every message names the file (or directory) and the problem, so that one
# line printed by a restoring rank is enough to find the bad shard.

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


class BrokenChainError(CheckpointError):
    """An incremental checkpoint whose chain cannot be followed: a checkpoint it builds on
    (its parent, its parent's parent... down to the full one) is missing, invalid, or not the
    one it was written against."""


class CheckpointExistsError(CheckpointError):
    """Refused: the step directory already holds a checkpoint (never clobbered)."""


class UnknownTableError(CheckpointError):
    """The checkpoint has no table of that name."""


class InvalidSliceError(CheckpointError):
    """The arrays handed to the writer do not describe a valid table slice."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (incomplete or corrupt) while looking for a valid one."""


# ---------------------------------------------------------------------- elsewhere

class SweepError(MpipsError, ValueError):
    """A sweep file or record that cannot be read, or a task id it does not have."""


class KeyCacheMiss(MessageError):
    """The message names its keys by a signature the receiver's KeyCache does not hold.
    The sender should ``forget`` the signature and send the message again with full keys."""

    def __init__(self, signature: int, why: str):
        super().__init__(f"key list {signature:#018x} is not in the receiver's key cache ({why}); "
                         "resend it with full keys")
        self.signature = signature


class ClockError(MpipsError, ValueError):
    """A request breaks the clock protocol or could never be served."""


class SegmentLost(LayoutError):
    """Every server that held some segment died: its keys are gone from memory (the job can
    only resume from a checkpoint)."""


class LaunchTimeout(LauncherError):
    """A launch ran past its timeout; its whole process tree has been killed.

    ``stdout``/``stderr`` hold what the launch printed before (text, or None if not captured).
    """

    def __init__(self, message: str, stdout: str | None = None, stderr: str | None = None):
        super().__init__(message)
        self.stdout, self.stderr = stdout, stderr
