"""Run a command in its own session and kill its whole process tree when it must stop: on a
timeout, Ctrl-C or SIGTERM (used by ``mpips launch`` and the tests' launches). No MPI import.

``python -m mpips.launch.processes --block-term -- COMMAND...`` runs COMMAND with SIGTERM blocked
(slurm/train.sbatch starts mpirun so: see :func:`exec_with_term_blocked`).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from ..errors import LaunchTimeout
from .startup import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, prctl


class Terminated(BaseException):
    """A second SIGTERM arrived while a launch was stopping (see :class:`StopRequests`)."""



def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process visible in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc; just ``[pid]`` elsewhere).

    Needed because launchers move ranks out of mpiexec's process group (Open MPI: one group
    per rank) or even its session (MPICH's Hydra calls setsid), so killpg misses them.
    """
    children, tree, todo = _children_map(), [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def terminate_tree(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM ``proc`` (mpiexec cleans up its ranks), then SIGKILL whatever of its process
    tree is left after ``grace`` seconds. Safe to call on a finished process."""
    tree = process_tree(proc.pid)
    _signal_all([proc.pid], signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    alive = process_tree(proc.pid) if proc.poll() is None else []
    _signal_all(tree + alive, signal.SIGKILL)
    proc.wait()


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in dict.fromkeys(pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _text(data) -> str | None:
    return data.decode(errors="replace") if isinstance(data, bytes) else data


Tick = Callable[[subprocess.Popen], "int | None"]


def run_command(command: Sequence[str], *, env: Mapping[str, str] | None = None,
                timeout: float | None = None, capture: bool = False, cwd: str | None = None,
                tick: Tick | None = None, tick_every: float = 0.05,
                own_tree: bool = False) -> subprocess.CompletedProcess:
    """Run a launch in its own session; on timeout or Ctrl-C kill its whole process tree.

    stdin is /dev/null (a launch in its own session cannot read the terminal anyway). With
    ``capture`` stdout/stderr are collected as text. Raises LaunchTimeout (carrying the
    output so far) when ``timeout`` seconds pass; re-raises KeyboardInterrupt after cleanup.

    ``tick(proc)`` is called about every ``tick_every`` seconds while the launch runs; when
    it returns a number, the launch's tree is killed and that number is the return code.
    ``own_tree`` (``mpips launch``): this process adopts the launch's orphans (a rank whose
    mpiexec exited before it: PR_SET_CHILD_SUBREAPER) and kills whatever of the launch is
    left once it ends, and mpiexec gets SIGTERM if this process dies.
    """
    pipe = subprocess.PIPE if capture else None
    if own_tree:
        _adopt_orphans()
    proc = subprocess.Popen(list(command), env=dict(env) if env is not None else None, cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, text=True,
                            start_new_session=True,
                            preexec_fn=_term_with_parent if own_tree else None)
    deadline = None if timeout is None else time.monotonic() + timeout
    returncode = None
    try:
        while True:
            wait = tick_every if tick is not None else None
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                wait = left if wait is None else min(wait, left)
            try:
                out, err = proc.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    terminate_tree(proc)
                    out, err = _drain(proc)
                    raise LaunchTimeout(f"launch timed out after {timeout} s and was killed: "
                                        f"{' '.join(command)}", out, err) from None
                returncode = tick(proc) if tick is not None else None
                if returncode is not None:
                    terminate_tree(proc)
                    out, err = _drain(proc)
                    break
    except BaseException:
        terminate_tree(proc)
        raise
    finally:
        if own_tree:
            _kill_leftovers()
    return subprocess.CompletedProcess(list(command), proc.returncode if returncode is None
                                       else returncode, out, err)


def _adopt_orphans() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def _term_with_parent() -> None:
    """In the child before exec: SIGTERM it when this (the parent) process dies."""
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _kill_leftovers() -> None:
    """SIGKILL every process still below this one (the launch's orphans it adopted: ranks
    whose mpiexec exited first) and reap them; says how many were still running."""
    from .ranks import children

    left = [pid for child in children(os.getpid()) for pid in process_tree(child)]
    running = [pid for pid in left if not _is_zombie(pid)]
    _signal_all(left, signal.SIGKILL)
    for pid in children(os.getpid()):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    if running:
        print(f"mpips launch: {len(running)} process(es) of the launch outlived mpiexec; "
              f"killed", file=sys.stderr, flush=True)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True  # gone already
    return stat[stat.rindex(b")") + 2:].split()[0] in (b"Z", b"X")


def _drain(proc: subprocess.Popen) -> tuple[str | None, str | None]:
    """Whatever output a killed process left in its pipes (gives up after 10 s)."""
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired as exc:  # an escaped grandchild still holds a pipe
        return _text(exc.stdout), _text(exc.stderr)


class StopRequests:
    """While inside (``with StopRequests() as stop``): the first SIGTERM, SIGINT or SIGUSR1
    is a request to stop (``stop.signal`` names it) rather than the end of this process; a
    second SIGTERM or SIGINT raises Terminated / KeyboardInterrupt (stop now). No-op outside
    the main thread."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __init__(self):
        self.signal: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum).name
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        elif signum == signal.SIGTERM:
            raise Terminated(signum)

    def __enter__(self) -> "StopRequests":
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            return self
        # deliver what arrived while blocked (mpips.cli.main blocks them first thing for launch)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self.SIGNALS)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def exec_with_term_blocked(argv: Sequence[str]):
    """Replace this process by ``argv`` with SIGTERM blocked (the mask survives exec).

    For mpirun in a batch job: SLURM sends SIGTERM to every process of a job it cancels or
    times out, and Open MPI's mpirun answers it by killing the ranks within half a second,
    before they can checkpoint. Blocked, SIGTERM stays pending in mpirun (which unblocks
    signals in the ranks it starts, so they get their own SIGTERM and save); mpirun ends
    when the ranks do, or by SLURM's SIGKILL after KillWait."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    os.execvp(argv[0], list(argv))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:2] != ["--block-term", "--"] or len(args) < 3:
        sys.exit("usage: python -m mpips.launch.processes --block-term -- COMMAND [ARGS...]")
    exec_with_term_blocked(args[2:])
