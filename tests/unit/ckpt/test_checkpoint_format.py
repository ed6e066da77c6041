"""The checkpoint file layer (mpips.ckpt): round trips, re-partitioning, corruption, crashes."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest

from mpips.ckpt import catalog, chunkio
from mpips.ckpt import (FORMAT_VERSION, FULL_VERSION, MANIFEST, CheckpointError, CheckpointExistsError,
                        CheckpointWarning, ChecksumError, ForeignFileError, IncompleteCheckpointError,
                        InconsistentCheckpointError, InvalidSliceError, ManifestError,
                        MissingShardError, NewerFormatError, NotHDF5Error, SliceData,
                        TruncatedShardError, UnknownTableError, commit, export_npz,
                        list_checkpoints, load_manifest, newest_valid, prepare_checkpoint_dir,
                        prune, read_admission, read_clocks, read_table, save_checkpoint, verify, write_shard,
                        TableMeta)
from mpips.core.partition import KeyRange, RangePartition, positions
from tests.helpers.data import REPO_ROOT, unavailable
from tests.helpers.ckpt import (Whole, file_hashes, flip_bit_in_chunk, make_tables,
                                     slices_by_server, save)

TABLES = make_tables(seed=7)


@pytest.fixture(params=["raw", "hdf5"])
def read_path(request, monkeypatch):
    """Run a test through both read paths: raw chunks + our fletcher32 (checksums on the worker
    thread even for these small files), and HDF5's filters."""
    monkeypatch.setattr(chunkio, "RAW_PATH", request.param == "raw")
    pipelined(monkeypatch, True)
    return request.param


def pipelined(monkeypatch, on: bool) -> None:
    """Checksum every multi-chunk raw read on the worker thread (on) or inline (off)."""
    monkeypatch.setattr(chunkio, "PIPELINE_MIN_CHUNK", 0 if on else 2**62)
    monkeypatch.setattr(chunkio, "PIPELINE_MIN_BYTES", 0 if on else 2**62)


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint8)


def assert_rows_equal(rows_list, whole):
    """The concatenated pieces, in key order, equal the original table bit for bit (pieces
    of a hashed table are ranges of positions, so their keys interleave)."""
    keys = np.concatenate([r.keys for r in rows_list])
    order = np.argsort(keys, kind="stable")
    values = np.concatenate([r.values for r in rows_list])[order]
    assert np.array_equal(bits(values), bits(whole.values))
    for name, original in whole.state.items():
        state = np.concatenate([r.state[name] for r in rows_list])[order]
        assert np.array_equal(bits(state), bits(original))
    expected = whole.keys if whole.keys is not None else np.arange(whole.meta.size, dtype=np.uint64)
    assert keys.dtype == np.uint64 and np.array_equal(keys[order], expected)


def test_round_trip_and_manifest(tmp_path):
    path = save(tmp_path, 3, 2, TABLES)
    assert path.name == "step-000000000003"
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, "shard-00000-of-00002.h5",
                                                      "shard-00001-of-00002.h5"]
    for whole in TABLES:
        assert_rows_equal([read_table(path, whole.meta.name)], whole)
    manifest = json.loads((path / MANIFEST).read_text())
    assert (manifest["format"], manifest["version"], manifest["step"]) == ("mpips-checkpoint", FULL_VERSION, 3)
    assert manifest["tables"]["w"]["size"] == str(2**64) and manifest["job"] == {"step": 3}
    assert manifest["tables"]["emb"]["state_names"] == ["accum"]
    assert manifest["shards"][1]["ranges"]["w"]["end"] == str(2**64)
    assert all(len(s["sha256"]) == 64 and s["bytes"] > 0 for s in manifest["shards"])
    report = verify(path).check()
    assert report.ok and report.bytes_read > 0
    assert load_manifest(path).tables["emb"].spec(5).partition.num_servers == 5


def test_shard_attributes_are_self_describing(tmp_path):
    path = save(tmp_path, 4, 2, TABLES)
    with h5py.File(path / "shard-00001-of-00002.h5", "r") as f:
        assert f.attrs["format"] == "mpips-checkpoint" and f.attrs["format_version"] == FULL_VERSION
        assert (f.attrs["step"], f.attrs["server_index"], f.attrs["num_servers"]) == (4, 1, 2)
        w = f["tables/w"]
        assert (w.attrs["kind"], w.attrs["key_end"], w.attrs["rule"]) == ("sparse", str(2**64), "adagrad")
        assert json.loads(w.attrs["rule_params"]) == {"lr": 0.05}
        assert w["values"].fletcher32 and w["keys"].dtype == np.uint64 and w["state/accum"].chunks
        assert "keys" not in f["tables/emb"] and f["tables/emb"].attrs["key_begin"] == "500"


@pytest.mark.parametrize("chunk_bytes", [4 << 20, 500], ids=["chunk4MiB", "chunk500B"])
@pytest.mark.parametrize("old,new", [(1, 3), (3, 2), (2, 2)])
def test_repartition_reads_every_key_range(tmp_path, old, new, chunk_bytes, read_path):
    path = save(tmp_path, 1, old, TABLES, chunk_bytes=chunk_bytes)
    for whole in TABLES:
        ranges = RangePartition(whole.meta.size, new).ranges()
        pieces = [read_table(path, whole.meta.name, r) for r in ranges]
        for piece, rng in zip(pieces, ranges):
            placed = positions(piece.keys, whole.meta.hashed)
            assert all(int(k) in rng for k in placed) and len(piece.values) == len(piece.keys)
            assert np.all(piece.keys[1:] > piece.keys[:-1])  # sorted, whatever the placement
        assert_rows_equal(pieces, whole)


def test_a_format_1_checkpoint_still_loads(tmp_path):
    """Checkpoints written before format 2 (no placement anywhere: every table range
    placed) read as before, also into hash-placed tables."""
    few = TABLES[3]
    w = TABLES[2]
    ranged = Whole(TableMeta(**{**w.meta.__dict__, "placement": "range"}), w.keys, w.values,
                   w.state)
    path = save(tmp_path, 1, 2, [ranged, few])
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["version"] = 1
    for table in manifest["tables"].values():
        del table["placement"]
    for shard in path.glob("shard-*.h5"):
        with h5py.File(shard, "r+") as f:
            f.attrs["format_version"] = 1
            for group in f["tables"].values():
                del group.attrs["placement"]
    (path / MANIFEST).write_text(json.dumps(manifest))
    for shard in manifest["shards"]:  # the manifest's sha256 of each shard, as written then
        shard["sha256"] = hashlib.sha256((path / shard["file"]).read_bytes()).hexdigest()
        shard["bytes"] = (path / shard["file"]).stat().st_size
    (path / MANIFEST).write_text(json.dumps(manifest))
    assert verify(path).check().ok
    assert load_manifest(path).table("w").placement == "range"
    assert_rows_equal([read_table(path, "w")], w)
    assert_rows_equal([read_table(path, "few")], few)
    halves = RangePartition(2**64, 2).ranges()
    assert_rows_equal([read_table(path, "w", r, placement="hash") for r in halves], w)


@pytest.mark.parametrize("placement", ["hash", "range"])
def test_a_sparse_table_restores_under_the_other_placement(tmp_path, placement):
    """Checkpoints of either placement (and those written before hash placement existed,
    which are range placed) restore into a table of either placement."""
    w = TABLES[2]
    path = save(tmp_path, 1, 3, [Whole(TableMeta(**{**w.meta.__dict__, "placement": placement}),
                                       w.keys, w.values, w.state)])
    other = "range" if placement == "hash" else "hash"
    pieces = [read_table(path, "w", r, placement=other)
              for r in RangePartition(2**64, 2).ranges()]
    for piece, rng in zip(pieces, RangePartition(2**64, 2).ranges()):
        assert all(int(p) in rng for p in positions(piece.keys, other == "hash"))
    assert_rows_equal(pieces, w)


def test_odd_key_ranges_and_direct_reads(tmp_path, read_path):
    path = save(tmp_path, 1, 3, TABLES, chunk_bytes=256)
    emb = TABLES[0]
    out = np.zeros((400, 2), np.float32)
    accum = np.zeros((400, 2), np.float32)
    rows = read_table(path, "emb", KeyRange(300, 700), out_values=out, out_state={"accum": accum},
                      dense_keys=False)
    assert rows.values is out and rows.state["accum"] is accum and rows.keys is None
    assert np.array_equal(out, emb.values[300:700]) and np.array_equal(accum, emb.state["accum"][300:700])
    assert read_table(path, "few", KeyRange(2, 9)).keys.tolist() == [5]
    assert read_table(path, "few", KeyRange(10, 2**64)).values.shape == (0, 1)
    top = int(positions(np.array([2**64 - 1], np.uint64), True)[0])  # w is hash placed
    assert read_table(path, "w", KeyRange(top, top + 1)).keys.tolist() == [2**64 - 1]
    with pytest.raises(UnknownTableError, match="no table 'nope'.*tables: bias, emb, few, w"):
        read_table(path, "nope")
    with pytest.raises(ValueError, match="exceeds table 'emb'"):
        read_table(path, "emb", KeyRange(0, 1001))


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compression_round_trip(tmp_path, compression):
    path = save(tmp_path, 2, 2, TABLES, compression=compression, chunk_bytes=4096)
    with h5py.File(path / "shard-00000-of-00002.h5", "r") as f:
        assert f["tables/w/values"].compression == compression
    verify(path).check()
    for whole in TABLES:
        assert_rows_equal([read_table(path, whole.meta.name)], whole)


def test_admission_sketches_are_saved_checked_and_read_by_key_range(tmp_path):
    """A sparse slice's admission sketch travels in its shard (fletcher32-checked like every
    dataset); reading a key range gives the sketches of the shards that hold it: one when the
    layout is the same, both of two for the whole range."""
    slices = slices_by_server(TABLES, 2)
    sketches = [np.full((4, 64), server + 1, np.uint32) for server in range(2)]
    for server, row in enumerate(slices):
        sparse = next(s for s in row if s.meta.name == "w")
        sparse.admission = sketches[server]
    path = save_checkpoint(tmp_path, 5, slices)
    assert verify(path).check().ok
    with h5py.File(path / "shard-00000-of-00002.h5", "r") as f:  # mostly zeros: compressed
        assert f["tables/w/admission"].compression == "lzf" and f["tables/w/admission"].fletcher32
    halves = RangePartition(2**64, 2).ranges()
    for server, half in enumerate(halves):
        got = read_admission(path, "w", half)
        assert len(got) == 1 and np.array_equal(got[0], sketches[server])
    assert [int(a[0, 0]) for a in read_admission(path, "w", KeyRange(0, 2**64))] == [1, 2]
    assert read_admission(path, "w", halves[0], placement="range") != []  # another placement
    assert read_admission(path, "emb", KeyRange(0, 500)) == []  # saved none
    flip_bit_in_chunk(path / "shard-00001-of-00002.h5", "tables/w/admission")
    with pytest.raises(ChecksumError, match="admission"):
        read_admission(path, "w", halves[1])


def test_an_admission_sketch_of_a_dense_table_or_another_dtype_is_refused(tmp_path):
    slices = slices_by_server(TABLES, 1)
    dense = next(s for s in slices[0] if s.meta.kind == "dense")
    dense.admission = np.zeros((4, 8), np.uint32)
    with pytest.raises(InvalidSliceError, match="admission sketch is a 2-D uint32 array of a "
                                                "sparse table"):
        save_checkpoint(tmp_path, 1, slices)


def test_clocks_and_export(tmp_path):
    slices = slices_by_server(TABLES, 2)
    for server, row in enumerate(slices):
        row[0].clocks = np.array([server, 7, 9], np.int64)
    path = save_checkpoint(tmp_path, 9, slices)
    clocks = read_clocks(path, "emb")
    assert sorted(clocks) == [0, 1] and clocks[1].tolist() == [1, 7, 9]
    assert read_clocks(path, "w") == {}
    out = export_npz(path, "w", tmp_path / "w.npz")
    with np.load(out) as z:
        assert sorted(z.files) == ["keys", "meta", "state_accum", "values"]
        assert np.array_equal(z["keys"], TABLES[2].keys)
        assert np.array_equal(bits(z["state_accum"]), bits(TABLES[2].state["accum"]))
        assert json.loads(str(z["meta"]))["step"] == 9


def test_invalid_slices_are_refused_before_writing(tmp_path):
    w = TABLES[2]
    rng = KeyRange(0, 2**64)
    bad = [SliceData(w.meta, rng, w.values, w.keys[::-1].copy(), w.state),
           SliceData(w.meta, rng, w.values.astype(np.float64), w.keys, w.state),
           SliceData(w.meta, rng, w.values, w.keys, {}),
           SliceData(w.meta, KeyRange(0, 10), w.values, w.keys, w.state),
           SliceData(TABLES[0].meta, KeyRange(0, 999), TABLES[0].values, None, TABLES[0].state)]
    directory = prepare_checkpoint_dir(tmp_path, 1)
    for data in bad:
        with pytest.raises(InvalidSliceError, match="table '(w|emb)'"):
            write_shard(directory, 0, 1, 1, [data])
    assert list(directory.iterdir()) == []


def test_existing_step_is_never_clobbered(tmp_path):
    path = save(tmp_path, 5, 2, TABLES)
    before = file_hashes(tmp_path)
    with pytest.raises(CheckpointExistsError, match="step-000000000005.*refusing to overwrite"):
        save(tmp_path, 5, 3, make_tables(seed=1))
    with pytest.raises(CheckpointExistsError):
        write_shard(path, 0, 2, 5, slices_by_server(TABLES, 2)[0])
    infos = [write_shard(tmp_path / "other", i, 2, 5, s)
             for i, s in enumerate(slices_by_server(TABLES, 2))]
    with pytest.raises(CheckpointExistsError):
        commit(path, 5, infos)
    assert file_hashes(tmp_path / path.name) == {k.split("/", 1)[1]: v for k, v in before.items()}


def test_crashed_leftover_is_reused(tmp_path):
    directory = prepare_checkpoint_dir(tmp_path, 6)
    (directory / "shard-00000-of-00004.h5").write_bytes(b"half a shard")
    (directory / "shard-00001-of-00002.h5.tmp-1-ab").write_bytes(b"tmp")
    (directory / "notes.txt").write_text("user file")
    assert not list_checkpoints(tmp_path)[0].valid
    path = save(tmp_path, 6, 2, TABLES)
    verify(path).check()
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, "notes.txt",
                                                      "shard-00000-of-00002.h5",
                                                      "shard-00001-of-00002.h5"]


def test_commit_checks_shards(tmp_path):
    directory = prepare_checkpoint_dir(tmp_path, 2)
    infos = [write_shard(directory, i, 3, 2, s) for i, s in enumerate(slices_by_server(TABLES, 3))]
    with pytest.raises(InconsistentCheckpointError, match="servers \\[0, 2\\], expected 0..2"):
        commit(directory, 2, [infos[0], infos[2]])
    with pytest.raises(InconsistentCheckpointError, match="step 3"):
        commit(directory, 3, infos)
    with pytest.raises(ManifestError, match="not JSON-serialisable"):
        commit(directory, 2, infos, {"bad": object()})
    assert not (directory / MANIFEST).exists()
    commit(directory, 2, infos, {"loss": 0.25})
    assert load_manifest(directory).job == {"loss": 0.25}


# ---------------------------------------------------------------------------- corruption

def _truncate(path):
    shard = path / "shard-00001-of-00003.h5"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])


def _bitflip(path):
    flip_bit_in_chunk(path / "shard-00001-of-00003.h5", "tables/w/values")


def _foreign(path):
    shard = path / "shard-00001-of-00003.h5"
    shard.unlink()
    with h5py.File(shard, "w") as f:
        f.create_dataset("data", data=np.arange(10))


def _garbage(path):
    (path / "shard-00001-of-00003.h5").write_bytes(os.urandom(5000))


def _newer(path):
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["version"] = 99
    (path / MANIFEST).write_text(json.dumps(manifest))


def _missing(path):
    (path / "shard-00001-of-00003.h5").unlink()


def _incomplete(path):
    (path / MANIFEST).unlink()


def _swapped(path):
    a, b = path / "shard-00000-of-00003.h5", path / "shard-00001-of-00003.h5"
    a.rename(path / "x")
    b.rename(a)
    (path / "x").rename(b)


def _disagree(path):
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["tables"]["emb"]["rule_params"] = {"lr": 0.5}
    (path / MANIFEST).write_text(json.dumps(manifest))


CORRUPTIONS = {  # how to break step 11 → (error class, text the message must contain)
    "truncated": (_truncate, TruncatedShardError, "shard-00001-of-00003.h5: truncated"),
    "bitflip": (_bitflip, ChecksumError, "shard-00001-of-00003.h5: sha256 mismatch"),
    "foreign": (_foreign, ForeignFileError, "shard-00001-of-00003.h5: an HDF5 file but not an mpips"),
    "garbage": (_garbage, NotHDF5Error, "shard-00001-of-00003.h5: not an HDF5 file"),
    "newer": (_newer, NewerFormatError, f"written by a newer mpips (format 99, this reads ≤ {FORMAT_VERSION})"),
    "missing": (_missing, MissingShardError, "shard-00001-of-00003.h5: missing"),
    "incomplete": (_incomplete, IncompleteCheckpointError, "step-000000000011: no MANIFEST.json"),
    "swapped": (_swapped, InconsistentCheckpointError, "disagree with the manifest"),
    "disagree": (_disagree, InconsistentCheckpointError, "rule_params={'lr': 0.05}"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corruption_is_named_skipped_and_never_overwrites(tmp_path, kind):
    corrupt, error, text = CORRUPTIONS[kind]
    save(tmp_path, 10, 2, TABLES)
    bad = save(tmp_path, 11, 3, make_tables(seed=11))
    corrupt(bad)
    before = file_hashes(tmp_path)
    with pytest.raises(error) as info:
        verify(bad).check()
    assert text in str(info.value) and isinstance(info.value, CheckpointError)
    with pytest.raises(CheckpointError) as info:
        for name in ("emb", "w", "few", "bias"):
            read_table(bad, name)
    assert isinstance(info.value, error if kind != "bitflip" else ChecksumError)
    if kind == "bitflip":
        assert "tables/w/values" in str(info.value) or "'w' values" in str(info.value)
    warnings = []
    found = newest_valid(tmp_path, warn=warnings.append)
    assert found.step == 10 and verify(found.path).ok
    assert len(warnings) == 1 and "step-000000000011" in warnings[0]
    with pytest.warns(CheckpointWarning, match="skipping checkpoint .*step-000000000011"):
        newest_valid(tmp_path)
    listing = list_checkpoints(tmp_path, level="full")
    assert [(i.step, i.valid) for i in listing] == [(10, True), (11, False)]
    assert error.__name__ in listing[1].reason
    if kind != "incomplete":
        with pytest.raises(CheckpointExistsError):
            save(tmp_path, 11, 2, TABLES)
    assert prune(tmp_path, keep_last=1) == []
    assert file_hashes(tmp_path) == before


def test_bitflip_full_verify_names_the_dataset(tmp_path, read_path):
    path = save(tmp_path, 1, 2, TABLES)
    flip_bit_in_chunk(path / "shard-00000-of-00002.h5", "tables/emb/state/accum")
    report = verify(path, level="full")
    assert [type(e) for e in report.errors] == [ChecksumError, ChecksumError]
    assert "table 'emb' dataset state/accum" in str(report.errors[1])
    assert verify(path, level="quick").ok  # metadata intact: only checksums see it
    with pytest.raises(ChecksumError, match="shard-00000-of-00002.h5.*'emb' state/accum"):
        read_table(path, "emb", KeyRange(0, 10))
    assert read_table(path, "emb", KeyRange(500, 1000)).values.shape == (500, 2)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        read_table(path, "emb", KeyRange(0, 10), check_sha256_first=True)


def test_bad_manifests(tmp_path):
    path = save(tmp_path, 1, 2, TABLES)
    text = (path / MANIFEST).read_text()
    (path / MANIFEST).write_text("{not json")
    with pytest.raises(ManifestError, match="MANIFEST.json: unreadable or not JSON"):
        verify(path).check()
    evil = json.loads(text)
    evil["shards"][0]["file"] = "../../etc/passwd"
    (path / MANIFEST).write_text(json.dumps(evil))
    with pytest.raises(ManifestError, match="is not named 'shard-00000-of-00002.h5'"):
        verify(path).check()
    gap = json.loads(text)
    gap["shards"][1]["ranges"]["emb"]["begin"] = "501"
    (path / MANIFEST).write_text(json.dumps(gap))
    with pytest.raises(ManifestError, match="starts at key 501, expected 500"):
        read_table(path, "emb")
    (path / MANIFEST).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ManifestError, match="not an mpips checkpoint manifest"):
        load_manifest(path)


def test_listing_newest_valid_and_prune(tmp_path):
    assert list_checkpoints(tmp_path / "none") == [] and newest_valid(tmp_path / "none") is None
    for step in (1, 2, 3, 4, 5):
        save(tmp_path, step, 1 + step % 2, TABLES[:2])
    prepare_checkpoint_dir(tmp_path, 6)  # a save in progress
    (tmp_path / "step-junk").mkdir()
    listing = list_checkpoints(tmp_path)
    assert [(i.step, i.valid) for i in listing] == [(5, True), (4, True), (3, True), (2, True),
                                                   (1, True), (6, False)]
    assert "IncompleteCheckpointError" in listing[-1].reason
    assert listing[0].num_servers == 2 and sorted(listing[0].tables) == ["bias", "emb"]
    assert newest_valid(tmp_path, warn=lambda m: None).step == 5
    removed = prune(tmp_path, keep_last=2)
    assert [p.name for p in removed] == ["step-000000000003", "step-000000000002",
                                         "step-000000000001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000000004",
                                                         "step-000000000005",
                                                         "step-000000000006", "step-junk"]
    flip_bit_in_chunk(tmp_path / "step-000000000005" / "shard-00000-of-00002.h5", "tables/emb/values")
    assert prune(tmp_path, keep_last=1) == []  # 5 is corrupt: 4 is the newest valid, kept
    with pytest.raises(ValueError):
        prune(tmp_path, keep_last=0)


# ------------------------------------------------------------------------ crash injection

@pytest.mark.slow
def test_sigkill_mid_write_always_leaves_a_valid_checkpoint(tmp_path):
    """A writer SIGKILLed at 50 points (every protocol step, then random delays) while it
    saves step 11 over a root holding step 10: newest_valid is 10 or 11 and verifies."""
    template = tmp_path / "template"
    save(template, 10, 2, TABLES)
    valid_hashes = file_hashes(template)
    roots = [tmp_path / f"root{i:02d}" for i in range(50)]
    for root in roots:
        shutil.copytree(template, root)
    plan = {"calibrate_root": str(tmp_path / "calibrate"), "roots": [str(r) for r in roots],
            "step": 11, "num_servers": 3, "seed": 1234}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    proc = subprocess.run([sys.executable, "-m", "tests.helpers.ckpt", str(tmp_path / "plan.json")],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    calib, *trials = [json.loads(line) for line in proc.stdout.splitlines()]
    assert not calib["killed"] and len(calib["points"]) >= 10 and len(trials) == 50
    assert sum(t["killed"] for t in trials) >= 25
    outcomes = set()
    for root in roots:
        info = newest_valid(root, warn=lambda m: None, level="full")
        assert info is not None and info.step in (10, 11), root
        verify(info.path).check()
        outcomes.add(info.step)
        assert {k: v for k, v in file_hashes(root).items() if k.startswith("step-000000000010")} \
            == valid_hashes
        if info.step == 10:  # the interrupted step can be saved again
            verify(save(root, 11, 3, make_tables(seed=11, scale=30))).check()
    assert outcomes == {10, 11}


# ------------------------------------------------------------- raw reads, chunk by chunk

ROWS, CHUNK, WIDTH = 1000, 64, 3  # 16 chunks of 768 bytes, the last one partial


def _chunked_file(tmp_path):
    """One fletcher32 dataset written by chunkio.write_chunks, and its rows."""
    rows = np.random.default_rng(5).standard_normal((ROWS, WIDTH)).astype(np.float32)
    path = tmp_path / "chunks.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("d", (ROWS, WIDTH), np.float32, chunks=(CHUNK, WIDTH),
                                fletcher32=True)
        chunkio.write_chunks(dset, rows)
    return path, rows


def _rewrite_chunk(path, k: int, edit) -> None:
    """Store ``edit(stored bytes)`` as chunk k (stored bytes = data + 4 checksum bytes)."""
    with h5py.File(path, "r+") as f:
        dset = f["d"]
        _, raw = dset.id.read_direct_chunk((k * CHUNK, 0))
        dset.id.write_direct_chunk((k * CHUNK, 0), bytes(edit(bytearray(raw))))


def _flip(raw: bytearray) -> bytearray:
    raw[5] ^= 0x10
    return raw


def _read(path, start, stop, into: str):
    """read_rows of rows [start, stop) into an array or block by block: (the array or the
    concatenated blocks, the ChecksumError raised or None)."""
    out = np.zeros((stop - start, WIDTH), np.float32) if into == "out" else None
    blocks, error = [np.zeros((0, WIDTH), np.float32)], None
    with h5py.File(path, "r") as f:
        try:
            chunkio.read_rows(path, "d", f["d"], start, stop, out=out,
                              on_block=lambda b: blocks.append(b.copy()))
        except ChecksumError as exc:
            error = exc
    return (out if out is not None else np.concatenate(blocks)), error


def _workers() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("mpips-fletcher")]


@pytest.mark.parametrize("into", ["out", "blocks"])
@pytest.mark.parametrize("on", [True, False], ids=["pipelined", "inline"])
def test_raw_reads_every_row_range(tmp_path, monkeypatch, on, into):
    """Direct reads spill each chunk's checksum into the next chunk's rows: every stored
    checksum must be taken before the next read overwrites it, whatever the alignment."""
    pipelined(monkeypatch, on)
    path, rows = _chunked_file(tmp_path)
    for start, stop in [(0, ROWS), (0, 640), (64, 128), (5, 999), (63, 65), (130, 131)]:
        got, error = _read(path, start, stop, into)
        assert error is None and np.array_equal(bits(got), bits(rows[start:stop])), (start, stop)
    assert not _workers()


@pytest.mark.parametrize("into", ["out", "blocks"])
@pytest.mark.parametrize("on", [True, False], ids=["pipelined", "inline"])
def test_raw_reads_name_the_first_bad_chunk(tmp_path, monkeypatch, on, into):
    """Chunks 5 and 9 damaged: chunk 5 is named with its rows, only chunks 0-4 are handed on
    as verified, and no worker thread outlives the error."""
    pipelined(monkeypatch, on)
    path, rows = _chunked_file(tmp_path)
    _rewrite_chunk(path, 9, _flip)
    _rewrite_chunk(path, 5, _flip)
    got, error = _read(path, 10, ROWS, into)
    assert isinstance(error, ChecksumError) and not _workers()
    assert str(error).startswith(f"{path}: d chunk 5 (rows [320, 384)): fletcher32 mismatch")
    assert np.array_equal(bits(got[:320 - 10]), bits(rows[10:320]))
    if into == "blocks":
        assert len(got) == 320 - 10


@pytest.mark.parametrize("on", [True, False], ids=["pipelined", "inline"])
def test_raw_reads_report_bad_sizes_in_file_order(tmp_path, monkeypatch, on):
    """A chunk stored without its checksum, or longer than a chunk can be, is named; a bad
    checksum in an earlier chunk is still the one reported."""
    pipelined(monkeypatch, on)
    path, _ = _chunked_file(tmp_path)
    _rewrite_chunk(path, 7, lambda raw: raw[:-4])
    _, error = _read(path, 0, ROWS, "out")
    assert "d chunk 7 (rows [448, 512)): stored as 768 bytes with filter mask 0, expected " \
           "768 + 4 checksum bytes" in str(error)
    _rewrite_chunk(path, 3, lambda raw: raw + b"xx")
    _, error = _read(path, 0, ROWS, "blocks")
    assert "d chunk 3 (rows [192, 256)): " in str(error), error
    _rewrite_chunk(path, 2, _flip)
    _, error = _read(path, 0, ROWS, "out")
    assert "d chunk 2 (rows [128, 192)): fletcher32 mismatch" in str(error)
    assert not _workers()


# ---------------------------------------------------------------------------- HDF5 tools

def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable("the HDF5 command-line tools", f"{name} not on PATH (Debian package "
                    f"hdf5-tools)")
    return path


def test_h5dump_and_h5ls_read_every_shard(tmp_path):
    h5dump, h5ls = _tool("h5dump"), _tool("h5ls")
    path = save(tmp_path, 1, 2, TABLES)
    for shard in sorted(path.glob("shard-*.h5")):
        header = subprocess.run([h5dump, "-H", str(shard)], capture_output=True, text=True, timeout=60)
        assert header.returncode == 0, header.stderr
        assert 'ATTRIBUTE "format"' in header.stdout and 'GROUP "emb"' in header.stdout
        listing = subprocess.run([h5ls, "-r", str(shard)], capture_output=True, text=True, timeout=60)
        assert listing.returncode == 0, listing.stderr
        for name in ("/tables/emb/values", "/tables/emb/state/accum", "/tables/w/keys",
                     "/tables/few/values", "/tables/bias/values"):
            assert name in listing.stdout, listing.stdout
    # Debian's HDF5 reads the chunks mpips wrote directly, checking their fletcher32 itself.
    data = subprocess.run([h5dump, "-d", "/tables/emb/values", str(path / "shard-00000-of-00002.h5")],
                          capture_output=True, text=True, timeout=60)
    assert data.returncode == 0 and "(0,0): " in data.stdout, data.stderr
    first = float(data.stdout.split("(0,0): ")[1].split(",")[0])
    assert first == pytest.approx(float(TABLES[0].values[0, 0]), rel=1e-5)  # 6 digits printed


def test_a_prune_killed_mid_delete_leaves_nothing_behind_after_the_next_prune(tmp_path):
    """SIGKILL after the rename to .pruned-*, inside the delete: the next prune removes it."""
    for step in (1, 2, 3):
        save(tmp_path, step, 2, TABLES[:2])
    pid = os.fork()
    if pid == 0:  # the writer dies inside prune's rmtree, with the tomb renamed but not deleted
        catalog.shutil.rmtree = lambda path, **kw: os.kill(os.getpid(), signal.SIGKILL)
        prune(tmp_path, keep_last=2)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert [p.name.startswith(".pruned-step-000000000001-") for p in tmp_path.glob(".pruned-*")] == [True]
    save(tmp_path, 4, 2, TABLES[:2])
    assert [p.name for p in prune(tmp_path, keep_last=2)] == ["step-000000000002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000000003", "step-000000000004"]
