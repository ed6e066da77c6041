"""mpips.launch.ranks.StartupWatch on real processes standing in for a launch (no MPI): a parent
("mpiexec") with children running the same command line ("ranks"), markers written as
mpips.launch.startup writes them, and a clock the test moves."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mpips.errors import EXIT_RANK_LOST
from mpips.launch.ranks import (ALL_STARTED, EXIT_GRACE, SETTLE, StartupWatch, rank_pids,
                                unfinished)
from mpips.launch.startup import marker_name

RANK_ARGV = ["-c", "import time; time.sleep(120)", "rank-of-test_ranks"]


class FakeLaunch:
    """A process that starts ``n`` rank-like children and waits."""

    def __init__(self, n: int):
        code = textwrap.dedent(f"""
            import subprocess, sys, time
            kids = [subprocess.Popen([sys.executable, *{RANK_ARGV!r}]) for _ in range({n})]
            print(" ".join(str(k.pid) for k in kids), flush=True)
            for k in kids:
                k.wait()
        """)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     text=True)
        self.ranks = [int(p) for p in self.proc.stdout.readline().split()]

    def kill_rank(self, pid: int) -> None:
        """SIGKILL ``pid`` and return once it is dead: a zombie until the fake mpiexec reaps
        it, or gone (the signal is delivered asynchronously; on a loaded machine the watch
        could otherwise still see it running)."""
        os.kill(pid, signal.SIGKILL)
        for _ in range(3000):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[0] in "ZX":
                        return
            except FileNotFoundError:
                return
            time.sleep(0.01)
        raise AssertionError(f"rank {pid} still runs 30 s after SIGKILL")

    def close(self) -> None:
        for pid in self.ranks:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def launch():
    fake = FakeLaunch(3)
    yield fake
    fake.close()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def mark(directory, pid: int, stage: str) -> None:
    (directory / marker_name(stage, pid)).touch()


def watch_of(launch, tmp_path, expected=3, held=False):
    """A watch of ``launch`` and its clock; with ``held`` every rank has said ``held``."""
    clock = Clock()
    for pid in launch.ranks if held else ():
        mark(tmp_path, pid, "held")
    return StartupWatch(launch.proc.pid, RANK_ARGV, str(tmp_path), expected, clock=clock), clock


def settled(watch, clock, seconds):
    """Poll until the watch sees the dead rank gone, then again ``seconds`` later."""
    for _ in range(500):
        if watch.poll() is None and watch.gone:
            break
        time.sleep(0.02)
    clock.now += seconds
    return watch.poll()


def test_ranks_are_the_children_running_the_launch_command(launch):
    assert sorted(rank_pids(launch.proc.pid, RANK_ARGV)) == sorted(launch.ranks)
    assert rank_pids(launch.proc.pid, ["-c", "something else"]) == []


def test_a_rank_gone_during_startup_without_exit_marker_is_lost_after_the_settle_time(
        launch, tmp_path):
    watch, clock = watch_of(launch, tmp_path, held=True)
    assert watch.poll() is None
    launch.kill_rank(launch.ranks[1])
    assert settled(watch, clock, SETTLE / 2) is None  # the job gets a chance to end itself
    clock.now += SETTLE
    verdict = watch.poll()
    assert verdict.code == EXIT_RANK_LOST and str(launch.ranks[1]) in verdict.message


def test_a_rank_that_left_on_its_own_is_given_time_and_its_code(launch, tmp_path):
    watch, clock = watch_of(launch, tmp_path, held=True)
    mark(tmp_path, launch.ranks[0], "exit-2")
    launch.kill_rank(launch.ranks[0])
    assert settled(watch, clock, SETTLE * 2) is None
    clock.now += EXIT_GRACE
    assert watch.poll().code == 2


def test_a_rank_killed_in_mpi_init_is_told_from_the_ranks_whose_mpi_init_failed_for_it(
        launch, tmp_path):
    """Open MPI fails the MPI_Init of the ranks waiting on a peer killed in it, and the launch
    ends by itself (before the settle time) with their exit code: the killed rank is the one
    that left no marker."""
    watch, _ = watch_of(launch, tmp_path, held=True)
    assert watch.poll() is None
    victim, *others = launch.ranks
    launch.kill_rank(victim)
    for pid in others:
        mark(tmp_path, pid, "init-failed")
        mark(tmp_path, pid, "exit-1")
        launch.kill_rank(pid)
    verdict = watch.killed_in_startup()
    assert verdict.code == EXIT_RANK_LOST and f"process {victim} " in verdict.message


def test_an_mpi_init_failing_everywhere_is_not_a_lost_rank(launch, tmp_path):
    """A transport that cannot connect fails every rank's MPI_Init: its exit code stands."""
    watch, _ = watch_of(launch, tmp_path, held=True)
    watch.poll()
    for pid in launch.ranks:
        mark(tmp_path, pid, "init-failed")
        mark(tmp_path, pid, "exit-1")
        launch.kill_rank(pid)
    assert watch.killed_in_startup() is None


def test_ranks_taken_down_after_another_rank_s_error_are_not_a_lost_rank(launch, tmp_path):
    """Without a failed MPI_Init, ranks without markers may have been killed by mpiexec after
    one rank's own error (exit-2): that error is the launch's."""
    watch, _ = watch_of(launch, tmp_path, held=True)
    watch.poll()
    mark(tmp_path, launch.ranks[0], "exit-2")
    for pid in launch.ranks:
        launch.kill_rank(pid)
    assert watch.killed_in_startup() is None


def test_ranks_past_mpips_init_are_the_job_s_business(launch, tmp_path):
    watch, clock = watch_of(launch, tmp_path, held=True)
    mark(tmp_path, launch.ranks[2], "ready")
    launch.kill_rank(launch.ranks[2])
    assert settled(watch, clock, 10 * SETTLE) is None


@pytest.mark.long
def test_a_launch_that_writes_no_markers_is_never_judged(launch, tmp_path):
    """A plain MPI program: its ranks may end at different times."""
    watch, clock = watch_of(launch, tmp_path)
    launch.kill_rank(launch.ranks[0])
    assert settled(watch, clock, 10 * ALL_STARTED) is None


def test_a_rank_never_seen_on_a_one_node_launch_is_lost(launch, tmp_path):
    watch, clock = watch_of(launch, tmp_path, expected=4, held=True)  # one never showed up
    assert watch.poll() is None
    clock.now += ALL_STARTED
    verdict = watch.poll()
    assert verdict.code == EXIT_RANK_LOST and "only 3 of the 4" in verdict.message


def test_stop_signals_wait_until_every_rank_holds_them(launch, tmp_path):
    watch, clock = watch_of(launch, tmp_path)
    watch.poll()
    assert not watch.holding()  # young ranks of a launch not (yet) known to hold
    for pid in launch.ranks[:2]:
        mark(tmp_path, pid, "held")
    watch.poll()
    assert not watch.holding()
    mark(tmp_path, launch.ranks[2], "held")
    watch.poll()
    assert watch.holding()


def test_ranks_of_a_plain_program_get_stop_signals_after_a_moment(launch, tmp_path):
    watch, clock = watch_of(launch, tmp_path)
    watch.poll()
    assert not watch.holding()
    clock.now += 2
    assert watch.holding()


def _markers(directory, **ranks):
    """Markers of ranks named host_pid (e.g. a_11=("ready", "exit-0"))."""
    for name, stages in ranks.items():
        host, pid = name.split("_")
        for stage in stages:
            (directory / marker_name(stage, int(pid), host)).touch()


def test_a_launch_torn_down_after_its_start_up_is_a_lost_rank_though_mpiexec_said_0(tmp_path):
    """Open MPI ends the job and exits 0 when it loses another node's daemon: ranks that
    were ready and never left (here the two of host b, and one of host a killed by the
    teardown) make it a lost rank, named in the message."""
    _markers(tmp_path, a_11=("held", "ready", "exit-0"), a_12=("held", "ready"),
             b_21=("held", "ready"), b_22=("held", "ready"))
    verdict = unfinished(str(tmp_path))
    assert verdict.code == EXIT_RANK_LOST
    assert "3 rank(s) never finished (a-12, b-21, b-22, host-pid)" in verdict.message


def test_a_finished_launch_and_one_that_survived_a_dead_rank_are_not_lost(tmp_path):
    finished, survived, plain = tmp_path / "f", tmp_path / "s", tmp_path / "p"
    for directory in (finished, survived, plain):
        directory.mkdir()
    _markers(finished, a_11=("held", "ready", "exit-0"), b_21=("ready", "exit-0"))
    # a ULFM job that carried on past rank b-21: the survivors say so before leaving
    _markers(survived, a_11=("ready", "survived", "exit-0"), b_21=("ready",))
    assert unfinished(str(finished)) is None
    assert unfinished(str(survived)) is None
    assert unfinished(str(plain)) is None  # a plain MPI program writes no markers
    assert unfinished(str(tmp_path / "gone")) is None
