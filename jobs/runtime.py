"""Pieces of the training jobs that are not the model: option parsing and checks for
stragglers, push filters and numeric bounds, the tables' consistency, the checkpoint
directory, step-boundary checkpoints and resume, the collective bookkeeping of results, and
the final report (used by jobs/sparse_lr.py, drift_lr.py, mf.py and word2vec.py)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpips import ckpt
from mpips.core.admission import parse_admit
from mpips.core.eviction import parse_eviction
from mpips.mpi.agree import on_root
from mpips.ckpt.checkpoint import SaveSignal
from mpips.errors import TableError, UsageError
from mpips.wire.filters import make_filter

__all__ = ["CHECKPOINT_BOUNDS", "Checkpointer", "SaveSignal", "Straggler",
           "add_checkpoint_arguments", "checkpoint_problems", "gather_floats",
           "open_checkpoints", "out_of_bounds", "parse_filter", "parse_straggler",
           "traffic_summary"]


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


def max_over_workers(worker_comm, flags: np.ndarray) -> np.ndarray:
    """Elementwise maximum of ``flags`` over the workers (a new array: safe to repeat)."""
    out = np.empty_like(flags)
    worker_comm.Allreduce(flags, out, op=MPI.MAX)
    return out


class Checkpointer:
    """Saves at step boundaries: every ``--checkpoint-every`` epochs, every
    ``--checkpoint-seconds``, and when a worker got SIGUSR1/SIGTERM (or after
    ``--stop-after-steps``), after which training stops. ``start`` (a Position) numbers the
    checkpoints: ids go on from the one the job resumed from."""

    def __init__(self, kv, args, steps_per_epoch: int, signal: SaveSignal | None, start):
        self.kv, self.args, self.steps, self.start = kv, args, steps_per_epoch, start
        self.signal = signal
        self.steps_run = 0
        self.last_save = time.monotonic()
        self.stopping: str | None = None  # why the job stops after its next save
        # deltas in the chain of the last checkpoint (None: none saved or restored yet)
        self.deltas: int | None = getattr(args, "checkpoint_depth", None)

    def poll(self) -> str | None:
        """At a step boundary: "stop" (a signal, or --stop-after-steps: save and stop),
        "save" (--checkpoint-seconds elapsed on worker 0) or None. Collective over the
        workers when checkpointing is on (one tiny Allreduce)."""
        self.steps_run += 1
        if not self.args.checkpoint_dir:
            return None
        stop = self.args.stop_after_steps is not None and \
            self.steps_run >= self.args.stop_after_steps
        every = self.args.checkpoint_seconds
        due = self.kv.worker_comm.Get_rank() == 0 and every > 0 and \
            time.monotonic() - self.last_save >= every
        signalled = bool(self.signal and self.signal.received)
        flags = np.array([2 * signalled + stop, int(due)], np.int32)
        flags = self.kv.collective(lambda comm: max_over_workers(comm, flags))
        if flags[0]:  # a worker got a signal (2), or --stop-after-steps (1)
            self.stopping = (self.signal.received or "a signal to another worker") \
                if flags[0] >= 2 else "--stop-after-steps"
            return "stop"
        return "save" if flags[1] else None

    def wanted(self) -> str | None:
        """What this worker alone asks for at a step boundary: "stop" (it got a signal, or
        ran --stop-after-steps steps), "save" (worker 0: --checkpoint-seconds elapsed) or
        None. Local, no collective: dynamic work assignment (jobs/block_epochs.py) raises
        the answer as a flag of its work queue instead of the collective ``poll``."""
        if not self.args.checkpoint_dir:
            return None
        if self.signal and self.signal.received:
            self.stopping = self.signal.received
            return "stop"
        if self.args.stop_after_steps is not None and \
                self.steps_run >= self.args.stop_after_steps:
            self.stopping = "--stop-after-steps"
            return "stop"
        every = self.args.checkpoint_seconds
        due = self.kv.worker_comm.Get_rank() == 0 and every > 0 and \
            time.monotonic() - self.last_save >= every
        return "save" if due else None

    def due_at_epoch_end(self, epoch: int) -> bool:
        every = self.args.checkpoint_every
        return bool(self.args.checkpoint_dir) and every > 0 and (epoch + 1) % every == 0

    def save(self, epoch: int, step: int, curve: list, loss_sum: float,
             blocks: dict | None = None) -> int:
        """Checkpoint the tables at (epoch, step); every worker's ``loss_sum`` of the
        unfinished epoch goes into the job dict, and ``blocks`` (dynamic assignment: the
        blocks done in the epoch) with it. Collective over the workers."""
        kv = self.kv
        losses = kv.collective(lambda comm: gather_floats(comm, [loss_sum]))
        partial = [] if losses is None else [float(x) for x in losses[:, 0]]
        step_id = self.start.step_id(epoch, step, self.steps)
        job = {"epoch": epoch, "step": step, "curve": list(curve), "partial_loss": partial,
               "workers": kv.worker_comm.Get_size(), "steps_per_epoch": self.steps,
               "seed": self.args.seed, **(blocks or {})}
        full_every = getattr(self.args, "full_every", 0)
        incremental = bool(full_every) and self.deltas is not None and \
            self.deltas + 1 < full_every
        kv.save_checkpoint(self.args.checkpoint_dir, step_id, job, keep=self.args.keep,
                           run=getattr(self.args, "checkpoint_run", None),
                           incremental=incremental)
        self.deltas = self.deltas + 1 if incremental else 0
        self.last_save = time.monotonic()
        if kv.worker_comm.Get_rank() != 0:
            return step_id
        said = f"checkpoint step {step_id} ({epoch} epochs and {step} steps done) saved in"
        if self.stopping:  # always said: the operator asked for this one
            where = Path(self.args.checkpoint_dir) / ckpt.step_dir_name(step_id)
            print(f"{said} {where} on {self.stopping}; stopping (continue with --resume)",
                  flush=True)
        elif not self.args.quiet:
            print(f"{said} {self.args.checkpoint_dir}", flush=True)
        return step_id


def open_checkpoints(ps, args) -> tuple[dict | None, str | None]:
    """Before training, with --checkpoint-dir: check the directory (writable; without
    --resume, no checkpoints of another run in it unless --overwrite deletes them), then
    restore the newest valid checkpoint with --resume. Returns (its job dict or None, the
    run id this job's checkpoints carry: the resumed one's, or a new one). Collective over
    the launch; raises UsageError on every rank for a directory it must refuse, or tables
    that differ from the checkpoint's."""
    if not args.checkpoint_dir:
        return None, None
    root = args.checkpoint_dir
    removed, error = on_root(ps.comm, lambda: _claim_root(root, args.resume, args.overwrite))
    if error is not None:
        raise UsageError(error)
    if removed and ps.rank == 0:
        ps.log(f"--overwrite: deleted {removed} checkpoint(s) of another run from {root}")
    try:
        resumed = ps.restore(root) if args.resume else None
    except TableError as exc:  # raised on every rank alike
        raise UsageError(f"--resume: {exc}") from None
    if resumed is not None:
        args.checkpoint_depth = resumed["checkpoint_depth"]
        return resumed, resumed["checkpoint_run"]
    run, _ = on_root(ps.comm, ckpt.new_run_id)
    return None, run


def _claim_root(root, resume: bool, overwrite: bool) -> int:
    """Rank 0 of open_checkpoints: UsageError for a directory this run must not write in;
    with ``overwrite``, deletes the checkpoints of the run before. Returns how many."""
    try:
        ckpt.prepare_root(root)
    except ckpt.CheckpointError as exc:
        raise UsageError(f"--checkpoint-dir {exc}") from None
    found = ckpt.committed(root)
    if not found or resume:
        return 0
    if not overwrite:
        raise UsageError(f"--checkpoint-dir {root} holds {len(found)} checkpoint(s) of "
                         f"another run (newest {found[0].name}): add --resume to continue "
                         "that run, or --overwrite to delete them and start a new one")
    for path in found:
        ckpt.remove_checkpoint(path)
    return len(found)


CHECKPOINT_BOUNDS = (("--checkpoint-every", 0, True), ("--checkpoint-seconds", 0.0, True),
                     ("--keep", 1, True), ("--stop-after-steps", 1, True),
                     ("--full-every", 0, True))
"""Lower bounds of the checkpoint options (for out_of_bounds)."""


def checkpoint_problems(args) -> list[str]:
    """What is wrong with the checkpoint options (bounds and combinations)."""
    problems = out_of_bounds(args, CHECKPOINT_BOUNDS)
    if (args.resume or args.overwrite) and not args.checkpoint_dir:
        problems.append("--resume and --overwrite need --checkpoint-dir")
    if args.resume and args.overwrite:
        problems.append("--resume continues the run in --checkpoint-dir, --overwrite deletes "
                        "it: give one of them")
    return problems


def add_checkpoint_arguments(parser) -> None:
    """--checkpoint-dir, --checkpoint-every, --checkpoint-seconds, --full-every, --keep,
    --resume, --overwrite, --stop-after-steps."""
    parser.add_argument("--checkpoint-dir", metavar="DIR", default=None,
                        help="save checkpoints here (HDF5 shards + manifest, mpips.ckpt)")
    parser.add_argument("--checkpoint-every", type=int, default=1, metavar="EPOCHS",
                        help="save every N epochs (default 1; 0: only on SIGUSR1/SIGTERM)")
    parser.add_argument("--checkpoint-seconds", type=float, default=0.0, metavar="S",
                        help="also save at the first step boundary S seconds after the last "
                             "save (default 0: off)")
    parser.add_argument("--full-every", type=int, default=0, metavar="N",
                        help="save incrementally: each checkpoint holds only the rows changed "
                             "since the one before, except every N-th, which is full (a "
                             "restore then reads at most N-1 deltas; --keep never deletes a "
                             "checkpoint that a kept one builds on). Default 0: every "
                             "checkpoint full")
    parser.add_argument("--keep", type=int, default=2,
                        help="keep the K newest checkpoints of this run (default 2; "
                             "checkpoints of other runs are never deleted)")
    parser.add_argument("--resume", action="store_true",
                        help="start from the newest valid checkpoint in --checkpoint-dir "
                             "(on any number of servers) and continue its run; from scratch "
                             "if there is none")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in a --checkpoint-dir that holds checkpoints of "
                             "another run: delete them first (without --resume or this, such "
                             "a directory is refused)")
    parser.add_argument("--stop-after-steps", type=int, default=None, metavar="N",
                        help="checkpoint and stop after N steps of this run, as on SIGUSR1 "
                             "(for tests and drills)")
