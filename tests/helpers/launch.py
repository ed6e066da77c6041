"""Run a Python program on N MPI ranks from a test: ``run_mpi(3, ["prog.py", "--x", "1"])``.

The launch goes through mpips.launch.mpiexec (the same mpiexec, flags and environment as
``mpips launch``), runs in the repository root with its output captured, and never hangs a
test run: past ``timeout`` seconds its whole process tree is killed and the test fails with
everything the ranks printed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mpips.errors import LaunchTimeout
from mpips.launch.mpiexec import mpiexec_command
from mpips.launch.processes import run_command

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_mpi(nprocs: int, argv: Sequence[str], timeout: float = 180,
            env: Mapping[str, str] | None = None, ft: bool = False) -> subprocess.CompletedProcess:
    """Run ``python argv...`` on ``nprocs`` ranks; returns the CompletedProcess (text).

    ``argv`` paths are relative to the repository root. ``env`` adds to (and overrides) the
    launch environment, from which PYTHONUNBUFFERED is removed (ranks flush whole lines); the repository root is put first on PYTHONPATH so programs can import
    ``tests.*`` helpers. ``ft=True`` launches with fault tolerance (Open MPI ULFM).
    Raises AssertionError with the captured output if the launch runs past ``timeout``.
    """
    command, launch_env = mpiexec_command(nprocs, [str(a) for a in argv], ft=ft)
    # Unbuffered, print() writes its pieces separately and MPICH's Hydra interleaves ranks
    # mid-line; buffered, print(..., flush=True) is one write and lines stay whole.
    launch_env.pop("PYTHONUNBUFFERED", None)
    launch_env.update(env or {})
    launch_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), launch_env.get("PYTHONPATH", "")) if p)
    try:
        return run_command(command, env=launch_env, timeout=timeout, capture=True,
                           cwd=str(REPO_ROOT))
    except LaunchTimeout as exc:
        raise AssertionError(f"MPI launch hung: killed after {timeout} s\n"
                             f"command: {' '.join(command)}\n"
                             f"--- stdout ---\n{exc.stdout or ''}\n"
                             f"--- stderr ---\n{exc.stderr or ''}") from None


def launch(nprocs: int, argv, *, relaunch: int = 0, ft: bool = False, env=None, timeout=240,
           environ: Mapping[str, str] | None = None):
    """Run ``mpips launch -n nprocs [--ft] [--relaunch N] -- argv...`` from the repository root
    (on PYTHONPATH), as a user would; returns the CompletedProcess (text). ``env`` adds to
    ``environ`` (default: this process's environment)."""
    command = [sys.executable, "-m", "mpips", "launch", "-n", str(nprocs), "--no-warmup",
               "--relaunch", str(relaunch), *(["--ft"] if ft else []), "--", *argv]
    launch_env = dict(os.environ if environ is None else environ, PYTHONPATH=str(REPO_ROOT),
                      **(env or {}))
    launch_env.pop("MPIPS_RANKS_LOST", None)
    return run_command(command, env=launch_env, timeout=timeout, capture=True,
                       cwd=str(REPO_ROOT))
