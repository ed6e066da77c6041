"""Outcomes that every rank of a communicator agrees on (MPI layer).

A problem found on one rank (a file it cannot read, a directory it cannot write) must
reach the others before the next collective, or they wait for that rank forever while it
raises alone. These helpers decide a value or an error on one rank, or collect the errors
of every rank, and hand the same outcome to every rank. Texts travel as JSON in uint8
buffers: no pickling.
"""
from __future__ import annotations

import json

import numpy as np
from mpi4py import MPI

from ..errors import MpipsError, UsageError


def encode_text(obj) -> np.ndarray:
    """``obj`` as JSON in a uint8 array (a control message's payload)."""
    return np.frombuffer(json.dumps(obj).encode(), np.uint8).copy()


def decode_text(buf: np.ndarray):
    return json.loads(buf.tobytes().decode())


def bcast_json(comm: MPI.Intracomm, obj=None, root: int = 0):
    """``root``'s JSON-able ``obj`` on every rank. Collective over ``comm``."""
    buf = encode_text(obj) if comm.Get_rank() == root else None
    size = np.array([0 if buf is None else buf.size], np.int64)
    comm.Bcast(size, root=root)
    if buf is None:
        buf = np.empty(int(size[0]), np.uint8)
    comm.Bcast(buf, root=root)
    return decode_text(buf)


def gather_texts(comm: MPI.Intracomm, text: str) -> list[str]:
    """Every rank's text on rank 0 ([] elsewhere). Collective over ``comm``."""
    data = np.frombuffer(text.encode(), np.uint8)
    sizes = np.empty(comm.Get_size() if comm.Get_rank() == 0 else 0, np.int64)
    comm.Gather(np.array([data.size], np.int64), sizes if comm.Get_rank() == 0 else None, root=0)
    if comm.Get_rank() != 0:
        comm.Gatherv(data, None, root=0)
        return []
    out = np.empty(int(sizes.sum()), np.uint8)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    comm.Gatherv(data, [out, sizes, offsets, MPI.BYTE], root=0)
    return [out[o:o + n].tobytes().decode() for o, n in zip(offsets, sizes)]


def describe(exc: BaseException) -> str:
    """One line naming an error: its own text for a UsageError (written for the user),
    else ``Type: text``."""
    return str(exc) if isinstance(exc, UsageError) else f"{type(exc).__name__}: {exc}"


def on_root(comm: MPI.Intracomm, decide, catch=(MpipsError, OSError)) -> tuple:
    """Run ``decide()`` on rank 0 only. Returns ``(result, None)`` on every rank (the result
    must be JSON-able), or ``(None, text)`` when it raised one of ``catch`` (``describe``'s
    line). Anything else raised propagates on rank 0 (a bug: the launch aborts).
    Collective over ``comm``."""
    outcome = None
    if comm.Get_rank() == 0:
        try:
            outcome = {"value": decide()}
        except catch as exc:
            outcome = {"error": describe(exc)}
    outcome = bcast_json(comm, outcome)
    return outcome.get("value"), outcome.get("error")


def first_error(comm: MPI.Intracomm, error: str | None) -> str | None:
    """The error text of the lowest rank that has one, the same on every rank; None when no
    rank has one. Collective over ``comm``."""
    size = comm.Get_size()
    mine = np.array([comm.Get_rank() if error is not None else size], np.int64)
    lowest = np.empty_like(mine)
    comm.Allreduce(mine, lowest, op=MPI.MIN)
    if int(lowest[0]) == size:
        return None
    return bcast_json(comm, error, root=int(lowest[0]))


def everywhere(comm: MPI.Intracomm, check, catch=(MpipsError, OSError)):
    """Run ``check()`` on every rank and return its result; when it raised one of ``catch``
    on any rank, raise UsageError on every rank with the lowest such rank's problem (named
    ``rank r: ...`` when that was not rank 0). For checks of what the user asked for that
    each rank makes on its own (its copy of a data file, its node's memory).
    Collective over ``comm``."""
    result, error = None, None
    try:
        result = check()
    except catch as exc:
        error = describe(exc)
        if comm.Get_rank() != 0:
            error = f"rank {comm.Get_rank()}: {error}"
    agreed = first_error(comm, error)
    if agreed is not None:
        raise UsageError(agreed)
    return result
