"""Reading what a launch printed: a program's RESULT line, a job's final metrics line."""
from __future__ import annotations

import json

from mpips.cli.sweep import last_json


def result_of(proc) -> dict:
    """The JSON a program printed on its RESULT line; fails with the output otherwise."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"expected one RESULT line\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[0][len("RESULT "):])


def final_metrics(proc) -> dict:
    """The metrics JSON a job prints as its last JSON line; fails with the output otherwise."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    metrics = last_json(proc.stdout)
    assert metrics is not None, f"no JSON line in the output\n{proc.stdout}\n{proc.stderr}"
    return metrics
