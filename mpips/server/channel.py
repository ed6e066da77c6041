"""A server's point-to-point exchange with the workers (API layer): receiving a payload
of exactly the announced size, sending pulled values from reused buffers, and answering a
request with its status (and error text).

Every request handler of a server (kvserver, whole_pushes, mpips.ckpt.checkpoint's save)
receives and answers through one WorkerChannel, so none of them needs the server itself.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from ..errors import MessageError
from ..mpi.fault import is_rank_failure
from ..mpi.transport import wait_all
from ..store.slice import FLOAT
from ..wire.message import Status, encode_reply

OUT_BUFFERS = 4
"""How many value sends a server keeps in flight before it reuses their buffers."""


class WorkerChannel:
    """Receives and answers requests of workers on ``comm``. ``complete(requests)`` completes
    the value sends before each answer: ``wait_all``, or in a launch that survives dead workers
    (mpips.server.survivors) a wait that skips sends to a worker that died."""

    def __init__(self, comm: MPI.Comm, log: Callable[[str], None],
                 complete: Callable[[list], None] = wait_all):
        self.comm = comm
        self.log = log
        self.complete = complete
        self._out: list[tuple[np.ndarray | None, MPI.Request]] = []
        self._free: list[np.ndarray] = []

    def recv_exact(self, buf: np.ndarray, source: int, tag: int) -> None:
        """Receive into ``buf`` from ``source``; MessageError unless exactly ``buf.nbytes``
        arrive. A dead sender's error goes on as the MPI exception (mpips.mpi.fault)."""
        status = MPI.Status()
        try:
            self.comm.Recv(buf, source, tag, status)
        except MPI.Exception as exc:
            if is_rank_failure(exc):
                raise  # a dead rank, not a bad message: mpips.mpi.fault handles it
            raise MessageError(f"payload from rank {source} does not fit: {exc}") from None
        if status.Get_count(MPI.BYTE) != buf.nbytes:
            raise MessageError(f"payload from rank {source}: {status.Get_count(MPI.BYTE)} "
                               f"bytes where {buf.nbytes} were announced")

    def out_buffer(self, shape) -> np.ndarray:
        """A buffer for pulled values that no send in flight uses (at most OUT_BUFFERS in
        flight)."""
        if len(self._out) >= OUT_BUFFERS:
            buf, req = self._out.pop(0)
            wait_all([req])
            if buf is not None:
                self._free.append(buf)
        need = shape[0] * shape[1]
        buf = self._free.pop() if self._free else np.empty(0, FLOAT)
        if buf.size < need:
            buf = np.empty(need, FLOAT)
        return buf[:need].reshape(shape)

    def recycle(self, buf: np.ndarray) -> None:
        """Return a buffer from ``out_buffer`` that was not sent (its rows went out encoded)."""
        self._free.append(buf.reshape(-1))

    def send_values(self, out: np.ndarray, dest: int, tag: int, reusable: bool = True) -> None:
        """Isend ``out``; ``reusable`` buffers (from ``out_buffer``) return to the free list
        once sent; views of a table never do. Every send completes before the next answer
        (``reply``), so a view of the table cannot change while it is on the wire."""
        self._out.append((out.reshape(-1) if reusable else None, self.comm.Isend(out, dest, tag)))

    def flush(self) -> None:
        """Complete every value send in flight."""
        self.complete([req for _, req in self._out])
        self._free.extend(buf for buf, _ in self._out if buf is not None)
        self._out.clear()

    def reply(self, request_id: int, status: Status, error: str | None, dest: int,
              tag: int) -> None:
        """Answer request ``request_id`` of rank ``dest``: its status, then the error text
        (logged) if any."""
        self.flush()
        text = np.frombuffer(error.encode(), np.uint8) if error else None
        reply = encode_reply(request_id, status, 0 if text is None else text.size)
        self.comm.Send(reply, dest, tag)
        if text is not None:
            self.comm.Send(text, dest, tag)
            self.log(f"rejected a request from rank {dest}: {error}")
