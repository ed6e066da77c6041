"""benchmarks/checkpoint.py runs at a tiny size and prints well-formed JSON lines
(behaviour only: speed is never asserted)."""
import json
import statistics
import shutil
import subprocess
import sys

import pytest

from tests.helpers.data import REPO_ROOT, unavailable


def test_checkpoint_benchmark_prints_one_json_line_per_measurement(tmp_path):
    if shutil.which("dd") is None:  # the benchmark's floor (coreutils)
        unavailable("dd (coreutils) for the checkpoint benchmark's floor", "dd not on PATH")
    out = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/checkpoint.py", "--gib", "0.002",
                           "--servers", "2", "--restore-servers", "3", "--chunk-mib", "0.25",
                           "--reads", "2", "--dir", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    measured, summary = rows[:-3], rows[-3:]
    # dd and mpips take turns, the order alternating per round so neither always reads second
    assert [(r["system"], r["op"], r["cache"], r["round"]) for r in measured] == [
        ("dd", "write", "-", 0), ("mpips", "write", "-", 0),
        ("dd", "restore", "evicted", 0), ("mpips", "restore", "evicted", 0),
        ("dd", "restore", "warm", 0), ("mpips", "restore", "warm", 0),
        ("mpips", "restore", "evicted", 1), ("dd", "restore", "evicted", 1),
        ("mpips", "restore", "warm", 1), ("dd", "restore", "warm", 1)]
    for row in measured:
        assert row["bytes"] == 2 << 20 and row["seconds"] > 0 and row["gb_per_s"] > 0
        assert row["restore_servers"] == 3 and row["repeat"] == 0
        floor = next(r for r in measured if r["system"] == "dd" and r["op"] == row["op"]
                     and r["cache"] == row["cache"] and r["round"] == row["round"])
        assert row["fraction_of_dd"] == pytest.approx(floor["seconds"] / row["seconds"], rel=0.01)
    # the restore floor reads the shard files themselves: the same bytes as the restore
    shard_bytes = next(r["file_bytes"] for r in measured if r["system"] == "mpips")
    assert shard_bytes > 2 << 20
    assert all(r["file_bytes"] == shard_bytes for r in measured if r["op"] == "restore")
    assert [(r["system"], r["op"], r["cache"]) for r in summary] == [
        ("summary", "write", "-"), ("summary", "restore", "evicted"),
        ("summary", "restore", "warm")]
    for s in summary:
        mine = [r for r in measured if r["op"] == s["op"] and r["cache"] == s["cache"]]
        assert s["samples"] == len(mine) // 2
        assert s["dd_seconds_median"] == pytest.approx(statistics.median(
            r["seconds"] for r in mine if r["system"] == "dd"), abs=1e-6)
        assert s["mpips_seconds_median"] == pytest.approx(statistics.median(
            r["seconds"] for r in mine if r["system"] == "mpips"), abs=1e-6)
        assert s["meets_goal"] == (s["fraction_of_dd"] >= s["goal"] == 0.5)
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]  # scratch files removed


def test_checkpoint_benchmark_refuses_zero_rounds(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/checkpoint.py", "--reads", "0",
                           "--out", ""], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=60)
    assert proc.returncode != 0 and "--reads must be at least 1" in proc.stderr
