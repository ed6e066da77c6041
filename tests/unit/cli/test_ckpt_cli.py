"""``mpips ckpt ls|inspect|verify|export`` run as a user would: ``python -m mpips ckpt ...``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mpips.ckpt import FULL_VERSION
from tests.helpers.ckpt import ckpt_cli, file_hashes, flip_bit_in_chunk, make_tables, save

TABLES = make_tables(seed=3)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """step 1 valid (2 servers), step 2 with a flipped bit (3 servers), step 3 incomplete."""
    root = tmp_path_factory.mktemp("ckpts")
    save(root, 1, 2, TABLES)
    bad = save(root, 2, 3, TABLES)
    flip_bit_in_chunk(bad / "shard-00002-of-00003.h5", "tables/w/values")
    (root / "step-000000000003").mkdir()
    return root


def test_ls_shows_valid_and_invalid_with_reasons(root):
    proc = ckpt_cli("ls", root, "--level", "sha256")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["STEP", "SERVERS", "SIZE", "TABLES", "KIND", "STATUS"]
    assert lines[1].split()[:2] == ["1", "2"] and lines[1].split()[-2:] == ["full", "valid"]
    assert "bias,emb,few,w" in lines[1]
    assert lines[2].split()[:2] == ["3", "-"] and "IncompleteCheckpointError" in lines[2]
    assert lines[3].split()[:2] == ["2", "3"] and "INVALID (ChecksumError" in lines[3]
    assert "shard-00002-of-00003.h5: sha256 mismatch" in lines[3]
    missing = ckpt_cli("ls", root / "nowhere")
    assert missing.returncode == 2
    assert missing.stderr == f"mpips ckpt ls: error: {root / 'nowhere'}: no such directory\n"


def test_inspect_shows_tables_ranges_rules_and_shapes(root):
    proc = ckpt_cli("inspect", root / "step-000000000001")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"step 1, format version {FULL_VERSION}, 2 server(s)" in out and 'job: {"step": 1}' in out
    assert "table 'emb': dense, size 1000, width 2, rule adagrad {\"lr\": 0.05}" in out
    assert "shard-00001-of-00002.h5: keys [500, 1000), 500 rows" in out
    assert "state/accum (500, 2) float32" in out and "fletcher32" in out
    assert f"hashed positions [9223372036854775808, {2**64})" in out  # table w
    assert "placement hash" in out and "placement range" in out
    proc = ckpt_cli("inspect", root / "step-000000000003")
    assert proc.returncode == 1 and "IncompleteCheckpointError" in proc.stderr


def test_verify_exit_codes(root):
    good = ckpt_cli("verify", root / "step-000000000001")
    assert good.returncode == 0, good.stderr
    assert "OK:" in good.stdout and "fletcher32 checksum ok" in good.stdout
    bad = ckpt_cli("verify", "-q", root / "step-000000000002")
    assert bad.returncode == 1
    assert "error: ChecksumError:" in bad.stderr and "shard-00002-of-00003.h5" in bad.stderr
    assert "table 'w' dataset values" in bad.stderr and "FAILED" in bad.stderr
    assert ckpt_cli("verify", "--level", "quick", root / "step-000000000002").returncode == 0


def test_verify_says_what_a_path_that_is_no_checkpoint_is(root, tmp_path):
    """A missing path is not "not a directory", a checkpoint root not an "incomplete
    checkpoint": one line each, exit 2 (the user named the wrong thing)."""
    missing = ckpt_cli("verify", tmp_path / "nowhere")
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr == (f"mpips ckpt verify: error: {tmp_path / 'nowhere'}: no such file "
                              "or directory\n")
    whole = ckpt_cli("verify", root)
    assert whole.returncode == 2 and whole.stderr.count("\n") == 1, whole.stderr
    assert whole.stderr.startswith(f"mpips ckpt verify: error: {root}: this is a checkpoint root "
                                   f"holding 3 checkpoint(s), not a checkpoint: give one of "
                                   f"them: {root / 'step-000000000003'}, ")
    inspect = ckpt_cli("inspect", root)
    assert inspect.returncode == 2 and "checkpoint root holding 3" in inspect.stderr


def test_export_writes_npz(root, tmp_path):
    before = file_hashes(root)
    out = tmp_path / "emb.npz"
    proc = ckpt_cli("export", root / "step-000000000001", "emb", out, "--begin", 10, "--end", 20)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as z:
        assert z["keys"].tolist() == list(range(10, 20))
        assert np.array_equal(z["values"], TABLES[0].values[10:20])
        assert np.array_equal(z["state_accum"], TABLES[0].state["accum"][10:20])
        assert json.loads(str(z["meta"]))["rule"] == "adagrad"
    proc = ckpt_cli("export", root / "step-000000000001", "nope", out)
    assert proc.returncode == 1 and "UnknownTableError" in proc.stderr and "no table 'nope'" in proc.stderr
    proc = ckpt_cli("export", root / "step-000000000002", "w", tmp_path / "w.npz")
    assert proc.returncode == 1 and "ChecksumError" in proc.stderr
    assert not (tmp_path / "w.npz").exists() and file_hashes(root) == before


def test_help_of_every_subcommand():
    for sub in ("ls", "inspect", "verify", "export"):
        proc = ckpt_cli(sub, "--help")
        assert proc.returncode == 0 and "usage: mpips ckpt " + sub in proc.stdout
