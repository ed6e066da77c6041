"""Pieces of the training jobs that are not the model: option parsing and checks for
stragglers, push filters, row policies and numeric bounds, the tables' consistency, the
collective bookkeeping of results, and the final report (used by jobs/sparse_lr.py,
drift_lr.py, mf.py and word2vec.py). Checkpoints of jobs are jobs/checkpointing.py."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpips.core.admission import parse_admit
from mpips.core.eviction import parse_eviction
from mpips.wire.filters import make_filter

__all__ = ["Straggler", "gather_floats", "max_over_workers", "out_of_bounds", "parse_filter",
           "parse_straggler", "sum_over_workers", "traffic_summary"]


def parse_straggler(text: str | None) -> tuple[int, float] | None:
    """``"W:F"`` as (worker, factor), None for no straggler."""
    if text is None:
        return None
    try:
        worker, factor = text.split(":")
        plan = int(worker), float(factor)
    except ValueError:
        raise ValueError(f"--straggler must look like W:F (e.g. 0:3), got {text!r}") from None
    if plan[0] < 0 or not plan[1] >= 1.0:
        raise ValueError(f"--straggler {text}: need a worker >= 0 and a factor >= 1")
    return plan


def parse_filter(text: str | None) -> tuple[str, dict] | None:
    """``"name:k=v,k=v"`` as (name, params), checked by building the filter once."""
    if text is None:
        return None
    name, _, rest = text.partition(":")
    try:
        params = {k: float(v) for k, v in (p.split("=") for p in rest.split(",") if p)}
        make_filter(name, **params)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--push-filter {text!r}: {exc}") from None
    return name, params


def out_of_bounds(args, bounds) -> list[str]:
    """The problems of numeric options: ``bounds`` holds (option, lowest value, whether the
    lowest value itself is allowed); the attribute is the option's name without dashes.
    NaN and infinity never pass; an option left at None does."""
    problems = []
    for option, low, inclusive in bounds:
        value = getattr(args, option[2:].replace("-", "_"))
        if value is not None and not (math.isfinite(value)
                                      and (value >= low if inclusive else value > low)):
            problems.append(f"{option} must be {'>=' if inclusive else '>'} {low}, got {value}")
    return problems


def add_row_policy_arguments(parser) -> None:
    """--admit, --evict and --capacity: which keys of the sparse weight table get rows and
    which rows go (mpips.core.admission, mpips.core.eviction)."""
    parser.add_argument("--admit", default="", metavar="count:K|prob:P",
                        help="sparse table: give a feature its row only at its K-th push, or "
                             "with probability P at each push (mpips.core.admission; default: "
                             "at its first)")
    parser.add_argument("--evict", default="", metavar="unseen:STEPS",
                        help="sparse table: drop weights not pushed in STEPS steps "
                             "(mpips.core.eviction)")
    parser.add_argument("--capacity", type=int, default=0, metavar="N",
                        help="sparse table: keep at most N weights per server, the least "
                             "recently pushed go first (default 0: no bound)")


def row_policy_problems(args) -> list[str]:
    """The problems of --admit, --evict and --capacity (add_row_policy_arguments), as the
    one-line texts of a UsageError."""
    problems = []
    for parse in (lambda: parse_admit(args.admit),
                  lambda: parse_eviction(args.evict, args.capacity)):
        try:
            parse()
        except ValueError as exc:
            problems.append(f"--{exc}")
    if (args.evict or args.capacity) and getattr(args, "replicas", 0):
        problems.append("--evict and --capacity do not work with --replicas yet (a replica "
                        "keeps its host's row numbers, which eviction changes)")
    return problems


def traffic_summary(sent: np.ndarray, args) -> dict:
    """Bytes the weight pushes of all workers took, and the share a filter/codec saved
    against sending every gradient entry raw (12 bytes per key-value)."""
    wire, kvs, seen = (float(x) for x in sent.sum(axis=0))
    entries = seen if args.filter_plan is not None else kvs
    raw = 12.0 * entries
    return {"push_bytes": int(wire), "push_kv": int(kvs), "gradient_entries": int(entries),
            "codec": args.codec, "push_filter": args.push_filter,
            "saved_fraction": round(1.0 - wire / raw, 4) if raw else 0.0}


class Straggler:
    """Slows this worker's steps by a factor when it is the straggler (by plan and mode)."""

    def __init__(self, plan, mode: str, worker: int, num_workers: int):
        self.plan, self.mode, self.worker, self.num_workers = plan, mode, worker, num_workers
        self.step = 0
        self.slept = 0.0
        self.compute = 0.0  # seconds of simulated model compute per step

    def after_step(self, work_seconds: float) -> None:
        """Spend the simulated compute of a step (``compute`` seconds, as a model heavier
        than LR would), and (factor - 1) x the step's work more if this worker straggles."""
        factor = 1.0
        if self.plan is not None:
            slow, factor = self.plan
            if self.mode == "rotating":
                slow = (slow + self.step) % self.num_workers
            factor = factor if slow == self.worker else 1.0
        delay = factor * self.compute + (factor - 1.0) * work_seconds
        if delay > 0:
            time.sleep(delay)
            self.slept += delay
        self.step += 1


def gather_floats(worker_comm, values) -> np.ndarray | None:
    """Every worker's ``values`` as rows of a float64 array on worker 0 (None elsewhere).
    Collective over the workers."""
    mine = np.array(values, np.float64)
    rows = np.empty((worker_comm.Get_size(), mine.size), np.float64) \
        if worker_comm.Get_rank() == 0 else None
    worker_comm.Gather(mine, rows, root=0)
    return rows


def consistency_of(args) -> str:
    """The tables' consistency as mpips.core.consistency text ("bsp", "ssp:4", "async") from
    --consistency and --staleness."""
    return f"ssp:{args.staleness}" if args.consistency == "ssp" else args.consistency


def consistency_problems(args) -> list[str]:
    """What is wrong with --consistency and --staleness together."""
    if (args.consistency == "ssp") != (args.staleness is not None):
        return ["--staleness goes with --consistency ssp, and ssp needs --staleness"]
    if args.staleness is not None and args.staleness < 0:
        return [f"--staleness must be >= 0, got {args.staleness}"]
    return []


def test_split_problems(args, what: str) -> list[str]:
    """What is wrong with --data, --test-data and --test-fraction together (``what``: the
    job's examples, e.g. "rows" or "ratings")."""
    problems = []
    if args.test_data is not None and args.data is None:
        problems.append(f"--test-data needs --data (the training {what})")
    if args.test_data is not None and args.test_fraction is not None:
        problems.append(f"--test-data gives the test {what}, --test-fraction holds some of "
                        f"--data out: give one of them")
    if args.test_fraction is not None and not 0.0 < args.test_fraction < 1.0:
        problems.append(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    return problems


def report(result: dict, args, curve: str, label: str, title: str) -> None:
    """Write metrics.json and curve.png (``result[curve]`` per epoch, labelled ``label``)
    under --out if given; print the JSON line last."""
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        plot_curve(result[curve], out / "curve.png", label, title)
    print(json.dumps(result), flush=True)


def plot_curve(values: list[float], path: Path, label: str, title: str) -> None:
    """One value per epoch as a PNG (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(1, len(values) + 1), values, marker="o")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sum_over_workers(worker_comm, values) -> np.ndarray:
    """Elementwise sum of ``values`` over the workers, as float64 (a new array: safe to
    repeat). Collective over the workers."""
    mine = np.array(values, np.float64)
    total = np.empty_like(mine)
    worker_comm.Allreduce(mine, total, op=MPI.SUM)
    return total


def max_over_workers(worker_comm, flags: np.ndarray) -> np.ndarray:
    """Elementwise maximum of ``flags`` over the workers (a new array: safe to repeat)."""
    out = np.empty_like(flags)
    worker_comm.Allreduce(flags, out, op=MPI.MAX)
    return out
