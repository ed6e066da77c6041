"""Epochs over data blocks that workers claim as they get free (``--assign dynamic``).

With static shards every worker trains the same number of steps per epoch, so a worker that is
slow all the time sets the pace of all (SSP cannot help: it only bounds how far workers drift).
Here the training rows are cut into blocks of ``--block-rows`` rows; each epoch hands them out in
a seeded order through the launch's one-sided work queue (mpips.mpi.workqueue,
mpips.worker.block_feed), so a slow worker trains fewer blocks and nobody waits for it.

Accounting: a block is marked done once its pushes were acknowledged; each block is done
exactly once per epoch, also when a worker dies (its unfinished block is handed out again in a
second round) and across a resume (a mid-epoch checkpoint records the epoch's done blocks, and
the resumed run trains only the others, on any number of workers). Checkpoints: at epoch ends
(--checkpoint-every), and mid-epoch when a worker asks (a signal, --stop-after-steps,
--checkpoint-seconds): it raises a flag in the queue, every worker stops claiming after its
current block, and they save together. Async and SSP tables: clocks follow the blocks handed
out, not a worker's own steps (mpips.worker.block_feed), so SSP bounds how many blocks a read
may miss, whoever trains them. BSP keeps static shards (bitwise reproducible).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from mpips.jobs.runtime import sum_over_workers
from mpips.worker.block_feed import SAVE, STOP, BlockFeed


def block_count(n_rows: int, block_rows: int) -> int:
    """Blocks of ``block_rows`` rows (the last one shorter) that cover ``n_rows`` rows."""
    return max(1, -(-n_rows // block_rows))


def block_bounds(block: int, n_rows: int, block_rows: int) -> tuple[int, int]:
    """Rows [lo, hi) of block ``block``."""
    lo = block * block_rows
    return min(lo, n_rows), min(lo + block_rows, n_rows)


def epoch_order(seed: int, epoch: int, blocks: int) -> np.ndarray:
    """The order blocks are handed out in, the same on every worker and in every launch."""
    return np.random.default_rng([seed, epoch, 21]).permutation(blocks)


class BlockEpochs:
    """Runs a worker's epochs over claimed blocks. ``train_block(block)`` trains one block
    (pulls, pushes, waits for the acknowledgements; never ``kv.clock()``: the feed advances
    the clocks) and returns
    (loss summed over its rows, rows); ``saver`` is the job's jobs.checkpointing.Checkpointer,
    ``slow`` its jobs.runtime.Straggler (applied per block)."""

    def __init__(self, kv, queue, seed: int, saver, slow,
                 train_block: Callable[[int], tuple[float, int]]):
        self.kv, self.seed, self.saver, self.slow = kv, seed, saver, slow
        self.feed = BlockFeed(kv, queue)
        self.blocks = queue.blocks
        self.train_block = train_block
        self.loss_sum = self.rows = 0.0  # this worker's share of the running epoch
        self.done_counts: list[list[int]] = []  # per finished epoch: (min, max) done count

    def run(self, epochs: int, start, curve: list, on_epoch_end) -> tuple[int, int | None]:
        """Epochs ``start.epoch``..``epochs - 1`` (the first from ``start.done_blocks``).
        ``on_epoch_end(epoch, loss_sum, rows, stop)`` is collective: the job's progress line
        and end-of-epoch checkpoint (also when ``stop``), returning the saved step id or
        None. Returns (rows this worker trained, the checkpointed step id
        if a stop ended training, else None). Collective over the workers."""
        trained = 0
        for epoch in range(start.epoch, epochs):
            resumed = epoch == start.epoch and bool(start.done_blocks)
            done = np.zeros(self.blocks, np.int64)
            if resumed:
                done[np.asarray(start.done_blocks, np.int64)] = 1
            # the partial loss of a resumed epoch restarts on the first worker
            first = resumed and self.kv.worker_comm.Get_rank() == 0 and start.partial_loss
            self.loss_sum, self.rows = (start.partial_loss[0], start.partial_loss[1]) \
                if first else (0.0, 0.0)
            self.feed.begin_epoch(done)
            order = epoch_order(self.seed, epoch, self.blocks)
            while True:
                before = self.rows
                end = self.feed.run_round(order, done, self._train, self._poll)
                trained += int(self.rows - before)
                done = end.done
                if end.flags & STOP:
                    self._name_stop()
                if end.complete:
                    self.done_counts.append([int(done.min()), int(done.max())])
                    saved = on_epoch_end(epoch, self.loss_sum, self.rows, bool(end.flags & STOP))
                    if end.flags & STOP:
                        return trained, saved
                    break
                if end.flags & (STOP | SAVE):
                    saved = self._save_mid_epoch(epoch, done, curve)
                    if end.flags & STOP:
                        return trained, saved
        return trained, None

    def _train(self, block: int) -> None:
        began, waited = time.perf_counter(), self.kv.wait_seconds
        loss, rows = self.train_block(block)
        self.loss_sum += loss
        self.rows += rows
        self.slow.after_step(time.perf_counter() - began - (self.kv.wait_seconds - waited))
        self.saver.steps_run += 1

    def _poll(self) -> int:
        wanted = self.saver.wanted()
        return STOP if wanted == "stop" else SAVE if wanted == "save" else 0

    def _name_stop(self) -> None:
        if self.saver.stopping is None:  # the flag came from another worker
            self.saver.stopping = "a stop request to another worker"

    def _save_mid_epoch(self, epoch: int, done: np.ndarray, curve: list) -> int:
        """Save with the epoch's done blocks and the loss so far (summed on the first
        worker). Collective over the workers."""
        total = self.kv.collective(lambda comm: sum_over_workers(comm,
                                                                 [self.loss_sum, self.rows]))
        blocks = {"assign": "dynamic", "done_blocks": np.flatnonzero(done).tolist(),
                  "partial_loss": [float(total[0]), float(total[1])]}  # sum, rows
        return self.saver.save(epoch, int(np.count_nonzero(done)), curve, 0.0, blocks=blocks)
