"""Dynamic work assignment's queue (issue 21): workers claim blocks with MPI_Fetch_and_op on a
server's window (mpips.mpi.workqueue) in rounds (mpips.worker.block_feed). Every block of every
epoch is marked done exactly once and pushed exactly once, a slow worker trains fewer blocks,
a stop flag ends a round early without losing a block, and (ULFM) a worker killed in the middle
of a block is survived: its block goes to the others in a second round."""
import pytest

from tests.helpers.launch import run_mpi
from tests.helpers.results import result_of

ONCE = [[1, 1]] * 3  # (min, max) of the per-block counts of each of 3 epochs


def test_each_block_is_trained_once_per_epoch_and_the_slow_worker_trains_fewer():
    got = result_of(run_mpi(4, ["tests/mpi/programs/block_queue.py", "--slow", "1"]))
    assert got["epochs"] == ONCE and got["pushes"] == ONCE and got["rounds"] == [1, 1, 1]
    fast, slow = got["trained"][0], got["trained"][1]
    assert all(s < f for s, f in zip(slow, fast)), got["trained"]
    assert [sum(col) for col in zip(*got["trained"])] == [40, 40, 40]


def test_a_launch_with_a_queue_and_no_table_hands_out_every_block():
    got = result_of(run_mpi(3, ["tests/mpi/programs/block_queue.py", "--no-table"]))
    assert got["epochs"] == ONCE and "pushes" not in got


def test_a_stop_flag_ends_the_round_early_and_the_next_round_finishes_the_epoch():
    got = result_of(run_mpi(4, ["tests/mpi/programs/block_queue.py", "--stop-at", "3"]))
    assert got["stopped_early"] and got["rounds"][0] == 2
    assert got["epochs"] == ONCE and got["pushes"] == ONCE


@pytest.mark.openmpi  # ULFM: MPICH ends the launch on a lost rank (tests/mpi/test_fault.py)
def test_a_worker_killed_mid_block_is_survived_and_its_block_trained_by_the_others():
    proc = run_mpi(4, ["tests/mpi/programs/block_queue.py", "--slow", "1", "--kill", "2"],
                   ft=True)
    got = result_of(proc)
    assert "DYING" in proc.stdout and "lost rank 2 (worker 2)" in proc.stderr
    assert got["epochs"] == ONCE and got["pushes"] == ONCE
    assert got["rounds"][1] == 2 and len(got["trained"]) == 2  # the epoch of the kill
