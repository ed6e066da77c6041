"""Incremental checkpoints in files (mpips.ckpt.chain and the readers, verify, prune and the
``mpips ckpt`` commands that follow chains), against a plain model replayed in NumPy: a
full checkpoint, deltas of changed rows and removed keys on top, read back on any number of
servers; broken chains refused and skipped; bases never pruned under a kept delta."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mpips import ckpt
from mpips.ckpt import (BrokenChainError, InconsistentCheckpointError, InvalidSliceError,
                        ManifestError, save_checkpoint, split_table)
from mpips.core.partition import KeyRange, RangePartition
from tests.helpers.ckpt import ckpt_cli, flip_bit_in_chunk, make_tables

F = np.float32


class Model:
    """Whole tables as dicts (sparse: key -> (values, state)) or arrays (dense), changed step
    by step, saved full or as deltas of the rows changed since the last save."""

    def __init__(self, seed=0):
        self.tables = {t.meta.name: t for t in make_tables(seed)}
        self.rng = np.random.default_rng(seed + 1)
        self.rows = {}
        for name, t in self.tables.items():
            if t.meta.kind == "sparse":
                self.rows[name] = {int(k): (t.values[i].copy(), {s: a[i].copy() for s, a in
                                                                   t.state.items()})
                                   for i, k in enumerate(t.keys)}
            else:
                self.rows[name] = (t.values.copy(), {s: a.copy() for s, a in t.state.items()})
        self.changed = {name: set() for name in self.tables}
        self.removed = {name: set() for name in self.tables}

    def change(self, share=0.05, new=20, drop=10):
        """Change ``share`` of each table's rows, add ``new`` sparse keys, remove ``drop``."""
        for name, t in self.tables.items():
            width = t.meta.width
            if t.meta.kind == "dense":
                values, state = self.rows[name]
                rows = self.rng.choice(t.meta.size, max(1, int(share * t.meta.size)), False)
                values[rows] = self.rng.standard_normal((rows.size, width)).astype(F)
                for a in state.values():
                    a[rows] = self.rng.random((rows.size, width), dtype=F)
                self.changed[name].update(int(r) for r in rows)
                continue
            table = self.rows[name]
            keys = np.array(sorted(table), np.uint64)
            victims = self.rng.choice(keys, min(drop, keys.size // 4), False)
            for k in victims.tolist():
                del table[k]
                self.removed[name].add(k)
                self.changed[name].discard(k)
            keys = np.array(sorted(table), np.uint64)
            picked = self.rng.choice(keys, max(1, int(share * keys.size)), False)
            fresh = self.rng.integers(0, 2**64 - 1, new, dtype=np.uint64, endpoint=True)
            keys = picked.tolist()
            if name != "few":
                keys += fresh.tolist() + victims[:2].tolist()  # two removed, then back
            for k in keys:
                table[k] = (self.rng.standard_normal(width).astype(F),
                            {s: self.rng.random(width, dtype=F) for s in t.meta.state_names})
                self.changed[name].add(k)

    def whole(self, name):
        t = self.tables[name]
        if t.meta.kind == "dense":
            values, state = self.rows[name]
            return None, values, state
        keys = np.array(sorted(self.rows[name]), np.uint64)
        values = np.array([self.rows[name][int(k)][0] for k in keys], F).reshape(-1, t.meta.width)
        state = {s: np.array([self.rows[name][int(k)][1][s] for k in keys], F).reshape(
            -1, t.meta.width) for s in t.meta.state_names}
        return keys, values, state

    def delta(self, name):
        """(changed keys, values, state, removed keys) since the last save."""
        t = self.tables[name]
        keys = np.array(sorted(self.changed[name]), np.uint64)
        if t.meta.kind == "dense":
            values, state = self.rows[name]
            rows = keys.astype(np.int64)
            return keys, values[rows], {s: a[rows] for s, a in state.items()}, \
                np.empty(0, np.uint64)
        values = np.array([self.rows[name][int(k)][0] for k in keys], F).reshape(-1, t.meta.width)
        state = {s: np.array([self.rows[name][int(k)][1][s] for k in keys], F).reshape(
            -1, t.meta.width) for s in t.meta.state_names}
        return keys, values, state, np.array(sorted(self.removed[name]), np.uint64)

    def save(self, root, step, servers, parent=None):
        per_table = []
        for name, t in self.tables.items():
            if parent is None:
                keys, values, state = self.whole(name)
                per_table.append(split_table(t.meta, servers, values, keys=keys, state=state))
            else:
                keys, values, state, removed = self.delta(name)
                per_table.append(split_table(t.meta, servers, values, keys=keys, state=state,
                                             removed=removed))
        self.changed = {name: set() for name in self.tables}
        self.removed = {name: set() for name in self.tables}
        return save_checkpoint(root, step, [list(s) for s in zip(*per_table)],
                               {"step": step}, run="r", parent=parent)

    def assert_read(self, path, servers=1):
        for name, t in self.tables.items():
            keys, values, state = self.whole(name)
            parts = [ckpt.read_table(path, name, rng)
                     for rng in RangePartition(t.meta.size, servers).ranges()]
            if t.meta.kind == "sparse":
                got = np.concatenate([p.keys for p in parts])
                order = np.argsort(got)
                np.testing.assert_array_equal(got[order], keys, err_msg=name)
            else:
                order = slice(None)
            got = np.concatenate([p.values for p in parts])[order]
            np.testing.assert_array_equal(got.view(np.uint32), values.view(np.uint32),
                                          err_msg=name)
            for s in t.meta.state_names:
                got = np.concatenate([p.state[s] for p in parts])[order]
                np.testing.assert_array_equal(got.view(np.uint32), state[s].view(np.uint32))


def test_base_plus_deltas_reads_as_the_model_on_any_number_of_servers(tmp_path):
    model = Model()
    model.save(tmp_path, 1, 2)
    for step, servers in zip(range(2, 7), (3, 1, 2, 4, 2)):
        model.change()
        model.save(tmp_path, step, servers, parent=step - 1)
        for readers in (1, 3):
            model.assert_read(tmp_path / ckpt.step_dir_name(step), readers)
    path = tmp_path / ckpt.step_dir_name(6)
    manifest = ckpt.load_manifest(path)
    assert (manifest.version, manifest.base, manifest.depth) == (ckpt.FORMAT_VERSION, 1, 5)
    assert [m.step for m in ckpt.chain_of(manifest)] == [1, 2, 3, 4, 5, 6]
    assert ckpt.verify(path, "full").ok
    info = ckpt.inspect_checkpoint(path)
    assert (info.valid, info.parent, info.base, info.depth, info.kind) == (
        True, 5, 1, 5, "delta of step 5")
    assert ckpt.load_manifest(tmp_path / ckpt.step_dir_name(1)).version == ckpt.FULL_VERSION


def test_rows_changed_since_a_step_of_the_chain(tmp_path):
    model = Model()
    model.save(tmp_path, 1, 2)
    changed, removed = set(), set()
    for step in (2, 3, 4):
        model.change()
        changed |= {int(k) for k in model.changed["w"]}
        removed |= model.removed["w"]
        model.save(tmp_path, step, 2, parent=step - 1)
    path = tmp_path / ckpt.step_dir_name(4)
    rows, gone = ckpt.read_changes(path, "w", 1)
    now = set(model.rows["w"])
    assert set(rows.keys.tolist()) == (changed | removed) & now  # re-added keys are rows
    assert set(gone.tolist()) == removed - now
    for k, v in zip(rows.keys.tolist(), rows.values):
        np.testing.assert_array_equal(v, model.rows["w"][k][0])
    assert ckpt.read_changes(path, "w", 4)[0].keys.size == 0
    with pytest.raises(BrokenChainError, match="step 7 is not in its chain \\(steps 1, 2, 3, 4"):
        ckpt.read_changes(path, "w", 7)

    out = tmp_path / "since.npz"
    proc = ckpt_cli("export", path, "w", out, "--since", 2)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as data:
        rows, gone = ckpt.read_changes(path, "w", 2)
        np.testing.assert_array_equal(data["keys"], rows.keys)
        np.testing.assert_array_equal(data["removed"], gone)
        assert json.loads(str(data["meta"]))["since"] == 2
    assert f"changed since step 2: {rows.keys.size} rows, {gone.size} keys removed" in proc.stdout
    bad = ckpt_cli("export", path, "w", out, "--since", 9)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
    assert "BrokenChainError" in bad.stderr and "step 9 is not in its chain" in bad.stderr


def test_cli_shows_chains(tmp_path):
    model = Model()
    model.save(tmp_path, 1, 2)
    model.change()
    model.save(tmp_path, 2, 3, parent=1)
    listing = ckpt_cli("ls", tmp_path)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert "delta of 1, base 1" in lines["2"] and lines["2"].endswith("valid")
    assert lines["1"].split()[-2:] == ["full", "valid"]
    inspect = ckpt_cli("inspect", tmp_path / ckpt.step_dir_name(2))
    assert inspect.returncode == 0, inspect.stderr
    assert "incremental: the rows changed since step 1 (depth 1 of the chain 1 <- 2; full " \
           "checkpoint: step 1)" in inspect.stdout
    assert "rows changed" in inspect.stdout and "keys removed" in inspect.stdout
    verify = ckpt_cli("verify", tmp_path / ckpt.step_dir_name(2))
    assert verify.returncode == 0 and "ok: chain: step-000000000001 ok" in verify.stdout


def test_a_broken_chain_is_named_and_the_newest_valid_checkpoint_is_older(tmp_path):
    model = Model()
    model.save(tmp_path, 1, 2)
    model.change()
    model.save(tmp_path, 2, 2, parent=1)
    model.change()
    model.save(tmp_path, 3, 2, parent=2)
    step2 = tmp_path / ckpt.step_dir_name(2)
    # the middle of the chain damaged: step 3 fails verification, naming step 2
    flip_bit_in_chunk(step2 / ckpt.shard_name(0, 2), "tables/w/values")
    report = ckpt.verify(tmp_path / ckpt.step_dir_name(3), "sha256")
    assert not report.ok and isinstance(report.errors[0], BrokenChainError)
    assert "it builds on step-000000000002, which fails: ChecksumError" in str(report.errors[0])
    newest = ckpt.newest_valid(tmp_path, warn=lambda message: None)
    assert newest.step == 1
    # the parent set aside and saved again under its step: another model, refused
    ckpt.set_aside(step2)
    model.save(tmp_path, 2, 2)  # full, different manifest
    with pytest.raises(BrokenChainError, match="is not the checkpoint step 3 was written on"):
        ckpt.read_table(tmp_path / ckpt.step_dir_name(3), "w")
    assert not ckpt.inspect_checkpoint(tmp_path / ckpt.step_dir_name(3)).valid
    # the parent gone altogether
    shutil.rmtree(tmp_path / ckpt.step_dir_name(2))
    with pytest.raises(BrokenChainError, match="its parent step 2 cannot be read"):
        ckpt.read_table(tmp_path / ckpt.step_dir_name(3), "w")


def test_prune_keeps_what_kept_deltas_build_on_and_drops_the_rest(tmp_path):
    model = Model()
    model.save(tmp_path, 1, 2)                     # chain 1 <- 2 <- 3
    for step in (2, 3):
        model.change()
        model.save(tmp_path, step, 2, parent=step - 1)
    model.save(tmp_path, 4, 2)                     # chain 4 <- 5 <- 6
    for step in (5, 6):
        model.change()
        model.save(tmp_path, step, 2, parent=step - 1)
    removed = ckpt.prune(tmp_path, keep_last=2, run="r")
    assert sorted(p.name for p in removed) == [ckpt.step_dir_name(s) for s in (1, 2, 3)]
    assert [i.step for i in ckpt.list_checkpoints(tmp_path)] == [6, 5, 4]
    removed = ckpt.prune(tmp_path, keep_last=1, run="r")  # 6 needs 5 and 4
    assert removed == [] and len(ckpt.list_checkpoints(tmp_path)) == 3
    model.assert_read(tmp_path / ckpt.step_dir_name(6))


def test_commit_refuses_inconsistent_chains(tmp_path):
    model = Model()
    model.save(tmp_path, 2, 2)
    model.change()
    with pytest.raises(BrokenChainError, match="step 2 is not older than 1"):
        _delta_on(model, tmp_path, 1, 2)
    with pytest.raises(InconsistentCheckpointError, match="shards of changed rows need the "
                                                          "parent they change"):
        _delta_on(model, tmp_path, 3, None)
    with pytest.raises(BrokenChainError, match="cannot build on .*step-000000000009"):
        _delta_on(model, tmp_path, 4, 9)
    with pytest.raises(InconsistentCheckpointError, match="a parent was given for shards that "
                                                          "hold every row"):
        _full_on(model, tmp_path, 5, 2)
    elsewhere = tmp_path / "other"
    model.save(elsewhere, 1, 2)
    with pytest.raises(BrokenChainError, match="must lie beside it"):
        _delta_on(model, tmp_path, 6, None, parent_dir=elsewhere / ckpt.step_dir_name(1))


def _delta_on(model, root, step, parent, parent_dir=None):
    per_table = []
    for name, t in model.tables.items():
        keys, values, state, removed = model.delta(name)
        per_table.append(split_table(t.meta, 2, values, keys=keys, state=state, removed=removed))
    directory = ckpt.prepare_checkpoint_dir(root, step)
    infos = [ckpt.write_shard(directory, i, 2, step, list(s))
             for i, s in enumerate(zip(*per_table))]
    if parent is not None:
        parent_dir = root / ckpt.step_dir_name(parent)
    return ckpt.commit(directory, step, infos, parent=parent_dir)


def _full_on(model, root, step, parent):
    per_table = []
    for name, t in model.tables.items():
        keys, values, state = model.whole(name)
        per_table.append(split_table(t.meta, 2, values, keys=keys, state=state))
    directory = ckpt.prepare_checkpoint_dir(root, step)
    infos = [ckpt.write_shard(directory, i, 2, step, list(s))
             for i, s in enumerate(zip(*per_table))]
    return ckpt.commit(directory, step, infos, parent=root / ckpt.step_dir_name(parent))


def test_delta_slices_are_validated():
    w = next(t for t in make_tables() if t.meta.name == "w")
    d = next(t for t in make_tables() if t.meta.name == "emb")
    keys = w.keys[:5]
    for removed, message in [(np.array([3, 1], np.uint64), "removed keys must be sorted"),
                             (np.array([1.0]), "removed keys must be a uint64 array"),
                             ([1, 2], "removed keys must be a uint64 array")]:
        data = ckpt.SliceData(w.meta, KeyRange(0, 2**64), w.values[:5], keys,
                              {"accum": w.state["accum"][:5]}, removed=removed)
        with pytest.raises(InvalidSliceError, match=message):
            data.validate()
    data = ckpt.SliceData(d.meta, KeyRange(0, 1000), d.values[:2], np.array([1, 2], np.uint64),
                          {"accum": d.state["accum"][:2]}, removed=np.array([1], np.uint64))
    with pytest.raises(InvalidSliceError, match="a dense table removes no keys"):
        data.validate()
    data = ckpt.SliceData(d.meta, KeyRange(0, 10), d.values[:2], np.array([1, 20], np.uint64),
                          {"accum": d.state["accum"][:2]}, removed=np.empty(0, np.uint64))
    with pytest.raises(InvalidSliceError, match="changed keys: keys leave the key range"):
        data.validate()


def test_a_manifest_that_mixes_delta_and_full_fields_is_refused(tmp_path):
    model = Model()
    model.save(tmp_path, 1, 2)
    model.change()
    path = model.save(tmp_path, 2, 2, parent=1)
    manifest = json.loads((path / ckpt.MANIFEST).read_text())
    manifest["version"] = ckpt.FULL_VERSION
    (path / ckpt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="names a parent: only incremental checkpoints"):
        ckpt.load_manifest(path)
    manifest["version"] = ckpt.FORMAT_VERSION
    manifest["parent"]["depth"] = 0
    (path / ckpt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="needs base <= step < 2, depth >= 1"):
        ckpt.load_manifest(path)
