"""Checkpoints of a training job: the checkpoint options and their checks, claiming the
checkpoint directory and resuming from it (``open_checkpoints``), and the saves at step
boundaries (``Checkpointer``: every few epochs, every few seconds, on SIGUSR1/SIGTERM). Used by
jobs/sparse_lr.py and mf.py; the tables' own save and restore are mpips.ckpt."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mpips import ckpt
from mpips.ckpt.checkpoint import SaveSignal
from mpips.errors import TableError, UsageError
from mpips.jobs.runtime import gather_floats, max_over_workers, out_of_bounds
from mpips.mpi.agree import on_root

__all__ = ["CHECKPOINT_BOUNDS", "Checkpointer", "SaveSignal", "add_checkpoint_arguments",
           "checkpoint_problems", "open_checkpoints"]


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
