"""Point-to-point plumbing of the data path: tags and polite waiting (MPI layer).

Requests travel on ``TAG_REQUEST``; the payload and the reply of request ``rid`` use
``payload_tag(rid)``, so a worker may have many requests in flight to one server and MPI's
non-overtaking rule keeps each stream in order.
"""
from __future__ import annotations

import time

from mpi4py import MPI

TAG_REQUEST = 1
TAG_BASE = 16
SPIN_SECONDS = 200e-6
MAX_SLEEP_SECONDS = 1e-3


class Tags:
    """Payload tags for request ids, within the tag bound of ``comm``."""

    def __init__(self, comm: MPI.Comm):
        upper = comm.Get_attr(MPI.TAG_UB) or 32767
        self.span = min(1 << 20, int(upper) - TAG_BASE)

    def payload(self, request_id: int) -> int:
        return TAG_BASE + request_id % self.span


def wait_all(requests: list[MPI.Request], statuses: list[MPI.Status] | None = None) -> None:
    """Wait for ``requests``: spin briefly, then sleep with backoff between tests.

    Busy-waiting ranks starve each other when there are more ranks than cores; sleeping
    also keeps MPI progressing, because every test enters the library. ``statuses``, when
    given, receives one status per request.
    """
    if not requests:
        return
    deadline = time.perf_counter() + SPIN_SECONDS
    while not MPI.Request.Testall(requests, statuses):
        if time.perf_counter() < deadline:
            continue
        sleep = 1e-5
        while not MPI.Request.Testall(requests, statuses):
            time.sleep(sleep)
            sleep = min(2 * sleep, MAX_SLEEP_SECONDS)
        return


def wait_one(request: MPI.Request) -> None:
    """``wait_all`` for one request."""
    wait_all([request])
