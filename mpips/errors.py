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
