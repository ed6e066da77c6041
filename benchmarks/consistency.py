"""Throughput and accuracy of sparse logistic regression under BSP, SSP and async with a straggler.

Workload: jobs/sparse_lr.py (adagrad, batch 256 rows per worker per step, --lr 0.3) on the
w8a LIBSVM data set (49749 rows, 300 features, 80/20 train/test split, seed 0) for --epochs
epochs, on 4 workers and 2 servers (6 MPI ranks). One worker is a straggler: --straggler 0:3
makes worker 0 sleep twice its own work every step (3x slower); with --straggler-mode rotating
the slow worker changes every step ((0 + step) mod 4). Each consistency model in --configs
("bsp", "ssp:TAU", "async", and "dynamic": async with --assign dynamic, workers claiming
blocks of rows as they get free, and "dynamic-ssp:TAU", the same under SSP; default bsp, ssp:1, ssp:4, ssp:16, async) runs --repeats
times, each run a separate launch:

    python -m mpips launch -n 6 --timeout T -- -m mpips run sparse_lr --servers 2 \\
        --data W8A --epochs E --lr 0.3 --quiet --straggler 0:3 --straggler-mode MODE \\
        --consistency ssp --staleness TAU

    python benchmarks/consistency.py                              # fixed straggler
    python benchmarks/consistency.py --straggler-mode rotating

For every configuration one JSON line goes to stdout (and is appended to --out, with a
"time" field): samples_per_s of the median run by samples/s (with the min and max over the
runs); that same run's test_accuracy, test_logloss and wait_seconds (mean and max over the
workers of the seconds blocked in KVWorker.wait); wall_seconds, the median over the runs of
the job's own seconds (data loading to evaluation, without mpiexec start-up);
speedup_vs_bsp and accuracy_minus_bsp_points against the bsp line (null when bsp is not in
--configs; bsp always runs first). A last line {"summary": true, ...} gives ssp:4 against
bsp, and dynamic against async (dynamic_speedup_vs_async: issue 21 asks for >= 2 with a fixed
3x straggler). --synthetic N replaces w8a with N synthetic rows of 2000 features (a quick smoke run).
A failed or timed-out launch prints the tail of its stderr and exits 1.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

from jsonlines import emit  # benchmarks/jsonlines.py, next to this script

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "w8a"
DEFAULT_CONFIGS = "bsp,ssp:1,ssp:4,ssp:16,async"
WORKERS, SERVERS = 4, 2
SYNTHETIC_FEATURES = 2000
STDERR_TAIL_LINES = 40


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", default=None,
                        help=f"LIBSVM file (default: {DEFAULT_DATA})")
    source.add_argument("--synthetic", type=int, default=None, metavar="N",
                        help=f"use N synthetic rows of {SYNTHETIC_FEATURES} features instead")
    p.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5)")
    p.add_argument("--lr", type=float, default=0.3, help="learning rate (default 0.3)")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per configuration; the median run is reported (default 3)")
    p.add_argument("--straggler", default="0:3", metavar="W:F",
                   help="slow worker W by factor F (default 0:3)")
    p.add_argument("--straggler-mode", choices=("fixed", "rotating"), default="fixed",
                   help="fixed: always worker W; rotating: worker (W + step) mod workers")
    p.add_argument("--compute-ms", type=float, default=0.0, metavar="MS",
                   help="simulated model compute per step and worker (sparse_lr "
                        "--compute-ms; default 0: w8a's own, about 0.1 ms)")
    p.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help=f"comma list of bsp, ssp:TAU, async (default {DEFAULT_CONFIGS})")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds before a launch is killed (default 600)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "consistency.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.epochs < 1:
        p.error("--repeats and --epochs must be at least 1")
    if args.synthetic is not None and args.synthetic < 1:
        p.error("--synthetic must be at least 1")
    try:
        args.config_list = parse_configs(args.configs)
    except ValueError as exc:
        p.error(str(exc))
    if args.synthetic is None:
        args.data = Path(args.data) if args.data else DEFAULT_DATA
        if not args.data.is_file():
            p.error(f"data file not found: {args.data} (download w8a from the LIBSVM data "
                    f"sets, pass --data PATH, or use --synthetic N)")
    return args


def parse_configs(text: str) -> list[str]:
    """The configurations of ``text`` ("bsp,ssp:4,async"), deduplicated, bsp first."""
    configs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.startswith(("ssp:", "dynamic-ssp:")):
            tau = item.rpartition(":")[2]
            if not tau.isdigit():
                raise ValueError(f"--configs: staleness of {item!r} must be an integer >= 0")
            item = f"{item.rpartition(':')[0]}:{int(tau)}"
        elif item not in ("bsp", "async", "dynamic"):
            raise ValueError(f"--configs: unknown configuration {item!r} "
                             "(expected bsp, ssp:TAU, async, dynamic or dynamic-ssp:TAU)")
        if item not in configs:
            configs.append(item)
    if not configs:
        raise ValueError("--configs: no configuration given")
    return sorted(configs, key=lambda c: c != "bsp")  # stable: bsp first, others as given


def consistency_options(config: str) -> list[str]:
    if config.startswith("ssp:"):
        return ["--consistency", "ssp", "--staleness", config[4:]]
    if config == "dynamic":
        return ["--consistency", "async", "--assign", "dynamic"]
    if config.startswith("dynamic-ssp:"):
        return ["--consistency", "ssp", "--staleness", config.rpartition(":")[2],
                "--assign", "dynamic"]
    return ["--consistency", config]


def job_command(args, config: str) -> list[str]:
    source = (["--synthetic", str(args.synthetic), "--features", str(SYNTHETIC_FEATURES)]
              if args.synthetic is not None else ["--data", str(args.data)])
    return [sys.executable, "-m", "mpips", "launch", "-n", str(WORKERS + SERVERS),
            "--timeout", str(args.timeout), "--",
            "-m", "mpips", "run", "sparse_lr", "--servers", str(SERVERS), *source,
            "--epochs", str(args.epochs), "--lr", str(args.lr), "--quiet",
            "--straggler", args.straggler, "--straggler-mode", args.straggler_mode,
            "--compute-ms", str(args.compute_ms), *consistency_options(config)]


class RunFailed(Exception):
    pass


def run_once(command: list[str], timeout: float) -> dict:
    """Run one launch; its metrics (the last stdout line as JSON). Raises RunFailed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    # The launcher kills its own tree at --timeout; this is the backstop in case it cannot.
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        kill_session(proc)
        out, err = proc.communicate()
        raise RunFailed(f"timed out after {timeout + 60:.0f} s", err) from None
    except BaseException:  # Ctrl-C: take the launch down with us
        kill_session(proc)
        proc.communicate()
        raise
    if proc.returncode != 0:
        reason = "timed out" if proc.returncode == 124 else f"exit code {proc.returncode}"
        raise RunFailed(reason, err or out)
    lines = out.strip().splitlines()
    try:
        result = json.loads(lines[-1])
        float(result["samples_per_s"])
    except (IndexError, ValueError, KeyError, TypeError):
        raise RunFailed("the last stdout line is not the job's metrics JSON",
                        (err or "") + "\n--- stdout ---\n" + out) from None
    return result


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of the launch this script started (its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def summarize(config: str, runs: list[dict], args, bsp: dict | None) -> dict:
    """One configuration's JSON line: the median run by samples/s and the spread."""
    ranked = sorted(runs, key=lambda r: r["samples_per_s"])
    median = ranked[(len(ranked) - 1) // 2]  # lower median: always a real run
    waits = [float(w) for w in median["wait_seconds"]]
    row = {
        "benchmark": "consistency", "consistency": config,
        "workers": WORKERS, "servers": SERVERS,
        "straggler": args.straggler, "straggler_mode": args.straggler_mode,
        "epochs": args.epochs, "lr": args.lr, "repeats": len(runs),
        "compute_ms": args.compute_ms,
        "data": (f"synthetic:{args.synthetic}x{SYNTHETIC_FEATURES}"
                 if args.synthetic is not None else args.data.name),
        "samples_per_s": round(median["samples_per_s"], 1),
        "samples_per_s_min": round(ranked[0]["samples_per_s"], 1),
        "samples_per_s_max": round(ranked[-1]["samples_per_s"], 1),
        "wall_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
        "wait_seconds_mean": round(statistics.fmean(waits), 4),
        "wait_seconds_max": round(max(waits), 4),
        "straggler_sleep_seconds": median.get("straggler_sleep_seconds"),
        "test_accuracy": median["test_accuracy"],
        "test_logloss": median["test_logloss"],
        "speedup_vs_bsp": None, "accuracy_minus_bsp_points": None,
    }
    bsp = row if config == "bsp" else bsp
    if bsp is not None:
        row["speedup_vs_bsp"] = round(row["samples_per_s"] / bsp["samples_per_s"], 3)
        row["accuracy_minus_bsp_points"] = round(
            100.0 * (row["test_accuracy"] - bsp["test_accuracy"]), 3)
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    rows: dict[str, dict] = {}
    for config in args.config_list:
        command = job_command(args, config)
        runs = []
        for repeat in range(1, args.repeats + 1):
            try:
                runs.append(run_once(command, args.timeout))
            except RunFailed as exc:
                reason, text = exc.args
                tail = "\n".join((text or "").rstrip().splitlines()[-STDERR_TAIL_LINES:])
                print(f"consistency: {config} run {repeat}/{args.repeats} failed: {reason}\n"
                      f"command: {' '.join(command)}\n--- stderr tail ---\n{tail}",
                      file=sys.stderr, flush=True)
                return 1
        rows[config] = summarize(config, runs, args, rows.get("bsp"))
        emit([rows[config]], args.out)
    ssp4, dynamic, unordered = rows.get("ssp:4", {}), rows.get("dynamic"), rows.get("async")
    versus = dynamic is not None and unordered is not None
    emit([{"benchmark": "consistency", "summary": True,
          "straggler": args.straggler, "straggler_mode": args.straggler_mode,
          "compute_ms": args.compute_ms,
          "ssp4_speedup_vs_bsp": ssp4.get("speedup_vs_bsp"),
          "ssp4_accuracy_minus_bsp_points": ssp4.get("accuracy_minus_bsp_points"),
          "dynamic_speedup_vs_async": round(dynamic["samples_per_s"] /
                                            unordered["samples_per_s"], 3) if versus else None,
          "dynamic_accuracy_minus_async_points": round(
              100.0 * (dynamic["test_accuracy"] - unordered["test_accuracy"]), 3)
          if versus else None}], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
