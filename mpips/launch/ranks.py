"""The ranks of one launch as the launcher on their node sees them (used by ``mpips launch``;
no MPI import): which processes they are, how far their start-up got (the markers
mpips.launch.startup writes), and whether one died before the job itself could notice.

Why the launcher watches the start-up: until every rank has finished ``mpips.init``, the job
cannot notice a dead rank. Under ULFM (``--with-ft ulfm``) Open MPI keeps a launch going when a
process dies, but MPI_Init's exchange is not fault tolerant: a rank killed before MPI_Init
completes leaves the others in MPI_Init for good, and a launcher that only waits for mpiexec
waits with them. The launcher is the one process that sees every rank of its node from the
moment it is started, so :class:`StartupWatch` notices a rank gone before its ``ready`` marker
(and without an ``exit-*`` marker: it did not leave on its own), gives the launch a few
seconds to end by itself (ULFM survivors leave with 76, mpiexec tears a non-ULFM launch down),
and then tells the launcher to end it as a lost rank (exit 76, so a relaunch resumes).

It only judges launches that speak the protocol (a rank wrote a marker: ``mpips run``), so a
plain MPI program whose ranks end at different times is never taken for a dead one; ranks on
other nodes are out of its sight (there only the job's own detection after ``mpips.init``
applies).
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import EXIT_RANK_LOST
from .startup import EXIT, HELD, INIT_FAILED, READY, SURVIVED

#: Seconds a launch gets to end by itself after a rank died during its start-up.
SETTLE = 3.0
#: Seconds after the first rank was seen by which a one-node launch has started all its ranks
#: (mpiexec forks them at once; one never seen was killed before the first look).
ALL_STARTED = 5.0
#: Seconds a launch gets to end by itself after a rank left on its own during start-up.
EXIT_GRACE = 10.0
#: A rank this old without a ``held`` marker does not hold stop signals (not ``mpips run``).
HOLD_WITHIN = 1.0


@dataclass(frozen=True)
class Verdict:
    """The launch must be ended: with exit code ``code``, for the reason ``message``."""
    code: int
    message: str


def children(pid: int) -> list[int]:
    """Child pids of ``pid`` (Linux /proc/PID/task/*/children: a few reads, not a scan of
    every process); [] if it is gone."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return found


def _command_line(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def rank_pids(root: int, argv: Sequence[str], depth: int = 4) -> list[int]:
    """Pids under ``root`` (mpiexec) that run ``<python> argv...``: the ranks. A rank's own
    children (same command line) are not ranks; zombies have no command line and do not
    count."""
    argv, found, level = list(argv), [], [root]
    for _ in range(depth):
        below = []
        for pid in level:
            for child in children(pid):
                if _command_line(child)[1:] == argv:
                    found.append(child)
                else:
                    below.append(child)
        level = below
    return found


def markers(directory: str) -> dict[tuple[str, int], set[str]]:
    """(host, pid) -> stages of every rank with markers ``<host>-<pid>.<stage>`` in
    ``directory`` (mpips.launch.startup); {} when it cannot be read."""
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    stages: dict[tuple[str, int], set[str]] = {}
    for name in names:
        rank, dot, stage = name.partition(".")
        host, dash, pid = rank.rpartition("-")
        if dot and dash and pid.isdigit():
            stages.setdefault((host, int(pid)), set()).add(stage)
    return stages


def exit_code(stages: set[str]) -> int | None:
    """The code of a rank's ``exit-<code>`` marker among its ``stages``; None without one."""
    for stage in stages:
        if stage.startswith(EXIT + "-"):
            return int(stage.split("-", 1)[1])
    return None


class StartupWatch:
    """Follows the local ranks of one launch through their start-up; :meth:`poll` returns a
    :class:`Verdict` when the launch cannot end by itself, else None.

    ``root`` is mpiexec's pid, ``argv`` the interpreter arguments every rank runs,
    ``directory`` the MPIPS_STARTUP_DIR given to them, ``expected`` the number of ranks on
    this node when known (a launch outside any allocation: all of them), else None."""

    def __init__(self, root: int, argv: Sequence[str], directory: str,
                 expected: int | None = None, *, clock=time.monotonic):
        self.root, self.argv, self.directory = root, list(argv), directory
        self.expected, self.clock = expected, clock
        self.host = socket.gethostname().split(".")[0]
        self.seen: dict[int, float] = {}  # pid -> when first seen
        self.gone: dict[int, float] = {}  # pid -> when first seen gone
        self.alive: list[int] = []
        self.stages: dict[int, set[str]] = {}
        self.over = False  # every rank finished its start-up: nothing left to watch

    def poll(self) -> Verdict | None:
        """Look at the ranks and markers once (cheap: a few /proc reads and one listdir)."""
        if self.over:
            return None
        now = self.clock()
        self.alive = rank_pids(self.root, self.argv)
        for pid in self.alive:
            self.seen.setdefault(pid, now)
        self.stages = self._markers()
        known = set(self.seen) | set(self.stages)  # a rank may come and go between two looks
        for pid in known:
            if pid not in self.alive:
                self.gone.setdefault(pid, now)
        if not self.stages:  # not (yet) an mpips run launch: nothing to judge
            return None
        if self.expected and len(known) >= self.expected and all(
                READY in self.stages.get(pid, ()) for pid in known):
            self.over = True
            return None
        return self._judge(now, known)

    def _judge(self, now: float, known: set[int]) -> Verdict | None:
        for pid, since in sorted(self.gone.items(), key=lambda item: item[1]):
            stages = self.stages.get(pid, set())
            if READY in stages:
                continue  # past its start-up: the job's own detection takes over
            code = exit_code(stages)
            if code is None and now - since >= SETTLE:
                where = "before mpips run began" if HELD not in stages else \
                    "during its start-up (imports, MPI_Init or mpips.init)"
                return Verdict(EXIT_RANK_LOST, f"rank process {pid} died {where}, and the "
                                               f"launch did not end by itself; ending it as a "
                                               f"lost rank")
            if code is not None and now - since >= EXIT_GRACE:
                return Verdict(code, f"rank process {pid} left with exit code {code} before "
                                     f"mpips.init finished and the other ranks still wait for "
                                     f"it; ending the launch")
        if self.expected and len(known) < self.expected and self.seen and \
                now - min(self.seen.values()) >= ALL_STARTED:
            return Verdict(EXIT_RANK_LOST, f"only {len(known)} of the {self.expected} ranks ever "
                                           f"started (one was killed at once); ending the launch "
                                           f"as a lost rank")
        return None

    def _markers(self) -> dict[int, set[str]]:
        """pid -> stages reported by this node's ranks."""
        return {pid: stages for (host, pid), stages in markers(self.directory).items()
                if host == self.host}

    def killed_in_startup(self) -> Verdict | None:
        """After the launch ended by itself with an error: a Verdict EXIT_RANK_LOST if a rank
        vanished during its start-up (no ``ready``, no ``exit-*`` marker: killed) while
        another one's MPI_Init failed (``init-failed``: Open MPI fails the MPI_Init of every
        rank waiting on a peer killed in it), else None. Without a failed MPI_Init next to it,
        a rank without markers may have been taken down by mpiexec after another rank's own
        error, which is that error's launch, not a lost rank's."""
        self.stages = self._markers()
        failed = [pid for pid, stages in self.stages.items() if INIT_FAILED in stages]
        silent = sorted(pid for pid in set(self.seen) | set(self.stages)
                        if not self.stages.get(pid, set()) & {READY, INIT_FAILED}
                        and exit_code(self.stages.get(pid, set())) is None)
        if not failed or not silent:
            return None
        return Verdict(EXIT_RANK_LOST, f"rank process {silent[0]} died during its start-up and "
                                       f"the MPI_Init of {len(failed)} other rank(s) failed for "
                                       f"it; ending the launch as a lost rank")

    def holding(self) -> bool:
        """Whether a stop signal may be passed to the ranks now without killing one: every
        living rank holds the stop signals (or, not being ``mpips run``, never will)."""
        now = self.clock()
        if not self.seen:  # mpiexec has not started them: it may not handle SIGUSR1 yet
            return False
        for pid in self.alive:
            if HELD in self.stages.get(pid, ()):
                continue
            if self.stages or now - self.seen.get(pid, now) < HOLD_WITHIN:
                return False
        return True


def unfinished(directory: str) -> Verdict | None:
    """After mpiexec exited 0: a Verdict EXIT_RANK_LOST when a rank of an ``mpips run``
    launch finished its start-up (``ready``) but never left normally (no ``exit-*`` marker)
    and no rank carried on past a dead one (``survived``), else None.

    Open MPI's runtime (PRRTE 3.0, in the 5.0 wheels) ends the whole job when it loses the
    daemon of another node ("PRTE has lost communication with a remote daemon", also under
    ULFM), kills the ranks it has left, and mpirun then exits 0: without this look at the
    markers a lost node would read as a finished job. Every host's markers count that this
    launcher can see (all of them when MPIPS_STARTUP_DIR is on a shared file system; else this
    node's, which the teardown killed too)."""
    stages = markers(directory)
    if any(SURVIVED in found for found in stages.values()):
        return None
    lost = sorted(f"{host}-{pid}" for (host, pid), found in stages.items() if READY in found
                  and exit_code(found) is None)
    if not lost:
        return None
    shown = ", ".join(lost[:4]) + (f" and {len(lost) - 4} more" if len(lost) > 4 else "")
    return Verdict(EXIT_RANK_LOST, f"mpiexec exited 0, but {len(lost)} rank(s) never finished "
                                   f"({shown}, host-pid): the launch was torn down, e.g. after "
                                   f"losing a node's daemon; ending it as a lost rank")
