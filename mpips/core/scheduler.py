"""When the requests of one server run, under each table's consistency model
(mpips.core.consistency). Pure module: no MPI.

Clock semantics (Li et al., OSDI'14, sections 3.3 and 4.1):

* Each worker ``w`` has a clock that starts at 0. During step ``c`` it reads (pulls) and writes
  (pushes, tagged with clock ``c``), then calls ``clock()``, which tells every server "w has
  finished clock c": its clock becomes ``c + 1``. All its pushes tagged ``<= c`` were sent
  before that message, and a server processes one worker's messages in the order sent.
  A server keeps, per table, a :class:`~mpips.core.vclock.RangedVectorClock` of finished-clock
  counts (``count == c`` means clocks ``0 .. c-1`` are finished on those keys).
* A read carries ``required``, computed by the *reading worker* with the tau in force for
  that read: ``Consistency.required_clock(c, tau)`` = ``max(0, c - tau)``. It may be served
  when every *live* worker's count on the keys read is ``>= required``, i.e. every update of
  clocks ``< c - tau`` is applied. ``required <= 0`` means "no wait". So tau may change
  while the job runs: the server never needs to know it.
* ``ssp`` (tau >= 0): the rule above; pushes are applied on arrival.
* ``async``: reads never wait (the scheduler ignores ``required``).
* ``bsp``: tau = 0 (the scheduler uses ``required = c`` and the table's whole key range,
  whatever the read sent) and the table is bitwise deterministic: pushes of clock ``c`` are
  NOT applied on arrival but stashed, and applied when every live worker has finished clock
  ``c``, in worker order, then arrival order per worker. A read at clock ``c`` sees exactly
  the updates of clocks ``< c`` -- including none of the reader's own clock-``c`` pushes.
* Read-your-writes: one worker's requests run in the order it sent them, so under SSP and
  async a pull sees every push its worker sent before it; under BSP it sees the worker's
  pushes of earlier clocks only (same as everybody's).
* Workers leave: a worker that is done (after its last request) or declared dead is retired,
  no longer counted in minima, so the others never wait for it. A read waiting only for
  workers that are gone is served when they are retired. A dead worker's queued pulls are
  dropped; its pushes and clocks already received still run (BSP: at their clock boundary).
* Ranged clocks: a clock message may cover part of a table (``on_clock(..., table, lo,
  hi)``); an SSP read waits only on the keys it reads. BSP tables wait and release on the
  table's whole range (a clock boundary is a whole-table event, which keeps the order fixed).
* Impossible waits raise :class:`ClockError` when the request arrives: a read requiring more
  than the reader's own clock, or more than the reader itself has finished on those keys
  (it would wait for itself: its own clock messages are queued behind the read), a request
  tagged with a clock its worker already finished, a request from a gone worker.
  :meth:`ClockScheduler.describe_waits` says which workers each parked read waits for.

:class:`ClockScheduler` serves all tables of ONE server (each table with its own model and
key range). It is a pure event-driven state machine: feed it what arrives, execute what it
returns, in that order. One worker's requests are executed in the order sent (strict per
worker FIFO across the server's tables): a parked pull of ``w`` holds back ``w``'s later
requests, including its clock messages, while other workers go on. This never deadlocks
while live workers keep sending: the live worker with the smallest count always has a
runnable head request.
"""
from __future__ import annotations

import operator
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import ClockError
from .consistency import Consistency, as_consistency
from .partition import KEY_SPACE
from .vclock import RangedVectorClock

_READ_RULES: dict[str, Callable[[int, int, "int | None", "int | None"], tuple]] = {
    "bsp": lambda clock, required, lo, hi: (clock, None, None),   # whole table, tau = 0
    "ssp": lambda clock, required, lo, hi: (required, lo, hi),    # tau chosen by the reader
    "async": lambda clock, required, lo, hi: (0, lo, hi),         # never waits
}
"""What a table's model makes of a read: ``(required, lo, hi)`` the scheduler waits for."""


@dataclass
class _Request:
    kind: str                 # a key of _STEPS
    worker: int
    item: Any = None
    table: int | None = None  # None: every table (clock messages)
    clock: int = 0
    required: int = 0
    lo: int | None = None
    hi: int | None = None


class _Table:
    """Clock state of one table on this server."""

    def __init__(self, consistency: Consistency, lo: int, hi: int, workers: int):
        self.consistency = consistency
        self.applied = RangedVectorClock(lo, hi, workers)    # clock messages executed
        self.announced = RangedVectorClock(lo, hi, workers)  # clock messages received
        self.stash: dict[int, list[tuple[int, Any]]] = {}    # BSP: clock -> (worker, item)

    def release(self, out: list) -> None:
        """Append stashed pushes of every clock all live workers finished: clock order, then
        worker order, then arrival order (the sort is stable)."""
        done = self.applied.min_clock()
        for clock in sorted(c for c in self.stash if c < done):
            out.extend(item for _, item in sorted(self.stash.pop(clock), key=lambda p: p[0]))


class ClockScheduler:
    """Decides when the requests of one server run, for all its tables.

    Every ``on_*`` event returns the opaque ``item``s that may now be executed, in the order
    they must be executed (pushes to apply, pulls to answer); items of later events never
    need to run before them. Workers are 0-based worker indices; ``worker order`` is index
    order. Events of one worker must be fed in the order that worker sent them, each once
    the whole request is received: an item must carry what executing it later needs (keys,
    values, reply tag). A PUSH_PULL is ``on_push`` then ``on_pull``. Driving it::

        sched = ClockScheduler(num_workers, {t: spec.consistency for t, spec in tables})
        while workers remain:
            hdr, worker, item = receive_request()           # whole request, buffered
            if hdr.op is PUSH:    ready = sched.on_push(worker, hdr.clock, item, hdr.table)
            elif hdr.op is PULL:  ready = sched.on_pull(worker, hdr.clock, hdr.required,
                                                        item, hdr.table, lo, hi)
            elif hdr.op is CLOCK: ready = sched.on_clock(worker, hdr.clock)
            elif hdr.op is DONE:  ready = sched.on_worker_gone(worker)
            for it in ready:      execute(it)               # apply push / answer pull
        # failure detector:  for it in sched.on_worker_gone(w, dead=True): execute(it)
        #                    free(sched.take_dropped())
    """

    def __init__(self, num_workers: int,
                 tables: Mapping[int, "Consistency | str"] | None = None):
        if operator.index(num_workers) < 1:
            raise ValueError(f"a scheduler needs at least 1 worker, got {num_workers}")
        self.num_workers = num_workers
        self._tables: dict[int, _Table] = {}
        self._queues: list[deque[_Request]] = [deque() for _ in range(num_workers)]
        self._gone: set[int] = set()  # said done or declared dead: no more requests
        self._dead: set[int] = set()
        self._finished = [0] * num_workers  # 1 + largest clock each worker announced
        self._dropped: list = []
        for table, consistency in (tables or {}).items():
            self.add_table(table, consistency)

    def add_table(self, table: int, consistency: "Consistency | str" = "bsp",
                  lo: int = 0, hi: int = KEY_SPACE) -> None:
        """Register ``table`` with its model and the key range ``[lo, hi)`` this server owns."""
        if table in self._tables:
            raise ValueError(f"table {table} is already registered")
        self._tables[table] = _Table(as_consistency(consistency), lo, hi, self.num_workers)

    # -- events ------------------------------------------------------------------------
    def on_push(self, worker: int, clock: int, item: Any, table: int = 0) -> list:
        """A push of ``worker`` tagged with its clock ``clock`` arrived."""
        self._check_request(worker, clock, table)
        return self._enqueue(_Request("push", worker, item, table, clock))

    def on_pull(self, worker: int, clock: int, required: int, item: Any, table: int = 0,
                lo: int | None = None, hi: int | None = None) -> list:
        """A pull of ``worker`` at clock ``clock`` on keys ``[lo, hi)`` (default: the table's
        range) arrived; ``required`` is ``Consistency.required_clock(clock, tau)`` of the
        worker (used by SSP tables; BSP uses ``clock``, async never waits)."""
        t = self._check_request(worker, clock, table)
        required, model = operator.index(required), t.consistency.model
        t.applied.worker_clock(worker, lo, hi)  # validates [lo, hi)
        required, lo, hi = _READ_RULES[model](clock, required, lo, hi)
        if required > clock:
            raise ClockError(f"worker {worker} at clock {clock} reads table {table} requiring "
                             f"count {required} > its own clock: it would wait for itself")
        own = t.announced.worker_clock(worker, lo, hi)
        if required > own:
            raise ClockError(f"worker {worker} reads table {table} keys {_keys(t, lo, hi)} "
                             f"requiring count {required}, but has itself finished only {own} "
                             f"clock(s) there: it would wait for itself forever")
        return self._enqueue(_Request("pull", worker, item, table, clock, required, lo, hi))

    def on_clock(self, worker: int, finished_clock: int, table: int | None = None,
                 lo: int | None = None, hi: int | None = None) -> list:
        """``worker`` finished clock ``finished_clock`` on keys ``[lo, hi)`` of ``table``
        (default: every table, whole range)."""
        self._check_worker(worker)
        if operator.index(finished_clock) < 0:
            raise ClockError(f"worker {worker}: finished clock must be >= 0, got {finished_clock}")
        if table is None and (lo is not None or hi is not None):
            raise ValueError("a ranged clock message needs a table")
        for t in self._targets(table):
            t.announced.advance(worker, finished_clock, lo, hi)
        self._finished[worker] = max(self._finished[worker], finished_clock + 1)
        return self._enqueue(_Request("clock", worker, None, table, finished_clock, 0, lo, hi))

    def adopt_stash(self, table: int, clock: int, worker: int, item: Any) -> list:
        """Take over a push to a BSP table that another server accepted (it died; mpips.
        replication kept a copy): stash it as if received here, though its clock may be one
        ``worker`` already finished. Returns the stashed pushes now due, in order."""
        t = self._table(table)
        t.stash.setdefault(operator.index(clock), []).append((worker, item))
        out: list = []
        t.release(out)
        return out

    def stashed(self) -> list:
        """Every stashed push not yet released: (table, clock, worker, item)."""
        return [(table, clock, worker, item) for table, t in self._tables.items()
                for clock, entries in sorted(t.stash.items()) for worker, item in entries]

    def on_worker_gone(self, worker: int, dead: bool = False) -> list:
        """``worker`` sends nothing more. Done (``dead=False``): it is retired after its
        requests already received have run. Dead: its queued pulls are dropped (see
        :meth:`take_dropped`), its queued pushes and clocks still run, and it is retired now."""
        self._check_worker(worker, gone_ok=True)
        if worker in self._dead or (worker in self._gone and not dead):
            return []  # already retired or retiring: safe to call twice
        self._gone.add(worker)
        if not dead:
            return self._enqueue(_Request("gone", worker))
        self._dead.add(worker)
        queue = self._queues[worker]
        self._dropped.extend(r.item for r in queue if r.kind == "pull")
        kept = [r for r in queue if r.kind != "pull"]
        queue.clear()
        queue.extend(kept + [_Request("gone", worker)])
        return self._drain(worker)

    def check_request(self, worker: int, clock: int, table: int = 0) -> None:
        """Raise ClockError if a request of ``worker`` tagged ``clock`` on ``table`` would be
        refused (a gone worker, a clock it already finished), without enqueuing anything:
        for callers that must accept a request before handing it over."""
        self._check_request(worker, clock, table)

    # -- inspection --------------------------------------------------------------------
    def take_dropped(self) -> list:
        """Pulls of dead workers that will never be answered (returned once)."""
        dropped, self._dropped = self._dropped, []
        return dropped

    @property
    def idle(self) -> bool:
        """No request is waiting and no BSP push is stashed."""
        return not any(self._queues) and not any(t.stash for t in self._tables.values())

    def min_clock(self, table: int, lo: int | None = None, hi: int | None = None) -> int:
        """Smallest finished-clock count of the live workers on ``[lo, hi)`` of ``table``."""
        return self._table(table).applied.min_clock(lo, hi)

    def consistency(self, table: int) -> Consistency:
        return self._table(table).consistency

    def describe_waits(self) -> list[str]:
        """One line per worker whose pull is parked: what it needs and whom it waits for."""
        lines = []
        for worker, queue in enumerate(self._queues):
            if queue and queue[0].kind == "pull":
                r = queue[0]
                t = self._tables[r.table]
                slow = t.applied.laggards(r.required, r.lo, r.hi)
                lines.append(f"worker {worker} (clock {r.clock}) reads table {r.table} keys "
                             f"{_keys(t, r.lo, r.hi)} needing every live worker at count >= "
                             f"{r.required}; waiting for workers {slow}; "
                             f"{len(queue) - 1} later request(s) held back")
        return lines

    # -- internals ---------------------------------------------------------------------
    def _check_worker(self, worker: int, gone_ok: bool = False) -> None:
        if not 0 <= operator.index(worker) < self.num_workers:
            raise ValueError(f"worker {worker} not in [0, {self.num_workers})")
        if worker in self._gone and not gone_ok:
            raise ClockError(f"worker {worker} is gone (done or dead) but sent a request")

    def _check_request(self, worker: int, clock: int, table: int) -> _Table:
        self._check_worker(worker)
        t = self._table(table)
        if operator.index(clock) < self._finished[worker]:
            raise ClockError(f"worker {worker} sent a request tagged clock {clock} after "
                             f"announcing it finished clock {self._finished[worker] - 1}")
        return t

    def _table(self, table: int) -> _Table:
        try:
            return self._tables[table]
        except KeyError:
            raise ValueError(f"table {table} is not registered (call add_table): "
                             f"known tables {sorted(self._tables)}") from None

    def _targets(self, table: int | None) -> list[_Table]:
        return list(self._tables.values()) if table is None else [self._table(table)]

    def _enqueue(self, request: _Request) -> list:
        queue = self._queues[request.worker]
        queue.append(request)
        return [] if len(queue) > 1 else self._drain(request.worker)  # behind a parked pull

    def _drain(self, first: int) -> list:
        """Run heads of queues until nothing more can run; returns what ran, in order."""
        out: list = []
        wake = self._run(first, out)
        while wake:  # a clock or a retirement may unblock any parked pull
            wake = False
            for worker, queue in enumerate(self._queues):
                if queue and self._run(worker, out):
                    wake = True
        return out

    def _run(self, worker: int, out: list) -> bool:
        """Run ``worker``'s queue up to its first parked pull; True if a clock moved."""
        queue, moved = self._queues[worker], False
        while queue:
            ran = _STEPS[queue[0].kind](self, queue[0], out)
            if ran is None:
                break
            queue.popleft()
            moved |= ran
        return moved

    def _step_push(self, r: _Request, out: list) -> bool:
        t = self._tables[r.table]
        if t.consistency.deterministic:
            t.stash.setdefault(r.clock, []).append((r.worker, r.item))
        else:
            out.append(r.item)
        return False

    def _step_pull(self, r: _Request, out: list) -> bool | None:
        if r.required > 0 and self._tables[r.table].applied.min_clock(r.lo, r.hi) < r.required:
            return None
        out.append(r.item)
        return False

    def _step_clock(self, r: _Request, out: list) -> bool:
        for t in self._targets(r.table):
            t.applied.advance(r.worker, r.clock, r.lo, r.hi)
            t.release(out)
        return True

    def _step_gone(self, r: _Request, out: list) -> bool:
        for t in self._tables.values():
            t.applied.retire(r.worker)
            t.release(out)
        return True


_STEPS: dict[str, Callable[[ClockScheduler, _Request, list], "bool | None"]] = {
    "push": ClockScheduler._step_push,
    "pull": ClockScheduler._step_pull,
    "clock": ClockScheduler._step_clock,
    "gone": ClockScheduler._step_gone,
}
"""How each kind of request runs: None = parked, True/False = ran (True: a clock moved)."""


def _keys(t: _Table, lo: int | None, hi: int | None) -> str:
    lo = t.applied.lo if lo is None else lo
    hi = t.applied.hi if hi is None else hi
    return f"[{lo}, {hi})"
