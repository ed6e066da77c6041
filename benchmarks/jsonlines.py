"""How every benchmark reports: one JSON object per line on stdout, and the same lines
appended to a results file (benchmarks/results/*.jsonl), stamped with the time when asked."""
from __future__ import annotations

import json
import time
from pathlib import Path


def emit(rows: list[dict], path: str | None, *, stamp: bool = True, echo: bool = True) -> None:
    """Print ``rows`` as JSON lines (unless ``echo=False``) and append them to ``path``
    ('' or None: print only)."""
    for row in rows if echo else ():
        print(json.dumps(row), flush=True)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        when = {"time": time.strftime("%Y-%m-%dT%H:%M:%S")} if stamp else {}
        with open(path, "a") as fh:
            fh.writelines(json.dumps({**row, **when}) + "\n" for row in rows)
