"""Checkpoints from running jobs: restore on a different number of servers is bitwise exact
(values and AdaGrad state), a BSP job stopped mid-epoch and resumed ends with the same model
as an uninterrupted run, and a signal makes a job checkpoint and stop at a step boundary."""
import json
import os
import signal
import subprocess

import numpy as np
import pytest

from mpips import ckpt
from mpips.launch.mpiexec import mpiexec_command
from tests.helpers.launch import REPO_ROOT, run_mpi
from tests.helpers.results import final_metrics, result_of

PROGRAM = "tests/mpi/programs/ckpt_remap.py"
WORKERS = 2


def launch(servers, phase, root):
    return result_of(run_mpi(servers + WORKERS, [PROGRAM, "--servers", str(servers), "--phase",
                                                 phase, "--root", str(root)], timeout=180))


@pytest.mark.long
@pytest.mark.parametrize("before,after", [(1, 3), (3, 2), (2, 2)])
def test_restore_on_other_server_counts_is_bitwise_exact(tmp_path, before, after):
    saved = launch(before, "save", tmp_path)
    restored = launch(after, "restore", tmp_path)
    assert restored["restored"] == 1
    assert restored["dense"] == saved["dense"] and restored["sparse"] == saved["sparse"]
    first, second = tmp_path / ckpt.step_dir_name(1), tmp_path / ckpt.step_dir_name(2)
    assert ckpt.load_manifest(first).num_servers == before
    assert ckpt.load_manifest(second).num_servers == after
    for name in ("dense", "sparse"):
        a, b = ckpt.read_table(first, name), ckpt.read_table(second, name)
        np.testing.assert_array_equal(a.values.view(np.uint32), b.values.view(np.uint32))
        np.testing.assert_array_equal(a.state["accum"].view(np.uint32),
                                      b.state["accum"].view(np.uint32))
        assert a.state["accum"].any()  # the optimizer state is really there
        if name == "sparse":
            np.testing.assert_array_equal(a.keys, b.keys)
    assert ckpt.verify(second).ok


JOB = ["jobs/sparse_lr.py", "--synthetic", "6000", "--features", "3000", "--epochs", "3",
       "--quiet"]


@pytest.mark.slow
def test_bsp_job_stopped_mid_epoch_and_resumed_on_other_servers_ends_identical(tmp_path):
    whole = final_metrics(run_mpi(5, [*JOB, "--servers", "2"], timeout=180))
    stopped = final_metrics(run_mpi(5, [*JOB, "--servers", "2", "--checkpoint-dir", str(tmp_path),
                                        "--stop-after-steps", "9"], timeout=180))
    assert stopped["stopped_at_step"] == 10 and "model_sha256" not in stopped
    resumed = final_metrics(run_mpi(6, [*JOB, "--servers", "3", "--checkpoint-dir", str(tmp_path),
                                        "--resume"], timeout=180))
    assert resumed["resumed_from_step"] == 10
    assert resumed["model_sha256"] == whole["model_sha256"]
    assert resumed["train_logloss"] == whole["train_logloss"]


@pytest.mark.long
def test_a_resume_on_more_workers_numbers_its_checkpoints_after_the_old_ones(tmp_path):
    """2 workers save epochs 1-2; 4 workers (fewer steps per epoch) resume and save epoch 3.
    Its id must be the newest, or --keep 2 would prune it and a restore would miss it."""
    first = final_metrics(run_mpi(3, [*JOB, "--epochs", "2", "--servers", "1",
                                      "--checkpoint-dir", str(tmp_path), "--keep", "2"],
                                  timeout=180))
    old = [i.step for i in ckpt.list_checkpoints(tmp_path)]
    more = final_metrics(run_mpi(5, [*JOB, "--servers", "1", "--checkpoint-dir", str(tmp_path),
                                     "--keep", "2", "--resume"], timeout=180))
    assert more["workers"] == 4 and more["resumed_from_step"] == max(old)
    infos = ckpt.list_checkpoints(tmp_path)
    assert [i.valid for i in infos] == [True, True] and infos[1].step == max(old)
    assert infos[0].step > max(old)  # the newest on disk is epoch 3, written by 4 workers
    assert (infos[0].job["epoch"], infos[0].job["workers"]) == (3, 4)
    assert first["train_logloss"] == more["train_logloss"][:2]


def test_periodic_checkpoints_by_seconds_keep_the_newest(tmp_path):
    got = final_metrics(run_mpi(5, [*JOB, "--servers", "2", "--checkpoint-dir", str(tmp_path),
                                    "--checkpoint-every", "0", "--checkpoint-seconds", "0.001",
                                    "--keep", "3"], timeout=180))
    infos = ckpt.list_checkpoints(tmp_path)
    assert [i.valid for i in infos] == [True] * 3  # pruned to the 3 newest
    assert infos[0].step > infos[2].step and "model_sha256" in got


def test_sigusr1_checkpoints_at_a_step_boundary_and_stops(tmp_path):
    """SIGUSR1 to the launch (as SLURM's --signal does) reaches the ranks; they agree at the
    next step boundary, checkpoint, and stop cleanly."""
    argv = ["jobs/sparse_lr.py", "--synthetic", "3000", "--features", "3000", "--epochs", "500",
            "--checkpoint-dir", str(tmp_path), "--checkpoint-every", "0", "--servers", "2"]
    command, env = mpiexec_command(5, argv)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.pop("PYTHONUNBUFFERED", None)
    proc = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines = []
        while not any(line.startswith("epoch 2/") for line in lines):
            line = proc.stdout.readline()
            assert line, f"the job ended before training: {proc.communicate()[1]}"
            lines.append(line)
        os.killpg(proc.pid, signal.SIGUSR1)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    last = json.loads(out.strip().splitlines()[-1])
    assert last["stopped_at_step"] > 0 and len(last["train_logloss"]) >= 2
    info = ckpt.newest_valid(tmp_path)
    assert info is not None and info.step == last["stopped_at_step"]
    assert ckpt.verify(info.path).ok
