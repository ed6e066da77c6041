"""Where a training job stands, and what a checkpoint's job dict says about it. Pure: no MPI
(unit-tested without a launch)."""
from __future__ import annotations

from dataclasses import dataclass, field

from mpips.errors import UsageError


@dataclass
class Position:
    """Where training stands: the next (epoch, step) to run (0-based), the loss curve of the
    finished epochs, each worker's loss sum so far in the current epoch, and ``steps_done``,
    the step id of the checkpoint it resumed from (0 at the start)."""

    epoch: int = 0
    step: int = 0
    curve: list = field(default_factory=list)
    partial_loss: list = field(default_factory=list)
    steps_done: int = 0
    done_blocks: list = field(default_factory=list)
    """Dynamic work assignment: the blocks of ``epoch`` already trained (``step`` of them)."""

    @classmethod
    def from_job(cls, job: dict | None, num_workers: int,
                 assign: str = "static") -> "Position":
        """The position a checkpoint's job dict records (the start when None). UsageError
        for a mid-epoch checkpoint of static shards and another number of workers, or of
        another ``assign`` (static shards or dynamic blocks, jobs/block_epochs.py)."""
        if not job:
            return cls()
        taken = job.get("assign", "static")
        if int(job["step"]) != 0 and taken != assign:
            raise UsageError(f"--resume: this checkpoint was taken mid-epoch (step "
                             f"{job['step']}) with --assign {taken}, so --resume needs "
                             f"--assign {taken}, not {assign}; checkpoints at epoch ends "
                             "resume under either")
        if "done_blocks" in job:  # dynamic assignment: blocks, not shards, so any workers
            return cls(int(job["epoch"]), int(job["step"]), list(job["curve"]),
                       list(job["partial_loss"]), _step_id(job), list(job["done_blocks"]))
        if job.get("workers") != num_workers:
            if int(job["step"]) != 0:
                raise UsageError(
                    f"--resume: this checkpoint was taken mid-epoch (step {job['step']}) by "
                    f"{job.get('workers')} workers, so --resume needs {job.get('workers')} "
                    f"workers (servers may differ), not {num_workers}; checkpoints at epoch "
                    f"ends (--checkpoint-every) resume on any number of workers")
            # at an epoch end: the next epoch shards the data over the workers there are now
            return cls(int(job["epoch"]), 0, list(job["curve"]), [], _step_id(job))
        return cls(int(job["epoch"]), int(job["step"]), list(job["curve"]),
                   list(job["partial_loss"]), _step_id(job))

    def step_id(self, epoch: int, step: int, steps_per_epoch: int) -> int:
        """The checkpoint step id of (epoch, step): the resumed checkpoint's id plus the steps
        run since. Ids only grow, also when a resume changed the worker count and with it
        the steps per epoch (epoch * steps_per_epoch alone could go back below an id already
        on disk, and the newer checkpoint would then look older than the one it follows)."""
        ran = (epoch - self.epoch) * steps_per_epoch + step - self.step
        if ran < 0:
            raise ValueError(f"({epoch}, {step}) is before the start ({self.epoch}, {self.step})")
        return self.steps_done + ran

    def rebased(self, epoch: int, steps_per_epoch: int) -> "Position":
        """This position moved on to the start of ``epoch`` (ids counted with the steps per
        epoch so far): number later steps from there when the steps per epoch change."""
        return Position(epoch, 0, self.curve, [], self.step_id(epoch, 0, steps_per_epoch))

    def loss_so_far(self, worker: int) -> float:
        return float(self.partial_loss[worker]) if self.partial_loss else 0.0

    def entering(self, epoch: int, worker: int) -> tuple[int, float]:
        """(first step, ``worker``'s loss sum so far) to run ``epoch`` from: where this
        position stands in it when it is this position's epoch, else (0, 0.0)."""
        if epoch != self.epoch:
            return 0, 0.0
        return self.step, self.loss_so_far(worker)


def _step_id(job: dict) -> int:
    """The resumed checkpoint's step id (ps.restore adds "checkpoint_step" to its job dict)."""
    return int(job.get("checkpoint_step", 0))
