"""Matrix factorization: ratings per second of ``mpips run mf`` on servers and workers next to
scikit-surprise's SVD (one process, its Cython loop) and to the same per-rating SGD kernel run
in one process without a parameter server, all on the same planted ratings in one run.

    python benchmarks/mf.py                          # 10M ratings, 4 ranks (2 servers, 2 workers)
    python benchmarks/mf.py --ratings 1000000 --epochs 2 --out ''

The ratings are ``make_ratings(--ratings, --users, --items, rank 5, noise 0.3)`` (users and
items drawn with a Zipf(1.1) tail), split 80/20 with seed 0, as ``mpips run mf --synthetic``
makes them on every rank. Each system trains --epochs epochs of rank --rank (lr 0.005, reg
0.02) and is scored on the same test ratings:

- mpips: ``mpips launch -n --ranks -- -m mpips run mf --servers --servers --synthetic ...``;
  its rate is the training ratings of all workers over the slowest worker's training time
  (data generation, start-up and scoring excluded);
- surprise: ``SVD(n_factors=rank, n_epochs, lr_all, reg_all).fit`` on a Trainset built from the
  same arrays (building it is not timed);
- kernel: ``mpips.ml.factorization.sequential_sgd`` over the training ratings in batches of
  --batch-size, one process, rows in local arrays: the compute floor of one core, with no
  messages.

Prints one JSON object per system, then a summary (mpips / surprise), and appends them to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from jsonlines import emit  # noqa: E402  (benchmarks/jsonlines.py, next to this script)
from mpips.ml import factorization as mf  # noqa: E402
from mpips.ml.ratings import make_ratings  # noqa: E402

LR, REG, SEED = 0.005, 0.02, 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ratings", type=int, default=10_000_000)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--rank", type=int, default=100, help="factors (default 100, surprise's)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--ranks", type=int, default=4, help="MPI ranks of the mpips launch")
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16384)
    p.add_argument("--consistency", choices=("bsp", "async"), default="async",
                   help="of the mpips run (default async: with big batches the workers' "
                        "changes then interleave instead of all landing on one snapshot)")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "mf.jsonl"),
                   help="JSON-lines file the results are appended to ('' for none)")
    return p.parse_args(argv)


def run_mpips(args) -> dict:
    command = [sys.executable, "-m", "mpips", "launch", "-n", str(args.ranks), "--", "-m",
               "mpips", "run", "mf", "--servers", str(args.servers), "--synthetic",
               str(args.ratings), "--users", str(args.users), "--items", str(args.items),
               "--rank", str(args.rank), "--epochs", str(args.epochs), "--batch-size",
               str(args.batch_size), "--lr", str(LR), "--reg", str(REG), "--seed", str(SEED),
               "--consistency", args.consistency, "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                          cwd=REPO_ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"mpips run mf failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"system": "mpips", "ratings_per_s": result["ratings_per_s"],
            "test_rmse": result["test_rmse"], "servers": result["servers"],
            "workers": result["workers"], "batch_size": args.batch_size,
            "consistency": args.consistency,
            "train_seconds": result["n_train"] * args.epochs / result["ratings_per_s"]}


def run_surprise(train, test, args) -> dict:
    from surprise import SVD, Trainset, accuracy

    users, user_index = np.unique(train.users, return_inverse=True)
    items, item_index = np.unique(train.items, return_inverse=True)
    ur, ir = {}, {}
    for u, i, r in zip(user_index.tolist(), item_index.tolist(), train.ratings.tolist()):
        ur.setdefault(u, []).append((i, r))
        ir.setdefault(i, []).append((u, r))
    trainset = Trainset(ur, ir, users.size, items.size, train.n, (1, 5),
                        {str(k): n for n, k in enumerate(users.tolist())},
                        {str(k): n for n, k in enumerate(items.tolist())})
    algo = SVD(n_factors=args.rank, n_epochs=args.epochs, lr_all=LR, reg_all=REG,
               random_state=SEED)
    began = time.perf_counter()
    algo.fit(trainset)
    seconds = time.perf_counter() - began
    pairs = zip(test.users.tolist(), test.items.tolist(), test.ratings.tolist())
    rmse = accuracy.rmse(algo.test([(str(u), str(i), r) for u, i, r in pairs]), verbose=False)
    return {"system": "surprise", "ratings_per_s": train.n * args.epochs / seconds,
            "test_rmse": rmse, "train_seconds": seconds, "processes": 1}


def run_kernel(train, args) -> dict:
    """sequential_sgd over the training ratings, one process, rows in local arrays."""
    users, user_index = np.unique(train.users, return_inverse=True)
    items, item_index = np.unique(train.items, return_inverse=True)
    user_rows = mf.initial_rows(users, args.rank, 0.1, SEED)
    item_rows = mf.initial_rows(items, args.rank, 0.1, SEED)
    mu = float(train.ratings.mean())
    rng = np.random.default_rng(SEED)
    began = time.perf_counter()
    for _ in range(args.epochs):
        order = rng.permutation(train.n)
        for start in range(0, train.n, args.batch_size):
            take = order[start:start + args.batch_size]
            batch = mf.Minibatch(users, items, user_index[take].astype(np.int64),
                                 item_index[take].astype(np.int64), train.ratings[take])
            mf.kernels.sequential_sgd(batch.users, batch.items, batch.ratings, user_rows,
                                      item_rows, np.float32(mu), np.float32(LR),
                                      np.float32(REG))
    seconds = time.perf_counter() - began
    return {"system": "kernel", "ratings_per_s": train.n * args.epochs / seconds,
            "train_seconds": seconds, "processes": 1, "batch_size": args.batch_size}


def main(argv=None) -> int:
    args = parse_args(argv)
    common = {"ratings": args.ratings, "users": args.users, "items": args.items,
              "rank": args.rank, "epochs": args.epochs}
    train, test = make_ratings(args.ratings, args.users, args.items, 5, 0.3,
                               SEED).data.split(0.2, SEED)
    rows = []
    for run in (lambda: run_mpips(args), lambda: run_surprise(train, test, args),
                lambda: run_kernel(train, args)):
        row = {**common, **run()}
        rows.append(row)
        emit([row], args.out)
    by = {r["system"]: r for r in rows}
    summary = {"system": "summary", **common, "ranks": args.ranks,
               "mpips_over_surprise": by["mpips"]["ratings_per_s"]
               / by["surprise"]["ratings_per_s"],
               "mpips_over_kernel": by["mpips"]["ratings_per_s"] / by["kernel"]["ratings_per_s"],
               "rmse_difference": by["mpips"]["test_rmse"] - by["surprise"]["test_rmse"]}
    summary["goal_rate_at_least_surprise"] = summary["mpips_over_surprise"] >= 1.0
    emit([summary], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
