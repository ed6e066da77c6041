"""benchmarks/consistency.py runs end to end and reports well-formed lines (a small synthetic
input, bsp and ssp:4, one repeat; never asserts on speed)."""
import json
import os
import subprocess
import sys

import pytest

from tests.helpers.launch import REPO_ROOT

KEYS = {"benchmark", "consistency", "workers", "servers", "straggler", "straggler_mode",
        "epochs", "samples_per_s", "samples_per_s_min", "samples_per_s_max", "wall_seconds",
        "wait_seconds_mean", "wait_seconds_max", "test_accuracy", "test_logloss",
        "speedup_vs_bsp", "accuracy_minus_bsp_points"}


@pytest.mark.slow
def test_consistency_benchmark_reports_bsp_and_ssp4():
    proc = subprocess.run([sys.executable, "benchmarks/consistency.py", "--synthetic", "4000",
                           "--configs", "bsp,ssp:4", "--repeats", "1", "--epochs", "1",
                           "--out", ""],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 3, proc.stdout
    configs, summary = rows[:2], rows[2]
    assert [r["consistency"] for r in configs] == ["bsp", "ssp:4"]
    for row in configs:
        assert KEYS <= row.keys()
        assert row["benchmark"] == "consistency"
        assert (row["workers"], row["servers"]) == (4, 2)
        assert (row["straggler"], row["straggler_mode"], row["epochs"]) == ("0:3", "fixed", 1)
        assert 0 < row["samples_per_s_min"] <= row["samples_per_s"] <= row["samples_per_s_max"]
        assert row["wall_seconds"] > 0
        assert 0 <= row["wait_seconds_mean"] <= row["wait_seconds_max"]
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["test_logloss"] > 0
        assert row["speedup_vs_bsp"] > 0
    bsp, ssp4 = configs
    assert bsp["speedup_vs_bsp"] == 1.0 and bsp["accuracy_minus_bsp_points"] == 0.0
    assert ssp4["accuracy_minus_bsp_points"] == round(
        100 * (ssp4["test_accuracy"] - bsp["test_accuracy"]), 3)
    assert summary["benchmark"] == "consistency" and summary["summary"] is True
    assert summary["ssp4_speedup_vs_bsp"] == ssp4["speedup_vs_bsp"]
    assert summary["ssp4_accuracy_minus_bsp_points"] == ssp4["accuracy_minus_bsp_points"]
