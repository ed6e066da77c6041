"""Every test under tests/mpi launches mpiexec: mark it ``mpi``, require an mpiexec (skip
without one, fail under CI=true), and compile the numba kernels once before any launch so
ranks never race on numba's on-disk cache; after each test module, remove the session
directories and shared-memory segments that killed launches left and no process uses.

With MPIPS_TEST_HOSTS=2 (the two-host tier, ``make test-twohost``) every launch of the session
spans two hosts on this machine (tests.helpers.two_hosts), and test_two_hosts.py, which needs
them, is collected only there."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpips.errors import LauncherError
from mpips.launch.mpiexec import OPEN_MPI, detect_implementation, find_mpiexec
from tests.helpers.data import unavailable
from tests.helpers.live_launch import remove_stale_mpi_files
from tests.helpers.two_hosts import TwoHosts, unavailable_reason

HERE = Path(__file__).resolve().parent


QUICK_CASES = {
    "test_a_user_mistake_is_one_line_and_exit_2": 4,
    "test_workers_push_rounds_and_pull_exact_sums": 2,
    "test_one_sided_pulls_equal_two_sided_pulls": 2,
    "test_servers_carry_on_when_a_worker_dies": 1,
    "test_a_server_killed_mid_save_is_survived_with_replicas": 1,
    "test_two_neighbouring_servers_dying_end_the_launch_and_leave_no_process": 1,
    "test_synthetic_data_is_learned_on_both_table_kinds": 1,
}
"""Parametrized tests of which make test-quick runs only the first cases (the others are
marked ``long``: make test and CI run them all)."""


def two_host_tier() -> bool:
    """Whether this session is the two-host tier."""
    return os.environ.get("MPIPS_TEST_HOSTS") == "2"


collect_ignore = [] if two_host_tier() else ["test_two_hosts.py"]


def pytest_collection_modifyitems(config, items):
    seen: dict[str, int] = {}
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.mpi)
            name = getattr(item, "originalname", item.name)
            if name in QUICK_CASES:
                seen[name] = seen.get(name, 0) + 1
                if seen[name] > QUICK_CASES[name]:
                    item.add_marker(pytest.mark.long)


@pytest.fixture(scope="session")
def mpiexec() -> str:
    """Path of the mpiexec the launches use; skips (fails under CI=true) when there is none."""
    try:
        return find_mpiexec()
    except LauncherError as exc:
        unavailable("an MPI", str(exc))


@pytest.fixture(scope="session")
def ulfm(mpiexec) -> bool:
    """Whether launches here can survive a dead rank (Open MPI's ULFM, ``--ft``); MPICH
    cannot, so tests check the exit-76 path there instead."""
    return detect_implementation(mpiexec) == OPEN_MPI


@pytest.fixture(scope="session", autouse=True)
def two_hosts(tmp_path_factory):
    """In the two-host tier, host B for the whole session (and its launch settings in the
    environment of every launch); None elsewhere."""
    if not two_host_tier():
        yield None
        return
    reason = unavailable_reason()
    if reason:
        unavailable("two hosts", reason)
    hosts = TwoHosts(tmp_path_factory.mktemp("two-hosts"))
    with pytest.MonkeyPatch.context() as patch:
        try:
            for name, value in hosts.start().items():
                patch.setenv(name, value)
            yield hosts
        finally:
            hosts.stop()


@pytest.fixture(scope="session", autouse=True)
def warm_numba_cache(mpiexec):
    """``python -m mpips warmup`` once per session (a failure is reported, not fatal)."""
    proc = subprocess.run([sys.executable, "-m", "mpips", "warmup"], capture_output=True,
                          text=True, timeout=600, cwd=HERE.parent.parent)
    if proc.returncode != 0:
        print(f"warning: mpips warmup failed ({proc.returncode}):\n{proc.stderr}",
              file=sys.stderr)


@pytest.fixture(autouse=True, scope="module")
def clean_up_after_kills():
    """Killed launches leave /tmp/ompi.* and /dev/shm segments: remove what no process uses,
    so that the next module (and the next run) starts clean."""
    yield
    remove_stale_mpi_files()
