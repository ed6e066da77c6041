"""Table size and test AUC of logistic regression on a drifting stream, with and without feature
admission and eviction (issue 19).

Each configuration is one launch of jobs/drift_lr.py (2 servers, 2 workers, BSP, one pass in
time order over --rows rows whose features drift, a share of each row's features one-off ids):

    python -m mpips launch -n 4 -- -m mpips run drift_lr --servers 2 --rows R [options]

    python benchmarks/drift.py                 # the configurations below, then the plot

Configurations (--configs, comma list of names): "none" (every pushed key gets a row and
keeps it), "admit" (--admit count:2), "evict" (--evict unseen:STEPS), "admit+evict" (--admit count:2 --evict unseen:STEPS),
"capacity" (--admit count:2 --capacity N). One JSON line per configuration (appended to
--out): final and maximum table rows (summed over the servers), keys admitted, rows evicted,
test AUC and its difference from "none" in points; the plot (--plot) shows the table's rows
over the steps of each configuration.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from jsonlines import emit  # benchmarks/jsonlines.py, next to this script

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVERS, WORKERS = 2, 2


def configurations(steps: int, capacity: int) -> dict[str, list[str]]:
    return {"none": [],
            "admit": ["--admit", "count:2"],
            "evict": ["--evict", f"unseen:{steps}"],
            "admit+evict": ["--admit", "count:2", "--evict", f"unseen:{steps}"],
            "capacity": ["--admit", "count:2", "--capacity", str(capacity)]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=200_000, help="rows in the stream")
    p.add_argument("--evict-steps", type=int, default=100,
                   help="--evict unseen:STEPS of admit+evict (default 100)")
    p.add_argument("--capacity", type=int, default=800,
                   help="--capacity (rows per server) of the capacity run (default 800)")
    p.add_argument("--configs", default="none,admit,evict,admit+evict,capacity")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "drift.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    p.add_argument("--plot", default=str(Path(__file__).parent / "results" / "drift.png"),
                   help="PNG of the table's rows over the steps ('' for none)")
    args = p.parse_args(argv)
    known = configurations(args.evict_steps, args.capacity)
    args.config_list = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.config_list if c not in known]
    if unknown or not args.config_list:
        p.error(f"--configs: unknown {unknown}; known: {', '.join(known)}")
    return args


def run(args, name: str) -> dict:
    options = configurations(args.evict_steps, args.capacity)[name]
    command = [sys.executable, "-m", "mpips", "launch", "-n", str(SERVERS + WORKERS),
               "--timeout", str(args.timeout), "--", "-m", "mpips", "run", "drift_lr",
               "--servers", str(SERVERS), "--rows", str(args.rows), *options]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write("\n".join(proc.stderr.splitlines()[-40:]) + "\n")
        raise SystemExit(f"drift: the {name!r} launch failed (exit {proc.returncode})")
    return json.loads(lines[-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    results = {name: run(args, name) for name in args.config_list}
    base = results.get("none")
    rows = []
    for name, r in results.items():
        rows.append({"bench": "drift", "config": name, "rows_in_stream": args.rows,
                     "servers": SERVERS, "workers": WORKERS, "admit": r["admit"],
                     "evict": r["evict"], "capacity": r["capacity"],
                     "final_rows": r["rows"], "max_rows": r["max_rows"],
                     "distinct_train_keys": r["distinct_train_keys"],
                     "admitted": r["admitted"], "evicted": r["evicted"],
                     "test_auc": round(r["test_auc"], 5),
                     "auc_minus_none_points": None if base is None else
                     round(100 * (r["test_auc"] - base["test_auc"]), 3),
                     "test_logloss": round(r["test_logloss"], 5), "steps": r["steps"],
                     "seconds": round(r["seconds"], 2)})
    emit(rows, args.out)
    if args.plot:
        plot(results, Path(args.plot))
    return 0


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, r in results.items():
        curve = [(c, n) for c, n in r["rows_over_clocks"] if n > 0]  # a log scale
        ax.plot([c for c, _ in curve], [n for _, n in curve],
                label=f"{name} (AUC {r['test_auc']:.4f})")
    ax.set_yscale("log")
    ax.set_xlabel("step (table clock)")
    ax.set_ylabel("rows of the weight table (all servers)")
    ax.set_title("drifting stream: admission and eviction")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
