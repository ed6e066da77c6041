"""The benchmarks run and report well-formed figures (never asserts on their speed)."""
import json
import os
import subprocess
import sys

from tests.launch import REPO_ROOT


def test_kv_throughput_reports_mpips_next_to_floor(tmp_path):
    out = tmp_path / "kv.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/kv_throughput.py", "--keys", "200000",
                           "--servers", "2", "--workers", "1", "--rounds", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=240,
                          cwd=REPO_ROOT, env={**os.environ, "MPIPS_BENCH_LAUNCHED": "",
                                              "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {(r["system"], r["op"]) for r in rows} == {
        ("mpips", "push"), ("mpips", "pull"), ("mpi-floor", "push"), ("mpi-floor", "pull")}
    for row in rows:
        assert row["keys"] == 200000 and row["servers"] == 2 and row["workers"] == 1
        assert row["mkv_per_s"] > 0
    assert all(r["correct"] for r in rows if r["system"] == "mpips")
    assert all(0 < r["fraction_of_floor"] for r in rows if r["system"] == "mpips")
    assert len(out.read_text().splitlines()) == 4
