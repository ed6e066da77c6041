"""Checkpoint directories and restores that must not be trusted blindly (issue 17): a fresh
run does not write into another run's checkpoints, a prune deletes only its own run's, a save
that fails is an error (never "saved" somewhere else), and a restore skips a corrupt or
foreign newest checkpoint for the newest one that verifies."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mpips import ckpt
from mpips.core.spec import TableSpec
from tests.helpers.launch import REPO_ROOT, run_mpi
from tests.helpers.results import final_metrics, result_of
from tests.helpers.ckpt import file_hashes, flip_bit_in_chunk, make_tables, save

JOB = ["-m", "mpips", "run", "sparse_lr", "--servers", "2", "--synthetic", "4000",
       "--features", "500", "--nnz", "10", "--batch-size", "128", "--quiet"]
RANKS = 4  # 2 workers: 13 steps per epoch


def sparse_lr(root, *options, check=True):
    proc = run_mpi(RANKS, [*JOB, "--checkpoint-dir", str(root), *options], timeout=180)
    return final_metrics(proc) if check else proc


def runs(root) -> dict[int, str | None]:
    """Step → run id of every valid checkpoint under ``root``."""
    return {info.step: info.run for info in ckpt.list_checkpoints(root) if info.valid}


@pytest.mark.slow
def test_a_fresh_run_refuses_another_runs_checkpoints_unless_told(tmp_path):
    """The issue's reproduction: a second fresh run into the same directory wrote its
    checkpoints into a directory named after an error, reported them saved, and a --resume
    then continued the first run. Now it is refused; --overwrite starts over and --resume
    continues the run that is there."""
    root = tmp_path / "D"
    first = sparse_lr(root, "--epochs", "3", "--keep", "3")
    first_run = set(runs(root).values())
    assert sorted(runs(root)) == [13, 26, 39] and len(first_run) == 1
    before = file_hashes(tmp_path)
    refused = sparse_lr(root, "--epochs", "2", "--seed", "7", "--keep", "3", check=False)
    assert refused.returncode == 2, refused.stderr
    assert (f"[mpips rank 0/{RANKS}] error: --checkpoint-dir {root} holds 3 checkpoint(s) of "
            "another run (newest step-000000000039): add --resume") in refused.stderr
    assert "Traceback" not in refused.stderr and file_hashes(tmp_path) == before
    assert not list(REPO_ROOT.glob("prepare*"))  # the old bug saved into "./prepare: <error>"
    second = sparse_lr(root, "--epochs", "2", "--seed", "7", "--keep", "3", "--overwrite")
    second_run = set(runs(root).values())
    assert sorted(runs(root)) == [13, 26] and len(second_run) == 1 and second_run != first_run
    assert first["model_sha256"] != second["model_sha256"]
    resumed = sparse_lr(root, "--epochs", "4", "--seed", "7", "--keep", "3", "--resume")
    assert resumed["resumed_from_step"] == 26
    assert resumed["train_logloss"][:2] == second["train_logloss"]  # the second run went on
    assert runs(root) == dict.fromkeys([26, 39, 52], second_run.pop())


@pytest.mark.long
def test_pruning_never_deletes_another_runs_checkpoint(tmp_path):
    """A checkpoint of another run in the directory (copied in, or from before run ids)
    stays, while the resumed run prunes its own chain to --keep 1."""
    root = tmp_path / "D"
    sparse_lr(root, "--epochs", "1", "--keep", "1")
    mine = runs(root)
    save(root, 5, 1, make_tables(seed=3), run="someone-else")
    sparse_lr(root, "--epochs", "3", "--keep", "1", "--resume")
    assert runs(root) == {39: mine[13], 5: "someone-else"}


@pytest.mark.long
def test_resume_skips_a_corrupt_newest_checkpoint_and_ends_as_if_uninterrupted(tmp_path):
    """A flipped bit in a values chunk of the newest checkpoint used to stop the resume
    (exit 1); the README promises the older valid checkpoint instead. BSP: the model must be
    the one an uninterrupted run ends with."""
    whole = final_metrics(run_mpi(RANKS, [*JOB, "--epochs", "3"], timeout=180))
    root = tmp_path / "D"
    sparse_lr(root, "--epochs", "2", "--keep", "3")
    bad = root / ckpt.step_dir_name(26)
    flip_bit_in_chunk(bad / "shard-00000-of-00002.h5", "tables/w/values")
    proc = sparse_lr(root, "--epochs", "3", "--keep", "3", "--resume", check=False)
    resumed = final_metrics(proc)
    assert (f"warning: skipping checkpoint {bad}: rank 2: ChecksumError: "
            f"{bad}/shard-00000-of-00002.h5: table 'w' values chunk 0") in proc.stderr
    assert f"resuming from {root / ckpt.step_dir_name(13)}" in proc.stderr
    assert resumed["resumed_from_step"] == 13
    assert resumed["model_sha256"] == whole["model_sha256"]
    aside = list(root.glob("step-000000000026.skipped-*"))
    assert len(aside) == 1 and not ckpt.verify(aside[0]).ok  # kept for a look, still bad
    assert sorted(runs(root)) == [13, 26, 39] and ckpt.verify(bad).ok  # 26 saved anew


def test_a_job_resumed_on_more_ranks_grows_its_servers_bitwise_and_its_workers(tmp_path):
    """A relaunch onto more ranks (issue 22): BSP on 2 servers + 2 workers, checkpointed
    after 2 epochs. Resumed on 3 servers (5 ranks), the restore spreads 2 servers' rows over
    3 and the job ends with the uninterrupted model, to the bit; resumed on 3 servers and 3
    workers (6 ranks), it trains on with the third worker."""
    bsp = ["--consistency", "bsp"]
    whole = final_metrics(run_mpi(RANKS, [*JOB, *bsp, "--epochs", "3"], timeout=180))
    root = tmp_path / "G"
    sparse_lr(root, *bsp, "--epochs", "2", "--keep", "3")
    copy = tmp_path / "G-copy"
    shutil.copytree(root, copy)
    resume = [*JOB, *bsp, "--servers", "3", "--epochs", "3", "--resume", "--checkpoint-dir"]
    more_servers = final_metrics(run_mpi(5, [*resume, str(root)], timeout=180))
    assert (more_servers["servers"], more_servers["workers"]) == (3, 2)
    assert more_servers["resumed_from_step"] == 26
    assert more_servers["model_sha256"] == whole["model_sha256"]
    more_workers = final_metrics(run_mpi(6, [*resume, str(copy)], timeout=180))
    assert (more_workers["servers"], more_workers["workers"]) == (3, 3)
    assert more_workers["resumed_from_step"] == 26
    assert len(more_workers["worker_samples"]) == 3 and min(more_workers["worker_samples"]) > 0
    assert more_workers["test_accuracy"] > whole["test_accuracy"] - 0.02


def test_full_every_saves_deltas_between_full_checkpoints_and_resumes_as_if_uninterrupted(
        tmp_path):
    """--full-every 3 (issue 19): of the epoch-end checkpoints, every third is full and the
    others hold only the rows changed since the one before; a resume from a delta (its base
    plus its deltas, on another server count) ends with the uninterrupted run's model."""
    whole = final_metrics(run_mpi(RANKS, [*JOB, "--epochs", "5"], timeout=180))
    root = tmp_path / "D"
    sparse_lr(root, "--epochs", "2", "--full-every", "3", "--keep", "1")
    infos = ckpt.list_checkpoints(root)
    assert [(i.step, i.parent) for i in infos] == [(26, 13), (13, None)]  # kept: 26's chain
    proc = run_mpi(RANKS + 1, [*JOB, "--servers", "3", "--checkpoint-dir", str(root),
                               "--epochs", "5", "--full-every", "3", "--keep", "1",
                               "--resume"], timeout=180)
    resumed = final_metrics(proc)
    assert resumed["resumed_from_step"] == 26
    assert resumed["model_sha256"] == whole["model_sha256"]
    infos = ckpt.list_checkpoints(root)
    # 26 was the 2nd save of its chain: 39 is a delta, 52 full, 65 a delta of 52
    assert [(i.step, i.parent) for i in infos] == [(65, 52), (52, None)], infos
    bad = run_mpi(RANKS, [*JOB, "--checkpoint-dir", str(tmp_path / "E"), "--full-every", "-1"],
                  timeout=60)
    assert bad.returncode == 2 and "--full-every must be >= 0, got -1" in bad.stderr


PROGRAM = "tests/mpi/programs/ckpt_remap.py"
DENSE, WIDTH = 5000, 2  # the tables of ckpt_remap.py


def remap_tables(seed: int) -> list:
    """Whole tables shaped like ckpt_remap.py's (dense 5000 x 2 and sparse, AdaGrad), with
    seeded values: the same file sizes whatever the seed."""
    rng = np.random.default_rng(seed)
    keys = np.unique(np.random.default_rng(1).integers(0, 2**64 - 1, 4000, dtype=np.uint64))
    out = []
    for spec, rows, width, k in [(TableSpec("dense", "dense", 0, 1, DENSE, WIDTH, "adagrad",
                                            {"lr": 0.1}), DENSE, WIDTH, None),
                                 (TableSpec("sparse", "sparse", 1, 1, 2**64, 1, "adagrad",
                                            {"lr": 0.2}), keys.size, 1, keys)]:
        meta = ckpt.TableMeta.from_spec(spec)
        values = rng.standard_normal((rows, width)).astype(np.float32)
        state = {"accum": rng.random((rows, width), dtype=np.float32)}
        out.append((meta, values, k, state))
    return out


def save_remap(root, step: int, seed: int):
    tables = remap_tables(seed)
    per_table = [ckpt.split_table(meta, 2, values, keys=keys, state=state)
                 for meta, values, keys, state in tables]
    return ckpt.save_checkpoint(root, step, [list(s) for s in zip(*per_table)]), tables


@pytest.mark.parametrize("ids", ["shard-ids", "before-shard-ids"])
def test_restore_skips_a_newest_checkpoint_holding_another_runs_shard(tmp_path, ids):
    """Shard 1 of the newest checkpoint is another save's, of the same size: it used to
    restore without a warning (a wrong model). The shard id in the manifest tells it apart;
    a manifest from before shard ids falls back to the sha256."""
    root = tmp_path / "root"
    _, good = save_remap(root, 1, seed=1)
    newest, _ = save_remap(root, 2, seed=2)
    other, _ = save_remap(tmp_path / "other", 2, seed=3)
    shard = "shard-00001-of-00002.h5"
    assert (newest / shard).stat().st_size == (other / shard).stat().st_size
    shutil.copyfile(other / shard, newest / shard)
    if ids == "before-shard-ids":
        manifest = json.loads((newest / ckpt.MANIFEST).read_text())
        for entry in manifest["shards"]:
            entry.pop("id", None)
        (newest / ckpt.MANIFEST).write_text(json.dumps(manifest))
    proc = run_mpi(4, [PROGRAM, "--servers", "2", "--phase", "restore", "--root", str(root)],
                   timeout=180)
    got = result_of(proc)
    error = "ForeignFileError" if ids == "shard-ids" else "ChecksumError: " + str(newest / shard)
    assert f"warning: skipping checkpoint {newest}: " in proc.stderr and error in proc.stderr
    assert got["restored"] == 1
    dense = good[0][1].view(np.uint32).ravel()[:4000]
    assert got["dense"] == dense.tolist()  # the rows of step 1, not a mix
    assert len(list(root.glob("step-000000000002.skipped-*"))) == 1


def test_a_save_that_cannot_be_prepared_is_an_error_not_saved_elsewhere(tmp_path):
    """Step 1 is committed already: the save must fail on the workers (it used to be written
    into a directory named after the error and reported as done)."""
    root = tmp_path / "root"
    save(root, 1, 1, make_tables(seed=4)[:1])
    before = file_hashes(tmp_path)
    proc = run_mpi(4, [PROGRAM, "--servers", "2", "--phase", "save", "--root", str(root)],
                   timeout=180)
    assert proc.returncode != 0 and "RESULT" not in proc.stdout
    assert "checkpoint not saved: CheckpointExistsError" in proc.stderr, proc.stderr
    assert file_hashes(tmp_path) == before and not list(REPO_ROOT.glob("prepare*"))


OLD_CHECKPOINTS = REPO_ROOT / "tests" / "data" / "checkpoint-c2fa580"
OLD_MODEL_SHA256 = "b0e53357b4b3a030dc553f53ada05c75eecc5a5b5bf021e24af749501fe2187b"


def test_a_checkpoint_written_before_the_package_was_split_into_folders_still_loads(tmp_path):
    """The checkpoint in tests/data was written by the code of c2fa580 (see its README). It
    verifies whole, and resuming its run on 3 servers instead of 2 restores the same model,
    bit for bit (the job's model hash, taken over every key it pulls)."""
    root = tmp_path / "checkpoints"
    shutil.copytree(OLD_CHECKPOINTS, root, ignore=shutil.ignore_patterns("README.md"))
    info = ckpt.inspect_checkpoint(root / "step-000000000002", "full")
    assert info.valid and info.step == 2 and info.num_servers == 2, info
    proc = run_mpi(5, ["-m", "mpips", "run", "sparse_lr", "--servers", "3", "--synthetic", "200",
                       "--epochs", "2", "--quiet", "--out", str(tmp_path / "out"),
                       "--checkpoint-dir", str(root), "--resume"], timeout=180)
    metrics = final_metrics(proc)
    assert metrics["resumed_from_step"] == 2 and metrics["servers"] == 3
    assert (metrics["model_keys"], metrics["model_sha256"]) == (951, OLD_MODEL_SHA256)
