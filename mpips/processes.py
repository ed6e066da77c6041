"""Run a command in its own session and kill its whole process tree when it must stop: on a
timeout, Ctrl-C or SIGTERM (used by ``mpips launch`` and the tests' launches). No MPI import.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from .errors import LauncherError


class Terminated(BaseException):
    """SIGTERM arrived while a launch was running (see :func:`sigterm_as_interrupt`)."""


class LaunchTimeout(LauncherError):
    """A launch ran past its timeout; its whole process tree has been killed.

    ``stdout``/``stderr`` hold what the launch printed before (text, or None if not captured).
    """

    def __init__(self, message: str, stdout: str | None = None, stderr: str | None = None):
        super().__init__(message)
        self.stdout, self.stderr = stdout, stderr


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


def run_command(command: Sequence[str], *, env: Mapping[str, str] | None = None,
                timeout: float | None = None, capture: bool = False,
                cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run a launch in its own session; on timeout or Ctrl-C kill its whole process tree.

    stdin is /dev/null (a launch in its own session cannot read the terminal anyway). With
    ``capture`` stdout/stderr are collected as text. Raises LaunchTimeout (carrying the
    output so far) when ``timeout`` seconds pass; re-raises KeyboardInterrupt after cleanup.
    """
    pipe = subprocess.PIPE if capture else None
    proc = subprocess.Popen(list(command), env=dict(env) if env is not None else None, cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        terminate_tree(proc)
        out, err = _drain(proc)
        raise LaunchTimeout(f"launch timed out after {timeout} s and was killed: "
                            f"{' '.join(command)}", out, err) from None
    except BaseException:
        terminate_tree(proc)
        raise
    return subprocess.CompletedProcess(list(command), proc.returncode, out, err)


def _drain(proc: subprocess.Popen) -> tuple[str | None, str | None]:
    """Whatever output a killed process left in its pipes (gives up after 10 s)."""
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired as exc:  # an escaped grandchild still holds a pipe
        return _text(exc.stdout), _text(exc.stderr)


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Raise Terminated on SIGTERM (scancel, timeout(1), kill) while inside, so a launch
    being stopped takes its ranks down with it. No-op outside the main thread."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
