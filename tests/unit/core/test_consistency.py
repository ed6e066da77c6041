"""mpips.core.consistency and mpips.core.vclock: models, ranged vector clocks, the clock scheduler, and a
randomized simulation of workers/server message interleavings checking the SSP/BSP/async
guarantees (bounds, exact BSP visibility, bitwise BSP determinism, no deadlock)."""
from __future__ import annotations

import dataclasses
import random
from collections import deque
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpips.core.consistency import CONSISTENCY_MODELS, Consistency
from mpips.core.scheduler import ClockScheduler
from mpips.core.vclock import UNBOUNDED, RangedVectorClock
from mpips.errors import ClockError, MpipsError

TOP = 2**64


# -- Consistency --------------------------------------------------------------------------
@pytest.mark.parametrize("text, model, tau", [("bsp", "bsp", 0), ("async", "async", 0),
                                              ("ssp:4", "ssp", 4), (" SSP : 2 ", "ssp", 2),
                                              ("ssp:0", "ssp", 0), ("bsp:0", "bsp", 0)])
def test_parse(text, model, tau):
    c = Consistency.parse(text)
    assert (c.model, c.staleness) == (model, tau)
    assert Consistency.parse(str(c)) == c


@pytest.mark.parametrize("text, match", [("foo", "unknown consistency model 'foo'"),
                                         ("ssp", "needs a staleness bound"),
                                         ("ssp:x", "must be an integer"),
                                         ("ssp:-1", "must be >= 0"),
                                         ("bsp:2", "bsp takes no staleness.*ssp:2"),
                                         ("async:3", "async takes no staleness")])
def test_parse_errors(text, match):
    with pytest.raises(ValueError, match=match):
        Consistency.parse(text)


@pytest.mark.parametrize("kwargs, match", [({"model": "BSP"}, "unknown"),
                                           ({"model": "ssp", "staleness": -2}, ">= 0"),
                                           ({"model": "ssp", "staleness": 1.5}, "integer"),
                                           ({"model": "ssp", "staleness": True}, "integer"),
                                           ({"model": "bsp", "staleness": 1}, "no staleness")])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Consistency(**kwargs)


def test_defaults_frozen_and_models():
    c = Consistency()
    assert (c.model, c.staleness, c.deterministic) == ("bsp", 0, True)
    assert CONSISTENCY_MODELS == ("bsp", "ssp", "async")
    assert Consistency("ssp", np.int64(3)).staleness == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.model = "ssp"


def test_required_clock():
    assert [Consistency("bsp").required_clock(c) for c in range(3)] == [0, 1, 2]
    ssp = Consistency("ssp", 2)
    assert [ssp.required_clock(c) for c in range(5)] == [0, 0, 0, 1, 2]
    assert ssp.required_clock(5, staleness=0) == 5 and ssp.required_clock(5, 4) == 1
    assert Consistency("async").required_clock(9) == 0
    with pytest.raises(ValueError, match="no staleness"):
        Consistency("bsp").required_clock(3, staleness=1)
    with pytest.raises(ValueError, match="worker clock"):
        ssp.required_clock(-1)


# -- RangedVectorClock --------------------------------------------------------------------
def test_vclock_validation():
    for lo, hi, w in [(5, 5, 1), (0, TOP + 1, 1), (-1, 3, 1), (0, 3, 0)]:
        with pytest.raises(ValueError):
            RangedVectorClock(lo, hi, w)
    v = RangedVectorClock(10, 20, 2)
    for lo, hi in [(5, 15), (15, 25), (12, 12)]:
        with pytest.raises(ValueError, match="not inside"):
            v.min_clock(lo, hi)
    with pytest.raises(ValueError, match="worker 2"):
        v.advance(2, 0)
    with pytest.raises(ValueError, match=">= 0"):
        v.advance(0, -1)


def test_vclock_split_and_merge():
    v = RangedVectorClock(0, 100, 2)
    v.advance(0, 0)
    v.advance(1, 0)
    assert v.ranges() == [(0, 100, (1, 1))] and v.min_clock() == 1
    v.advance(0, 1, 10, 20)
    assert v.ranges() == [(0, 10, (1, 1)), (10, 20, (2, 1)), (20, 100, (1, 1))]
    v.advance(1, 1, 10, 20)
    assert v.min_clock(10, 20) == 2 and v.min_clock() == 1 and v.min_clock(19, 21) == 1
    v.advance(1, 4, 50, 60)
    assert len(v) == 5 and v.worker_clock(1, 50, 60) == 5 and v.laggards(2, 0, 100) == [0, 1]
    for lo, hi in [(0, 10), (20, 100)]:
        v.advance(0, 1, lo, hi)
        v.advance(1, 1, lo, hi)
    assert v.ranges() == [(0, 50, (2, 2)), (50, 60, (2, 5)), (60, 100, (2, 2))]
    v.advance(1, 4)
    v.advance(0, 4)
    assert v.ranges() == [(0, 100, (5, 5))]
    v.advance(0, 1)  # counts never go down
    assert v.ranges() == [(0, 100, (5, 5))]


def test_vclock_edges_of_the_key_space():
    v = RangedVectorClock(0, TOP, 1)
    v.advance(0, 3, TOP - 1, TOP)
    v.advance(0, 2, 0, 1)
    assert v.ranges() == [(0, 1, (3,)), (1, TOP - 1, (0,)), (TOP - 1, TOP, (4,))]
    assert v.min_clock(TOP - 1, TOP) == 4 and v.min_clock(0, 1) == 3 and v.min_clock() == 0
    v.advance(0, 3, 0, TOP - 1)
    assert v.ranges() == [(0, TOP, (4,))]


def test_vclock_retire():
    v = RangedVectorClock(0, 8, 3)
    v.advance(0, 2)
    v.advance(1, 0)
    assert v.min_clock() == 0 and v.laggards(1) == [2]
    v.retire(2)
    v.retire(2)
    assert not v.is_live(2) and v.min_clock() == 1 and v.laggards(3) == [1]
    v.retire(1)
    assert v.min_clock() == 3
    v.retire(0)
    assert v.min_clock(0, 4) == UNBOUNDED
    assert v.ranges() == [(0, 8, (3, 1, 0))]  # counts kept for inspection


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4), st.integers(0, 16),
                          st.integers(0, 16), st.booleans()), max_size=25))
def test_vclock_matches_per_key_model(ops):
    v, counts, live = RangedVectorClock(0, 16, 3), np.zeros((16, 3), int), np.ones(3, bool)
    for worker, clock, a, b, retire in ops:
        lo, hi = min(a, b), max(a, b) + 1 if a == b else max(a, b)
        hi = min(hi, 16)
        if lo >= hi:
            continue
        if retire and worker == 2:
            v.retire(worker)
            live[worker] = False
        else:
            v.advance(worker, clock, lo, hi)
            counts[lo:hi, worker] = np.maximum(counts[lo:hi, worker], clock + 1)
        ranges = v.ranges()
        assert ranges[0][0] == 0 and ranges[-1][1] == 16
        assert all(r[1] == s[0] and r[2] != s[2] for r, s in zip(ranges, ranges[1:]))
        for b_, e_, vec in ranges:
            assert (counts[b_:e_] == vec).all()
        assert v.min_clock(lo, hi) == counts[lo:hi][:, live].min()


# -- ClockScheduler -------------------------------------------------------------------------
def test_fifo_per_worker_parked_pull_blocks_only_its_worker():
    s = ClockScheduler(2, {0: "ssp:0"})
    assert s.on_clock(0, 0) == []
    assert s.on_pull(0, 1, 1, "pull0") == []            # waits for worker 1 to finish clock 0
    assert s.on_push(0, 1, "push0") == []               # held back behind its own pull
    assert s.on_push(1, 0, "push1") == ["push1"]        # worker 1 is not held back
    assert "waiting for workers [1]" in s.describe_waits()[0]
    assert s.on_clock(1, 0) == ["pull0", "push0"]
    assert s.idle


def test_ssp_read_your_writes_and_async_never_waits():
    s = ClockScheduler(3, {0: "ssp:5", 1: "async"})
    assert s.on_push(0, 0, "w") == ["w"]
    assert s.on_pull(0, 0, 0, "r") == ["r"]
    for c in range(4):
        s.on_clock(0, c, table=1)
    assert s.on_pull(0, 4, 4, "a", table=1) == ["a"]     # async ignores required


def test_bsp_stash_is_released_in_worker_then_arrival_order():
    s = ClockScheduler(3, {0: "bsp"})
    for worker, item in [(2, "c1"), (0, "a1"), (1, "b1"), (0, "a2"), (2, "c2")]:
        assert s.on_push(worker, 0, item) == []
    assert s.on_pull(0, 0, 0, "r0") == ["r0"]           # own clock-0 pushes not visible yet
    assert s.on_clock(2, 0) == [] and s.on_clock(0, 0) == []
    assert s.on_pull(0, 1, 0, "r1") == []                # BSP waits whatever `required` says
    assert s.on_clock(1, 0) == ["a1", "a2", "b1", "c1", "c2", "r1"]
    assert s.min_clock(0) == 1 and s.consistency(0) == Consistency("bsp")


def test_retirement_done_dead_and_all_gone():
    s = ClockScheduler(3, {0: "bsp"})
    s.on_push(0, 0, "p0")
    s.on_clock(0, 0)
    assert s.on_pull(0, 1, 1, "r0") == []
    assert s.on_pull(1, 0, 0, "r1") == ["r1"]
    s.on_clock(1, 0)
    assert s.on_pull(1, 1, 1, "r1b") == []
    assert s.on_worker_gone(2, dead=True) == ["p0", "r0", "r1b"]
    assert s.on_worker_gone(2, dead=True) == [] and s.take_dropped() == []
    assert s.on_pull(0, 1, 1, "again") == ["again"]
    s.on_push(1, 1, "p1")
    s.on_clock(1, 1)
    assert s.on_pull(1, 2, 2, "r1c") == []
    assert s.on_worker_gone(1) == []                    # done: queued behind its own pull
    assert s.on_worker_gone(1, dead=True) == []         # then declared dead: pull dropped
    assert s.take_dropped() == ["r1c"] and s.take_dropped() == []
    s.on_push(0, 1, "p0b")                               # p1 (clock 1) waits for worker 0
    assert s.on_worker_gone(0) == ["p0b", "p1"] and s.idle  # nobody left: stash flushed


def test_read_waiting_only_for_gone_workers_is_served():
    s = ClockScheduler(3, {0: "ssp:0"})
    for c in range(3):
        s.on_clock(0, c)
    assert s.on_pull(0, 3, 3, "late") == []
    assert s.on_worker_gone(1) == [] and s.on_worker_gone(2) == ["late"]


def test_impossible_and_invalid_requests():
    s = ClockScheduler(2, {0: "ssp:1"})
    s.add_table(1, Consistency("bsp"), 100, 200)
    with pytest.raises(ClockError, match="would wait for itself"):
        s.on_pull(0, 2, 3, "x")
    with pytest.raises(ClockError, match="has itself finished only 0"):
        s.on_pull(0, 2, 1, "x")                         # claims clock 2, never clocked here
    s.on_clock(0, 0, table=0, lo=0, hi=10)
    assert s.on_pull(0, 1, 1, "ok", lo=0, hi=10) == []  # waits for worker 1, not itself
    with pytest.raises(ClockError, match="finished only 0"):
        s.on_pull(1, 1, 1, "x", lo=5, hi=20)
    with pytest.raises(ClockError, match="after announcing it finished clock 0"):
        s.on_push(0, 0, "x")
    with pytest.raises(ValueError, match="not registered"):
        s.on_push(0, 1, "x", table=7)
    with pytest.raises(ValueError, match="not inside"):
        s.on_pull(1, 0, 0, "x", table=1, lo=0, hi=50)
    with pytest.raises(ValueError, match="already registered"):
        s.add_table(1, "async")
    with pytest.raises(ValueError, match="needs a table"):
        s.on_clock(1, 0, lo=0, hi=5)
    s.on_worker_gone(1)
    with pytest.raises(ClockError, match="worker 1 is gone") as info:
        s.on_push(1, 0, "x")
    assert isinstance(info.value, MpipsError)


def test_ranged_clocks_let_reads_of_clocked_keys_through():
    s = ClockScheduler(2, {0: "ssp:0"})
    for w in range(2):
        s.on_clock(w, 0, table=0, lo=0, hi=50)
    assert s.on_pull(0, 1, 1, "left", lo=10, hi=20) == ["left"]
    s.on_clock(0, 0, table=0, lo=50, hi=TOP)
    assert s.on_pull(0, 1, 1, "right", lo=40, hi=60) == []  # worker 1: 50.. not clocked yet
    assert s.on_clock(1, 0) == ["right"]


# -- randomized simulation --------------------------------------------------------------
WIDTH = 8


def update_values(worker: int, clock: int) -> np.ndarray:
    """float32 update of (worker, clock): wide magnitudes, so sums depend on the order."""
    rng = np.random.default_rng(1000 * worker + clock)
    return (rng.standard_normal(WIDTH) * 10.0 ** rng.uniform(-6, 6, WIDTH)).astype(np.float32)


class Item(NamedTuple):
    """What the simulated server gets back from the scheduler."""
    kind: str
    worker: int
    clock: int
    required: int
    seq: int
    sync: bool
    own_sent: frozenset  # pushes (worker, clock) its worker sent before this request


class Simulation:
    """W workers doing S steps of pull / push / [pull] / clock against one server whose
    deliveries interleave at random; the server runs what the scheduler releases on a table
    of float32 values plus the set of (worker, clock) updates applied so far. The programs
    (tau per read, extra pulls, synchronous pulls) come from ``program_seed``, the
    interleaving from ``seed``. ``stop=(w, k)``: worker w sends nothing from step k on."""

    def __init__(self, model: str, workers: int, steps: int, seed: int, program_seed=None,
                 stop=None, declare_dead: bool = False):
        self.rng = random.Random(seed)
        self.model, self.W, self.S = model, workers, steps
        self.stop_w, self.stop_c = stop if stop else (None, steps)
        self.declare_dead = declare_dead
        table = {"bsp": "bsp", "ssp": "ssp:0", "async": "async"}[model]
        self.sched = ClockScheduler(workers, {0: table})
        prog_rng = random.Random(seed if program_seed is None else program_seed)
        self.programs = [deque(self._program(w, prog_rng)) for w in range(workers)]
        self.pulls = [sum(m[0] == "pull" for m in program) for program in self.programs]
        self.channels = [deque() for _ in range(workers)]
        self.blocked = [False] * workers
        self.sent: list[set] = [set() for _ in range(workers)]
        self.applied, self.values = set(), np.zeros(WIDTH, np.float32)
        self.dead, self.reads, self.push_order = set(), {}, []
        self.order: list[list[int]] = [[] for _ in range(workers)]

    def _program(self, w: int, rng: random.Random):
        seq = 0
        for c in range(self.S if w != self.stop_w else self.stop_c):
            tau = rng.randint(0, 3) if self.model == "ssp" else 0  # tau changes read to read
            required = Consistency(self.model, tau).required_clock(c)
            extra = ["pull"] if rng.random() < 0.5 else []
            for kind in ["pull", "push", *extra, "clock"]:
                yield kind, c, required, seq, kind == "pull" and rng.random() < 0.5
                seq += 1
        if w != self.stop_w:
            yield "done", self.S, 0, seq, False

    def actions(self) -> list:
        acts = [("send", w) for w in range(self.W) if self.programs[w] and not self.blocked[w]]
        acts += [("deliver", w) for w in range(self.W) if self.channels[w]]
        if self.declare_dead and self.stop_w is not None and self.stop_w not in self.dead \
                and not self.programs[self.stop_w]:
            acts.append(("dead", self.stop_w))
        return acts

    def run(self) -> "Simulation":
        while acts := self.actions():
            act, w = self.rng.choice(acts)
            getattr(self, "_" + act)(w)
        for w in range(self.W):
            if w != self.stop_w:
                assert not self.blocked[w], f"worker {w} stuck: {self.sched.describe_waits()}"
                answered = sum(1 for worker, _ in self.reads if worker == w)
                assert answered == self.pulls[w], f"worker {w}: {answered} of {self.pulls[w]}"
        assert self.sched.idle, self.sched.describe_waits()
        return self

    def _send(self, w: int) -> None:
        msg = self.programs[w].popleft()
        self.channels[w].append((*msg, frozenset(self.sent[w])))
        if msg[0] == "push":
            self.sent[w].add((w, msg[1]))
        self.blocked[w] = msg[4]

    def _dead(self, w: int) -> None:
        self.dead.add(w)
        self.channels[w].clear()                        # the serve loop ignores a dead rank
        self._execute(self.sched.on_worker_gone(w, dead=True))
        assert all(item.worker == w and item.kind == "pull" for item in self.sched.take_dropped())

    def _deliver(self, w: int) -> None:
        kind, c, required, seq, sync, own_sent = self.channels[w].popleft()
        item = Item(kind, w, c, required, seq, sync, own_sent)
        events = {"pull": lambda: self.sched.on_pull(w, c, required, item),
                  "push": lambda: self.sched.on_push(w, c, item),
                  "clock": lambda: self.sched.on_clock(w, c),
                  "done": lambda: self.sched.on_worker_gone(w)}
        self._execute(events[kind]())

    def _execute(self, items: list) -> None:
        for item in items:
            self.order[item.worker].append(item.seq)
            if item.kind == "push":
                self.applied.add((item.worker, item.clock))
                self.values += update_values(item.worker, item.clock)
                self.push_order.append((item.clock, item.worker, item.seq))
                continue
            self._check_read(item)
            self.reads[(item.worker, item.seq)] = self.values.tobytes()
            if item.sync:
                self.blocked[item.worker] = False

    def _updates_before(self, v: int, clock: int) -> set:
        """Updates worker v sends for clocks < clock."""
        return {(v, x) for x in range(min(clock, self.stop_c if v == self.stop_w else self.S))}

    def _check_read(self, item: Item) -> None:
        alive = [v for v in range(self.W) if v not in self.dead]
        if self.model == "bsp":  # exactly the clocks < c of the live workers, nothing later
            seen = {(v, x) for v, x in self.applied if v not in self.dead}
            expect = set().union(*(self._updates_before(v, item.clock) for v in alive))
            assert seen == expect, (item, sorted(seen ^ expect))
            assert all(x < item.clock for _, x in self.applied)
            return
        for v in alive:
            missing = self._updates_before(v, item.required) - self.applied
            assert not missing, f"{item} (tau in force) misses {sorted(missing)}"
        assert item.own_sent <= self.applied, f"{item}: read-your-writes broken"


CONFIGS = [(model, workers) for model in ("bsp", "ssp", "async") for workers in (2, 3, 4, 5)]


@pytest.mark.parametrize("model, workers", CONFIGS)
def test_simulated_interleavings_keep_the_model(model, workers):
    reference = None
    for seed in range(300):  # same programs, 300 interleavings
        sim = Simulation(model, workers, 6, seed, program_seed=workers).run()
        for w in range(workers):
            if model != "bsp":
                assert sim.order[w] == sorted(sim.order[w]), "per-worker FIFO broken"
        if model == "bsp":
            assert sim.push_order == sorted(sim.push_order)
            result = (sim.values.tobytes(), sim.reads)
            assert reference is None or result == reference, f"seed {seed} differs"
            reference = result


@pytest.mark.parametrize("model", ["bsp", "ssp", "async"])
def test_simulated_dead_worker_does_not_stop_the_others(model):
    for seed in range(300):
        rng = random.Random(seed)
        workers = rng.randint(2, 5)
        stop = (rng.randrange(workers), rng.randrange(5))
        Simulation(model, workers, 5, seed, stop=stop, declare_dead=True).run()


def test_simulated_async_with_a_stopped_worker_lets_the_others_finish():
    for seed in range(300):
        rng = random.Random(seed)
        workers = rng.randint(2, 5)
        Simulation("async", workers, 5, seed, stop=(rng.randrange(workers), rng.randrange(5))).run()


def test_bsp_determinism_has_teeth():
    """Float32 sums of the updates depend on their order, so equal tables above prove order."""
    updates = [update_values(w, c) for w in range(3) for c in range(5)]
    in_order = np.zeros(WIDTH, np.float32)
    for u in updates:
        in_order += u
    shuffled = np.zeros(WIDTH, np.float32)
    for u in random.Random(1).sample(updates, len(updates)):
        shuffled += u
    assert in_order.tobytes() != shuffled.tobytes()


def test_an_adopted_stash_of_a_passed_boundary_is_due_at_once_in_worker_order():
    """A server that takes over a dead server's segment stashes the BSP pushes it had
    accepted, though their clocks may be finished already (mpips.server.replication)."""
    sched = ClockScheduler(2, {0: "bsp"})
    assert sched.on_clock(0, 0) == [] and sched.on_clock(1, 0) == []  # boundary 0 passed
    assert sched.adopt_stash(0, 0, 1, "w1@0") == ["w1@0"]
    assert sched.adopt_stash(0, 1, 1, "w1@1") == []  # clock 1 not finished by everyone
    assert sched.stashed() == [(0, 1, 1, "w1@1")]
    assert sched.on_push(0, 1, "w0@1", 0) == []
    assert sched.stashed() == [(0, 1, 1, "w1@1"), (0, 1, 0, "w0@1")]
    sched.on_clock(0, 1)
    assert sched.on_clock(1, 1) == ["w0@1", "w1@1"]  # worker order, wherever they came from
    assert sched.stashed() == []
