"""A queue of data blocks that workers claim with one-sided atomics (MPI layer).

Dynamic work assignment (the OSDI'14 parameter server's and Project Adam's remedy for slow
workers): the training data is cut into blocks, and a worker that is free takes the next one,
so that a slow worker simply trains fewer. No rank serves the queue: its state is one small
RMA window on a host rank (a server: servers outlive the workers whose loss the queue must
survive), and workers change it with ``MPI_Fetch_and_op`` under a passive ``Lock_all`` epoch,
without the host's code taking part. Window layout (int64):

* ``[0]`` the ticket counter: a claim adds 1 and gets the previous value, the ticket;
* ``[1]`` flags that any worker raises (bitwise or) to end the round early (``STOP``, ``SAVE``);
* ``[2:2 + blocks]`` how many times each block was marked done (``mark_done``, after the
  block's pushes were acknowledged).

What a ticket means (which block it hands out) and when a round ends is the caller's protocol
(mpips.worker.block_feed). Collective over the launch to create and to free.
"""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

STOP = 1  # a worker must stop (a signal, --stop-after-steps): save, then end the job
SAVE = 2  # a worker asks for a checkpoint (--checkpoint-seconds): save, then go on

_COUNTER, _FLAGS, _DONE = 0, 1, 2


class WorkQueue:
    """The block queue of one launch, hosted on rank ``host`` of ``comm`` (created on every
    rank; only workers use it)."""

    def __init__(self, comm: MPI.Intracomm, host: int, blocks: int):
        if blocks < 1:
            raise ValueError(f"a work queue needs at least one block, got {blocks}")
        self.host, self.blocks = host, int(blocks)
        itemsize = np.dtype(np.int64).itemsize
        size = (_DONE + self.blocks) * itemsize if comm.Get_rank() == host else 0
        self.win = MPI.Win.Allocate(size, itemsize, comm=comm)
        if comm.Get_rank() == host:
            np.frombuffer(self.win.tomemory(), np.int64)[:] = 0
        comm.Barrier()  # zeroed before anybody's first claim
        self.win.Lock_all(MPI.MODE_NOCHECK)
        self._one = np.ones(1, np.int64)
        self._got = np.zeros(2, np.int64)

    def claim(self) -> tuple[int, int]:
        """(ticket, flags): take the next ticket and read the flags, atomically each."""
        win, got = self.win, self._got
        win.Fetch_and_op([self._one, MPI.INT64_T], [got[:1], MPI.INT64_T], self.host, _COUNTER,
                         MPI.SUM)
        win.Fetch_and_op([self._one, MPI.INT64_T], [got[1:], MPI.INT64_T], self.host, _FLAGS,
                         MPI.NO_OP)
        win.Flush(self.host)
        return int(got[0]), int(got[1])

    def flags(self) -> int:
        """The flags as they stand."""
        self.win.Fetch_and_op([self._one, MPI.INT64_T], [self._got[1:], MPI.INT64_T],
                              self.host, _FLAGS, MPI.NO_OP)
        self.win.Flush(self.host)
        return int(self._got[1])

    def raise_flag(self, flag: int) -> None:
        """Or ``flag`` into the flags: every worker's next claim sees it."""
        value = np.array([flag], np.int64)
        self.win.Fetch_and_op([value, MPI.INT64_T], [self._got[1:], MPI.INT64_T], self.host,
                              _FLAGS, MPI.BOR)
        self.win.Flush(self.host)

    def mark_done(self, block: int) -> None:
        """Count block ``block`` as trained once more (call after its pushes were acked)."""
        if not 0 <= block < self.blocks:
            raise IndexError(f"block {block} is not in 0..{self.blocks - 1}")
        self.win.Accumulate([self._one, MPI.INT64_T], self.host, (_DONE + block, 1, MPI.INT64_T),
                            MPI.SUM)
        self.win.Flush(self.host)

    def done_counts(self) -> np.ndarray:
        """How many times each block was marked done (int64, one per block)."""
        out = np.empty(self.blocks, np.int64)
        self.win.Get([out, MPI.INT64_T], self.host, (_DONE, self.blocks, MPI.INT64_T))
        self.win.Flush(self.host)
        return out

    def reset(self, done: np.ndarray | None = None) -> None:
        """Counter and flags back to 0, and the done counts to ``done`` when given. One
        worker calls it between rounds, while no other worker claims (the caller's
        collectives order it)."""
        head = np.zeros(_DONE, np.int64)
        self.win.Put([head, MPI.INT64_T], self.host, (0, _DONE, MPI.INT64_T))
        if done is not None:
            counts = np.ascontiguousarray(done, np.int64)
            if counts.shape != (self.blocks,):
                raise ValueError(f"done counts must have {self.blocks} entries")
            self.win.Put([counts, MPI.INT64_T], self.host, (_DONE, self.blocks, MPI.INT64_T))
        self.win.Flush(self.host)

    def free(self) -> None:
        """Collective over the launch; safe to call twice."""
        if self.win is not None:
            self.win.Unlock_all()
            self.win.Free()
            self.win = None
