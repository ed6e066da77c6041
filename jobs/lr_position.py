"""Where a training job stands, and what a checkpoint's job dict says about it. Pure: no MPI
(unit-tested without a launch)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Position:
    """Where training stands: the next (epoch, step) to run (0-based), the loss curve of the
    finished epochs, and each worker's loss sum so far in the current epoch."""

    epoch: int = 0
    step: int = 0
    curve: list = field(default_factory=list)
    partial_loss: list = field(default_factory=list)

    @classmethod
    def from_job(cls, job: dict | None, num_workers: int) -> "Position":
        """The position a checkpoint's job dict records (the start when None)."""
        if not job:
            return cls()
        if job.get("workers") != num_workers:
            if int(job["step"]) != 0:
                raise SystemExit(
                    f"sparse_lr: this checkpoint was taken mid-epoch (step {job['step']}) by "
                    f"{job.get('workers')} workers, so --resume needs {job.get('workers')} "
                    f"workers (servers may differ), not {num_workers}; checkpoints at epoch "
                    f"ends (--checkpoint-every) resume on any number of workers")
            # at an epoch end: the next epoch shards the data over the workers there are now
            return cls(int(job["epoch"]), 0, list(job["curve"]), [])
        return cls(int(job["epoch"]), int(job["step"]), list(job["curve"]),
                   list(job["partial_loss"]))

    def loss_so_far(self, worker: int) -> float:
        return float(self.partial_loss[worker]) if self.partial_loss else 0.0
