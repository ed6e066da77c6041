"""Whose checkpoint is it (mpips.ckpt, issue 17): shard ids tell a shard of another save from
the committed one, run ids keep a prune to its own run's chain, and paths that are no
checkpoint say what they are."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from mpips.ckpt import (MANIFEST, CheckpointError, ForeignFileError, NotACheckpointError,
                        committed, inspect_checkpoint, load_manifest, new_run_id,
                        newest_valid, prepare_root, prune, read_table, remove_checkpoint,
                        set_aside, verify)
from mpips.errors import UsageError
from tests.helpers.ckpt import make_tables, read_only, save

TABLES = make_tables(seed=11)
OTHER = make_tables(seed=12)  # the same tables and shapes, other values


def test_a_shard_of_another_save_with_the_same_size_is_foreign(tmp_path):
    """A shard copied from another run (same step, layout and size) must not pass for the
    committed one: before shard ids, only a sha256 of every byte could tell."""
    dense, other = TABLES[:2], OTHER[:2]  # dense tables: the same bytes whatever the values
    mine, theirs = save(tmp_path / "a", 1, 2, dense), save(tmp_path / "b", 1, 2, other)
    shard = "shard-00001-of-00002.h5"
    assert (mine / shard).stat().st_size == (theirs / shard).stat().st_size
    shutil.copyfile(theirs / shard, mine / shard)
    report = verify(mine, "quick")
    assert [type(e) for e in report.errors] == [ForeignFileError]
    assert shard in str(report.errors[0]) and "another save" in str(report.errors[0])
    with pytest.raises(ForeignFileError):
        read_table(mine, "emb")
    assert newest_valid(tmp_path / "a", warn=lambda m: None, level="quick") is None


def test_manifests_record_run_and_shard_ids_and_older_ones_still_load(tmp_path):
    path = save(tmp_path, 3, 2, TABLES, run="run-a")
    manifest = load_manifest(path)
    assert manifest.run == "run-a" and inspect_checkpoint(path).run == "run-a"
    assert all(len(s.shard_id) == 32 for s in manifest.shards)
    obj = json.loads((path / MANIFEST).read_text())
    del obj["run"]
    for shard in obj["shards"]:
        del shard["id"]  # as written before run and shard ids existed
    (path / MANIFEST).write_text(json.dumps(obj))
    old = load_manifest(path)
    assert old.run is None and all(s.shard_id is None for s in old.shards)
    assert verify(path, "full").ok


def test_prune_deletes_only_the_checkpoints_of_its_own_run(tmp_path):
    for step, run in [(1, "a"), (2, "a"), (3, "b"), (4, None), (5, "a"), (6, "a")]:
        save(tmp_path, step, 1, TABLES, run=run)
    removed = prune(tmp_path, keep_last=2, level="quick", run="a")
    assert sorted(p.name[-1] for p in removed) == ["1", "2"]
    left = {inspect_checkpoint(p).step: inspect_checkpoint(p).run for p in committed(tmp_path)}
    assert left == {6: "a", 5: "a", 4: None, 3: "b"}
    assert prune(tmp_path, keep_last=1, level="quick", run="b") == []
    assert [p.name[-1] for p in prune(tmp_path, keep_last=1, level="sha256", run="a")] == ["5"]
    assert prune(tmp_path, keep_last=1, run=None) == []  # the one without a run is kept


def test_committed_set_aside_and_remove(tmp_path):
    save(tmp_path, 1, 1, TABLES)
    save(tmp_path, 2, 1, TABLES)
    (tmp_path / "step-000000000003").mkdir()  # a crashed save: no manifest, no checkpoint
    assert [p.name for p in committed(tmp_path)] == ["step-000000000002", "step-000000000001"]
    aside = set_aside(tmp_path / "step-000000000002")
    assert aside.name.startswith("step-000000000002.skipped-") and verify(aside, "full").ok
    assert [p.name for p in committed(tmp_path)] == ["step-000000000001"]
    remove_checkpoint(tmp_path / "step-000000000001")
    assert committed(tmp_path) == [] and not list(tmp_path.glob(".pruned-*"))
    assert new_run_id() != new_run_id()


def test_paths_that_are_no_checkpoint_say_what_they_are(tmp_path):
    root = tmp_path / "root"
    for step in (1, 2):
        save(root, step, 1, TABLES)
    cases = {tmp_path / "nowhere": "no such file or directory",
             root / "step-000000000001" / MANIFEST: "a file, not a checkpoint directory "
                                                   "(ROOT/step-N)",
             root: "this is a checkpoint root holding 2 checkpoint(s), not a checkpoint: give "
                   f"one of them: {root / 'step-000000000002'}, {root / 'step-000000000001'}",
             tmp_path: "not a checkpoint: no MANIFEST.json, and no step-N directories in it"}
    for path, text in cases.items():
        with pytest.raises(NotACheckpointError) as caught:
            load_manifest(path)
        assert str(caught.value) == f"{path}: {text}"
        assert isinstance(caught.value, UsageError)
        assert verify(path).errors[0].problem == text


def test_prepare_root_refuses_what_it_cannot_write(tmp_path):
    assert prepare_root(tmp_path / "new" / "root").is_dir()
    assert os.listdir(tmp_path / "new" / "root") == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="file: not a directory"):
        prepare_root(tmp_path / "file")
    locked = tmp_path / "locked"
    locked.mkdir()
    undo = read_only(locked)
    try:
        with pytest.raises(CheckpointError, match="locked: cannot write checkpoints here"):
            prepare_root(locked)
    finally:
        undo()
