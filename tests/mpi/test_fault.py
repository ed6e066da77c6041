"""A rank SIGKILLed in the middle of training (issue 8, the path without replicas): the job
leaves with EXIT_RANK_LOST, and a relaunch on one rank fewer resumes from the newest
checkpoint and ends with the same model as a run nobody killed (BSP is deterministic, and a
restore on fewer servers is bitwise).

On Open MPI the launch runs with ULFM (--ft): the survivors notice the dead rank, revoke the
communicators and exit with 76 themselves. On MPICH, mpiexec tears the launch down and
``mpips launch`` reports its signal exit as 76.
"""
import json
import os
import sys
import warnings

import pytest

from mpips.ckpt import newest_valid, verify
from mpips.errors import EXIT_RANK_LOST
from mpips.launcher import OPEN_MPI, detect_implementation, find_mpiexec, run_command
from tests.launch import REPO_ROOT

JOB = ["--servers", "2", "--synthetic", "12000", "--features", "5000", "--epochs", "8",
       "--batch-size", "128", "--quiet"]
RANKS = 4  # workers are ranks 0-1, servers ranks 2-3


@pytest.fixture(scope="module")
def ulfm() -> bool:
    return detect_implementation(find_mpiexec()) == OPEN_MPI


@pytest.fixture(scope="module")
def reference() -> dict:
    """The model of a run nobody kills."""
    proc = launch(RANKS, ["jobs/sparse_lr.py", *JOB])
    assert proc.returncode == 0, proc.stderr
    return final_metrics(proc)


def launch(nprocs: int, argv, *, relaunch: int = 0, ft: bool = False, env=None):
    command = [sys.executable, "-m", "mpips", "launch", "-n", str(nprocs), "--no-warmup",
               "--relaunch", str(relaunch), *(["--ft"] if ft else []), "--", *argv]
    launch_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **(env or {}))
    launch_env.pop("MPIPS_RANKS_LOST", None)
    return run_command(command, env=launch_env, timeout=240, capture=True, cwd=str(REPO_ROOT))


def final_metrics(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def killing(rank: int, after: int, seed: int, ckpt) -> list[str]:
    return ["-m", "mpips", "run", "benchmarks/lr_kill.py", "--kill-rank", str(rank),
            "--kill-after", str(after), "--kill-seed", str(seed), *JOB,
            "--checkpoint-dir", str(ckpt), "--resume"]


@pytest.mark.parametrize("rank,after,seed", [(3, 1, 1), (2, 4, 2), (0, 2, 3)],
                         ids=["server1-epoch1", "server0-epoch4", "worker0-epoch2"])
def test_a_killed_rank_is_relaunched_on_fewer_ranks_and_resumes(tmp_path, reference, ulfm,
                                                                  rank, after, seed):
    proc = launch(RANKS, killing(rank, after, seed, tmp_path / "ck"), relaunch=1, ft=ulfm)
    said = proc.stderr
    assert proc.returncode == 0, said
    assert f"rank {rank} kills itself" in said
    if ulfm:  # the survivors noticed and left cleanly, naming the dead rank
        assert f"lost rank {rank} (" in said and f"exit code {EXIT_RANK_LOST}" in said
    assert f"relaunching on {RANKS - 1} ranks" in said
    assert "relaunched after losing 1 rank(s) (MPIPS_RANKS_LOST): 1 server(s) instead of 2" in said
    metrics = final_metrics(proc)
    assert metrics["servers"] == 1 and metrics["workers"] == 2
    assert metrics["resumed_from_step"] >= after * 1  # resumed from a checkpoint it had made
    assert metrics["model_sha256"] == reference["model_sha256"]
    assert metrics["test_accuracy"] == reference["test_accuracy"]


def test_without_relaunch_the_launch_exits_76_and_a_smaller_launch_resumes(tmp_path, reference,
                                                                           ulfm):
    ckpt = tmp_path / "ck"
    proc = launch(RANKS, killing(3, 3, 4, ckpt), ft=ulfm)
    assert proc.returncode == EXIT_RANK_LOST, proc.stderr
    assert "rank 3 kills itself" in proc.stderr
    assert f"exit code {EXIT_RANK_LOST} (relaunch on fewer ranks" in proc.stderr
    with warnings.catch_warnings():  # the save the kill interrupted is skipped, by name
        warnings.simplefilter("ignore")
        newest = newest_valid(ckpt)
    assert newest is not None
    verify(newest.path, "full").check()
    # the operator relaunches by hand on the 3 ranks that are left, one server fewer
    again = launch(RANKS - 1, ["jobs/sparse_lr.py", *JOB, "--servers", "1",
                               "--checkpoint-dir", str(ckpt), "--resume"])
    assert again.returncode == 0, again.stderr
    assert f"resuming from {newest.path}" in again.stderr
    assert final_metrics(again)["model_sha256"] == reference["model_sha256"]
