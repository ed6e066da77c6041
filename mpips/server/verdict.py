"""The worker's verdict on one of its plain pushes (API layer; mpips.wire.message).

A push of more than one chunk is applied while its worker still checks it; the worker then
sends each server involved a verdict on the push's verdict tag: OK (keep it) or WITHDRAWN
(roll it back from the undo log, mpips.store.undo)."""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..errors import MessageError
from ..mpi.transport import wait_all
from ..wire.message import REPLY_WORDS, Status, parse_reply


class Verdict:
    """The worker's verdict on one of its pushes, received on its verdict tag."""

    def __init__(self, comm: MPI.Comm, source: int, request_id: int, tag: int):
        self.buf = np.empty(REPLY_WORDS, np.uint64)
        self.request_id = request_id
        self.request = comm.Irecv(self.buf, source, tag)
        self.done = False

    def arrived_ok(self) -> bool:
        """True once an OK verdict has arrived (never blocks)."""
        if not self.done:
            self.done = self.request.Test()
        if not self.done:
            return False
        try:
            status, text_len = parse_reply(self.buf, self.request_id)
        except MessageError:
            return False  # wait_withdrawn reports it
        return status is Status.OK and text_len == 0

    def wait_withdrawn(self) -> bool:
        """Wait for the verdict; True when the worker withdrew the push. Raises MessageError
        for a malformed verdict."""
        if not self.done:
            wait_all([self.request])
            self.done = True
        status, text_len = parse_reply(self.buf, self.request_id)
        if text_len or status is Status.BAD_REQUEST:
            raise MessageError(f"verdict status {status.name} with {text_len} bytes of text")
        return status is Status.WITHDRAWN
