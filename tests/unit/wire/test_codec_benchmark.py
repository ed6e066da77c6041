"""benchmarks/codec.py runs on a tiny input and reports well-formed JSON lines (never asserts
on speed: the machine is shared)."""
import json
import os
import subprocess
import sys

from tests.helpers.data import REPO_ROOT

KERNELS = {"varint_encode", "varint_decode", "key_signature", "zero_drop", "zero_expand",
           "fp16_encode", "fp16_decode", "fixed8_encode", "fixed8_decode", "merge2", "merge_k4"}
FIELDS = {"kernel", "impl", "n", "bytes_in", "bytes_out", "seconds", "gb_per_s"}


def test_codec_benchmark_reports_every_kernel(tmp_path):
    out = tmp_path / "codec.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/codec.py", "--n", "3000", "--repeat", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=240,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {(r["kernel"], r["impl"]) for r in rows} == {
        (k, impl) for k in KERNELS for impl in ("numba", "numpy")}
    for row in rows:
        assert set(row) == FIELDS, row
        assert row["n"] == 3000 and row["bytes_in"] > 0 and row["bytes_out"] > 0
        assert row["seconds"] >= 0 and row["gb_per_s"] >= 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


def test_codec_benchmark_without_output_file(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "codec.py"), "--n",
                           "100", "--repeat", "1", "--out", ""], capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len([line for line in proc.stdout.splitlines() if line.startswith("{")]) == 22
    assert not list(tmp_path.iterdir())
