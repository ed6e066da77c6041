"""Worker side of dynamic work assignment: the rounds in which workers claim an epoch's blocks.

An epoch is a list of blocks in a seeded order, the same on every worker. In a round, each
worker claims tickets from the launch's mpips.mpi.workqueue.WorkQueue; ticket ``t`` hands
out the ``t``-th block not yet done, and the worker trains it, waits for its pushes to be
acknowledged and marks it done. A worker whose ticket is past the last block, or who sees a
flag (stop or save), ends the round: a collective over the workers that survives a dead
worker (KVWorker.collective). Then every worker reads the done counts, so they all agree on
what is left; a block that a dead worker had claimed but not finished is not done, and the
next round hands it out again. Each block is therefore marked done exactly once per epoch, also
when workers die; a resume starts the epoch's first round from the done counts its checkpoint
recorded. The unfinished block of a dead worker may have had one push applied (the push in
flight when it died, whole or not at all, as for static shards) before the block is trained
again by another worker.

Clocks follow logical time, not this worker's own steps: ticket ``t`` of a round is trained at
clock ``base + t // W`` (W workers), and a worker out of tickets moves on to the round's last
clock, ``base + ceil(blocks left / W)``, which is the next round's base. So under SSP(tau) a
block waits only for the blocks handed out more than about tau * W tickets before it (the
bounded delay of the OSDI'14 parameter server's tasks), however many blocks each worker
trains, and a worker that ran out of blocks never holds the others back. The training code
must not call ``kv.clock()`` itself.

Every method is collective over the workers unless it says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from ..mpi.workqueue import SAVE, STOP, WorkQueue

__all__ = ["BlockFeed", "RoundEnd", "SAVE", "STOP"]


@dataclass
class RoundEnd:
    """How a round ended: the flags every worker agreed on, and the done count of every
    block (in block ids, not epoch order)."""

    flags: int
    done: np.ndarray

    @property
    def complete(self) -> bool:
        """Every block of the epoch is done."""
        return bool((self.done > 0).all())


class BlockFeed:
    """Claims blocks for one worker (``kv``: its KVWorker) from ``queue``."""

    def __init__(self, kv, queue: WorkQueue):
        self.kv, self.queue = kv, queue
        self.trained = 0  # blocks this worker trained and marked done
        self.base = kv.clock_value  # the clock the next round starts at (the same everywhere)

    def begin_epoch(self, done: np.ndarray | None = None) -> None:
        """Start an epoch with the done counts ``done`` (zeros when None; a resumed
        checkpoint's otherwise)."""
        counts = np.zeros(self.queue.blocks, np.int64) if done is None else done
        self._between_rounds(counts)

    def run_round(self, order: np.ndarray, done: np.ndarray, train_block, poll) -> RoundEnd:
        """One round over the blocks of ``order`` whose count in ``done`` is 0: claim, call
        ``train_block(block)`` (it returns once the block's pushes are acknowledged), mark
        done, until the tickets run out or a flag is up. ``poll()``, called before each
        claim, returns the flags this worker raises (0, STOP, SAVE). Collective at its end."""
        left = np.asarray(order)[np.asarray(done)[order] == 0]
        workers = self.kv.worker_comm.Get_size()
        end = self.base + -(-left.size // workers)
        mine = 0
        while True:
            mine |= poll()
            if mine:
                self.queue.raise_flag(mine)
            ticket, flags = self.queue.claim()
            if flags or ticket >= left.size:
                break
            block = int(left[ticket])
            self._advance(self.base + ticket // workers)
            train_block(block)
            self.queue.mark_done(block)
            self.trained += 1
        self._advance(end)  # nothing more from this worker in this round
        self.base = end
        flags = self.kv.collective(lambda comm: _or_over(comm, mine | self.queue.flags()))
        counts = self.queue.done_counts()
        self._between_rounds(None)
        return RoundEnd(flags, counts)

    def _advance(self, clock: int) -> None:
        """Finish this worker's clocks up to ``clock`` (KVWorker.clock, once per clock)."""
        while self.kv.clock_value < clock:
            self.kv.clock()

    def _between_rounds(self, done: np.ndarray | None) -> None:
        """Every worker has read what it needs; the first living worker resets the tickets
        and flags (and the done counts to ``done``), then the next round may claim."""
        self.kv.collective(lambda comm: comm.Barrier())
        if self.kv.worker_comm.Get_rank() == 0:
            self.queue.reset(done)
        self.kv.collective(lambda comm: comm.Barrier())


def _or_over(worker_comm, flags: int) -> int:
    """Bitwise or of every worker's ``flags``. Collective over the workers."""
    out = np.zeros(1, np.int64)
    worker_comm.Allreduce(np.array([flags], np.int64), out, op=MPI.BOR)
    return int(out[0])
