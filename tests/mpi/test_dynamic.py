"""sparse_lr --assign dynamic (issue 21): workers claim blocks of rows as they get free.
A worker slow all the time trains fewer rows (async and SSP), accuracy stays with static
shards', and every block is trained exactly once per epoch: in a plain run, across a stop and
a resume on another number of workers, and (ULFM) when a worker dies mid-epoch."""
import pytest

from mpips.cli.sweep import last_json
from tests.helpers.launch import launch

JOB = ["jobs/sparse_lr.py", "--servers", "2", "--synthetic", "12000", "--features", "4000",
       "--epochs", "3", "--batch-size", "128", "--consistency", "async", "--quiet"]
ROWS = 9600  # training rows (80 % of 12,000)


def run(ranks: int, *extra: str, **kw) -> dict:
    proc = launch(ranks, [*JOB, *extra], **kw)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return last_json(proc.stdout)


@pytest.mark.long
def test_a_slow_worker_trains_fewer_rows_and_each_block_is_trained_once_per_epoch():
    slow = ["--straggler", "0:3", "--compute-ms", "3"]
    static = run(6, *slow)
    dynamic = run(6, *slow, "--assign", "dynamic")
    assert dynamic["block_done_counts"] == [[1, 1]] * 3 and dynamic["blocks"] == ROWS // 128
    assert dynamic["samples"] == static["samples"] == 3 * ROWS
    straggler, *fast = dynamic["worker_samples"]
    assert straggler < min(fast), dynamic["worker_samples"]
    assert len(set(static["worker_samples"])) == 1  # static: the same shard size each
    assert abs(dynamic["test_accuracy"] - static["test_accuracy"]) <= 0.01


@pytest.mark.long
def test_a_stopped_run_resumes_on_other_workers_and_trains_every_block_once(tmp_path):
    ckpt = ["--assign", "dynamic", "--checkpoint-dir", str(tmp_path / "ck")]
    first = launch(6, [*JOB, *ckpt, "--stop-after-steps", "10"])
    assert first.returncode == 0, first.stderr[-3000:]
    stopped = last_json(first.stdout)
    assert "stopped_at_step" in stopped and "stopping (continue with --resume)" in first.stdout
    resumed = run(5, *ckpt, "--resume")  # 3 workers instead of 4
    assert resumed["resumed_from_step"] == stopped["stopped_at_step"]
    assert resumed["block_done_counts"] == [[1, 1]] * 3
    assert stopped["samples"] + resumed["samples"] == 3 * ROWS  # no row twice, none left out


@pytest.mark.long
def test_under_ssp_the_slow_worker_holds_nobody_back_and_each_block_is_trained_once():
    """Clocks follow the blocks handed out (mpips.worker.block_feed), so SSP(1) bounds how
    many blocks a read misses while the fast workers take the straggler's share."""
    got = run(6, "--consistency", "ssp", "--staleness", "1", "--assign", "dynamic",
              "--straggler", "0:3", "--compute-ms", "3")
    assert got["consistency"] == "ssp:1" and got["block_done_counts"] == [[1, 1]] * 3
    assert got["samples"] == 3 * ROWS
    straggler, *fast = got["worker_samples"]
    assert straggler < min(fast), got["worker_samples"]
    assert got["test_accuracy"] > 0.75


def test_bsp_refuses_dynamic_assignment_with_one_line():
    proc = launch(4, [*JOB[:-3], "--consistency", "bsp", "--assign", "dynamic"])
    assert proc.returncode == 2
    assert "--assign dynamic needs --consistency async or ssp" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.long
@pytest.mark.openmpi  # ULFM: MPICH ends the launch on a lost rank (tests/mpi/test_fault.py)
def test_a_worker_killed_mid_epoch_is_survived_and_every_block_still_trained_once():
    proc = launch(6, ["-m", "mpips", "run", "benchmarks/lr_kill.py", "--kill-rank", "1",
                      "--kill-at", "0.6", *JOB[1:], "--assign", "dynamic", "--compute-ms", "3"],
                  ft=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lost rank 1 (worker 1); 3 workers carry on" in proc.stderr
    metrics = last_json(proc.stdout)
    assert metrics["workers_lost"] == 1
    assert metrics["block_done_counts"] == [[1, 1]] * 3
