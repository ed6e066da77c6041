"""``mpips launch`` in the background for tests that act on a launch while it runs (kill a rank,
signal the launcher) and read its output as it comes; and the clean-up such tests owe the
machine: killed launches leave Open MPI session directories in /tmp and shared-memory
segments in /dev/shm behind."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from mpips.launch.processes import terminate_tree
from mpips.launch.ranks import rank_pids
from tests.helpers.data import REPO_ROOT


class LiveLaunch:
    """``python -m mpips launch -n N [options] -- ARGV`` started now, in the repository root,
    its stdout and stderr collected by threads (``out``, ``err``)."""

    def __init__(self, nprocs: int, argv, *, ft: bool = False, relaunch: int = 0,
                 options=(), env=None):
        self.argv = [str(a) for a in argv]
        command = [sys.executable, "-m", "mpips", "launch", "-n", str(nprocs), "--no-warmup",
                   "--relaunch", str(relaunch), *(["--ft"] if ft else []), *options, "--",
                   *self.argv]
        launch_env = {k: v for k, v in os.environ.items()
                      if k not in ("PYTHONUNBUFFERED", "MPIPS_RANKS_LOST")}
        launch_env.update(PYTHONPATH=str(REPO_ROOT), **(env or {}))
        self.proc = subprocess.Popen(command, cwd=REPO_ROOT, env=launch_env, text=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self._parts = {"out": [], "err": []}
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(stream, name), daemon=True)
                         for stream, name in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, name: str) -> None:
        for line in stream:
            with self._changed:
                self._parts[name].append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    out = property(lambda self: "".join(self._parts["out"]))
    err = property(lambda self: "".join(self._parts["err"]))

    def wait_for(self, texts, timeout: float, stream: str = "err") -> bool:
        """Whether ``texts`` (one, or a tuple: any of them) appeared in ``stream`` within
        ``timeout`` seconds (False also when the launch ended without it)."""
        texts = (texts,) if isinstance(texts, str) else tuple(texts)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(t in "".join(self._parts[stream]) for t in texts):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and
                                 not any(r.is_alive() for r in self._readers)):
                    return False
                self._changed.wait(min(left, 0.2))
        return True

    def ranks(self) -> list[int]:
        """Pids of the ranks running now."""
        return rank_pids(self.proc.pid, self.argv)

    def finish(self, timeout: float) -> int:
        """The launcher's exit code; past ``timeout`` seconds the launch is killed and an
        AssertionError carries its output."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"launch still running after {timeout} s; killed\n"
                                 f"--- stderr ---\n{self.err[-4000:]}") from None
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def kill(self) -> None:
        terminate_tree(self.proc, grace=2)

    def __enter__(self) -> "LiveLaunch":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.kill()


def processes_with(needle: str) -> list[str]:
    """Command lines of live (not zombie) processes that contain ``needle``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if needle in cmdline:  # a zombie's command line is empty
                found.append(f"{pid}: {cmdline}")
    return found


def lingering(needle: str, grace: float = 10.0) -> list[str]:
    """``processes_with(needle)`` once none is left, or after ``grace`` seconds: a rank that
    PR_SET_PDEATHSIG or a launcher's kill just signalled may take a moment to exit, so a look
    right after its launcher returned can still see it."""
    deadline = time.monotonic() + grace
    found = processes_with(needle)
    while found and time.monotonic() < deadline:
        time.sleep(0.05)
        found = processes_with(needle)
    return found


MPI_LAUNCHERS = frozenset({"prterun", "prted", "mpirun", "mpiexec", "orterun", "orted",
                           "mpiexec.hydra", "hydra_pmi_proxy"})
"""Process names (``/proc/PID/comm``) of the launchers and daemons of both MPI wheels."""


def remove_stale_mpi_files(min_age: float = 5.0, tmp: Path = Path("/tmp")) -> int:
    """Delete what killed launches leave behind and no live process uses: Open MPI's session
    directories ``ompi.<pid>`` under ``tmp`` whose mpirun is gone, and PRRTE's ``prted.<pid>``
    whose daemon is gone (the two-host tier kills a host's daemon); the job directories of
    Open MPI 5 (``ompi.<host>.<uid>/jf.<n>/<job>``, which a SIGKILLed prterun never removes)
    and MPICH's ``hydra_hwloc_xmlfile_*`` (one per killed mpiexec.hydra) while no MPI
    launcher runs at all; and /dev/shm segments of Open MPI (sm_segment.*, and
    osc_rdma.* of its one-sided windows) and MPICH (mpich_shm_*) that no process maps. Only
    what is older than ``min_age`` seconds (a starting launch creates its files just before
    using them). Returns how many were removed."""
    import shutil

    removed = 0
    now = time.time()
    for path in [*tmp.glob("ompi.*"), *tmp.glob("prted.*")]:
        pid = path.name.split(".", 1)[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    if not _mpi_launcher_running():
        for job in [*tmp.glob("ompi.*.*/jf.*/*"), *tmp.glob("hydra_hwloc_xmlfile_*")]:
            with contextlib.suppress(OSError):
                if now - job.stat().st_mtime > min_age:
                    if job.is_dir():
                        shutil.rmtree(job, ignore_errors=True)
                    else:
                        job.unlink()
                    removed += 1
    mapped = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            mapped.update(line.split()[-1] for line in maps.read_text().splitlines()
                          if "/dev/shm/" in line)
    for pattern in ("sm_segment.*", "osc_rdma.*", "mpich_shm_*"):
        for path in Path("/dev/shm").glob(pattern):
            with contextlib.suppress(OSError):
                if str(path) not in mapped and now - path.stat().st_mtime > min_age:
                    path.unlink()
                    removed += 1
    return removed


def _mpi_launcher_running() -> bool:
    """Whether any process of this machine is an MPI launcher or daemon (MPI_LAUNCHERS)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() in MPI_LAUNCHERS:
                return True
    return False
