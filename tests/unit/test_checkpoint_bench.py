"""benchmarks/checkpoint.py runs at a tiny size and prints well-formed JSON lines
(behaviour only: speed is never asserted)."""
import json
import shutil
import subprocess
import sys

import pytest

from tests.data import REPO_ROOT, under_ci


def test_checkpoint_benchmark_prints_one_json_line_per_measurement(tmp_path):
    if shutil.which("dd") is None:  # the benchmark's floor (coreutils): required under CI
        if under_ci():
            pytest.fail("CI needs dd (coreutils) for the checkpoint benchmark's floor",
                        pytrace=False)
        pytest.skip("dd not on PATH")
    out = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/checkpoint.py", "--gib", "0.002",
                           "--servers", "2", "--restore-servers", "3", "--chunk-mib", "0.25",
                           "--dir", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["system"], r["op"], r["cache"]) for r in rows] == [
        ("dd", "write", "-"), ("mpips", "write", "-"), ("dd", "restore", "evicted"),
        ("mpips", "restore", "evicted"), ("dd", "restore", "warm"), ("mpips", "restore", "warm")]
    for row in rows:
        assert row["bytes"] == 2 << 20 and row["seconds"] > 0 and row["gb_per_s"] > 0
        assert row["fraction_of_dd"] > 0 and row["restore_servers"] == 3 and row["repeat"] == 0
    assert all(r["fraction_of_dd"] == 1.0 for r in rows if r["system"] == "dd")
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]  # scratch files removed
