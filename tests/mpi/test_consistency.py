"""Consistency models through real launches: every read of an instrumented table obeys its
model (tests/mpi/programs/clock_bounds.py), BSP training is bitwise reproducible, and async
training is not held up by a stopped worker. (The clock rules themselves are checked over
thousands of random interleavings without MPI in tests/unit/core/test_consistency.py.)"""
import json

import pytest

from tests.helpers.launch import run_mpi
from tests.helpers.results import final_metrics

PROGRAM = "tests/mpi/programs/clock_bounds.py"
WORKERS, SERVERS, STEPS = 3, 2, 12


def reads_of(proc) -> list[dict]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    results = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines()
               if line.startswith("RESULT ")]
    assert sorted(r["worker"] for r in results) == list(range(WORKERS)), proc.stdout
    for result in results:  # a job barrier: every worker's every push is applied after it
        assert result["after_job_barrier"] == [STEPS] * WORKERS
    return results


def launch(*options, timeout=180):
    return run_mpi(WORKERS + SERVERS, [PROGRAM, "--servers", str(SERVERS), "--steps", str(STEPS),
                                       *options], timeout=timeout)


@pytest.mark.parametrize("seed", [1, 2])
def test_ssp_reads_never_miss_more_than_tau_also_when_tau_changes(seed):
    proc = launch("--consistency", "ssp:2", "--tau-schedule", "0:2,4:0,8:3", "--seed", str(seed),
                  "--slow-factor", "6")
    largest_lag = 0
    for result in reads_of(proc):
        for clock, tau, fewest, most in result["reads"]:
            assert min(fewest) >= clock - tau, (result["worker"], clock, tau, fewest)
            assert max(most) <= STEPS
            assert fewest[result["worker"]] == clock  # its own pushes: all applied
            largest_lag = max(largest_lag, clock - min(fewest))
    assert largest_lag >= 1, "no read ever ran ahead of a slower worker: nothing was tested"


def test_bsp_reads_see_exactly_every_previous_step_of_every_worker():
    proc = launch("--consistency", "bsp", "--slow-factor", "4")
    for result in reads_of(proc):
        assert [r[0] for r in result["reads"]] == list(range(STEPS))
        for clock, _, fewest, most in result["reads"]:
            assert fewest == most == [clock] * WORKERS, (result["worker"], clock, fewest, most)


def test_async_lets_the_others_finish_while_a_worker_is_stopped():
    """Worker 1 stops after 2 steps until the other workers have done all of theirs."""
    proc = launch("--consistency", "async", "--stop-after", "2", timeout=120)
    results = {r["worker"]: r for r in reads_of(proc)}
    assert all(len(r["reads"]) == STEPS for r in results.values())
    # the others' last reads saw worker 1 frozen at 2 steps
    for worker in (0, 2):
        last_clock, _, fewest, most = results[worker]["reads"][-1]
        assert last_clock == STEPS - 1 and most[1] == 2


def sparse_lr(consistency, *extra):
    return final_metrics(run_mpi(5, ["jobs/sparse_lr.py", "--servers", "2", "--synthetic", "6000",
                                     "--features", "3000", "--epochs", "2", "--quiet",
                                     "--consistency", consistency, *extra], timeout=180))


def test_bsp_training_is_bitwise_reproducible_even_with_a_straggler():
    first = sparse_lr("bsp")
    second = sparse_lr("bsp", "--straggler", "1:3")
    assert first["model_sha256"] == second["model_sha256"]
    assert first["train_logloss"] == second["train_logloss"]
    assert first["test_logloss"] == second["test_logloss"]
