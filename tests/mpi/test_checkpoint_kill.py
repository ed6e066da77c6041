"""Fault injection at the MPI level (issue #6, done-when 2): a rank of a running job SIGKILLs
itself at 50 points while the servers write checkpoints; after every kill the newest valid
checkpoint loads, verifies, and holds exactly what the job saved at that step, and no older
checkpoint was touched.

Each of two chains (run side by side: a launch mostly waits) owns a checkpoint root and
relaunches tests/mpi/programs/ckpt_kill.py over it: a first launch saves steps 1-6 completely
and traces every protocol event of saves 4-6 (the calibration: three saves that each prune,
as in a trial), then every trial launch restores the newest valid checkpoint — on 1, 2 or 3
servers, so restores re-partition — saves three more steps and has one rank die by SIGKILL

- at protocol event N (kill-at trials: a server; N spread evenly over the calibrated events
  of three saves: prepare, shard write, fsync/hash, publish, manifest, prune), or
- after a seeded random delay from its first save (delay trials: a server or the worker).

Afterwards: the launch exited non-zero and the launcher reported signal 9; the newest valid
checkpoint is at least the last save the worker saw succeed, verifies at level "full", and
holds exactly that step's tables; every checkpoint that was valid before is unchanged; the
next launch restores it bit for bit. ``mpips ckpt ls``/``verify`` agree. Run with ``-s`` to
see where each trial died.

The values the job pushes are a known function of the step, so the test checks checkpoint
contents against a NumPy replay of the AdaGrad updates, bit for bit.
"""
from __future__ import annotations

import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mpips import ckpt
from tests.helpers import drills
from tests.helpers.ckpt import ckpt_cli, file_hashes
from tests.helpers.launch import run_mpi
from tests.mpi.programs import ckpt_kill as prog

PROGRAM = "tests/mpi/programs/ckpt_kill.py"
TRIALS, CHAINS, SAVES, KEEP, SEED = drills.rounds(24, 50), 2, 3, 2, 20240606
LAUNCH_TIMEOUT = 90
# How the launcher reports the victim's death: Open MPI "exited on signal 9 (Killed)" on
# stderr, MPICH "EXIT STRING: Killed (signal 9)" on stdout.
SIGKILL_REPORT = re.compile(r"signal:?\s*9\b", re.IGNORECASE)


# ------------------------------------------------------------------ what the job must have saved

class Replay:
    """The tables after step t, replayed in NumPy float32 the way the AdaGrad kernel does."""

    def __init__(self):
        self.steps = [self._empty()]
        self.lock = threading.Lock()  # the chains' threads share it

    @staticmethod
    def _empty():
        zeros = np.zeros((prog.DENSE, prog.WIDTH), np.float32)
        return {"dense": (None, zeros, zeros.copy()), "sparse": {}}

    def at(self, step: int) -> dict:
        """{"dense"/"sparse": (keys, values, accum)} after ``step``."""
        with self.lock:
            self._extend(step)
        state = self.steps[step]
        keys = np.array(sorted(state["sparse"]), np.uint64)
        values = np.array([state["sparse"][int(k)][0] for k in keys], np.float32).reshape(-1, 1)
        accum = np.array([state["sparse"][int(k)][1] for k in keys], np.float32).reshape(-1, 1)
        return {"dense": state["dense"], "sparse": (keys, values, accum)}

    def _extend(self, step: int) -> None:
        while len(self.steps) <= step:
            t = len(self.steps)
            _, values, accum = (a.copy() if a is not None else a for a in self.steps[-1]["dense"])
            _adagrad(values, accum, prog.dense_grads(t), prog.DENSE_LR)
            sparse = dict(self.steps[-1]["sparse"])
            for key, g in zip(*prog.sparse_push(t)):
                v, a = sparse.get(int(key), (np.zeros(1, np.float32), np.zeros(1, np.float32)))
                v, a = v.copy(), a.copy()
                _adagrad(v, a, np.array([g], np.float32), prog.SPARSE_LR)
                sparse[int(key)] = (v, a)
            self.steps.append({"dense": (None, values, accum), "sparse": sparse})


def _adagrad(values, accum, grads, lr):
    lr, eps = np.float32(lr), np.float32(1e-8)
    accum += grads * grads
    values -= lr * grads / (np.sqrt(accum) + eps)


REPLAY = Replay()


def check_contents(path: Path, step: int) -> tuple[str, str]:
    """Assert the checkpoint at ``path`` holds the tables after ``step``, bit for bit;
    returns the sha256 of its dense and sparse values (what a restore must pull)."""
    want = REPLAY.at(step)
    digests = []
    for name in ("dense", "sparse"):
        rows = ckpt.read_table(path, name)
        keys, values, accum = want[name]
        if keys is not None:
            np.testing.assert_array_equal(rows.keys, keys, err_msg=f"{path} {name} keys")
        np.testing.assert_array_equal(rows.values.view(np.uint32), values.view(np.uint32),
                                      err_msg=f"{path} {name} values")
        np.testing.assert_array_equal(rows.state["accum"].view(np.uint32),
                                      accum.view(np.uint32), err_msg=f"{path} {name} accum")
        digests.append(prog.digest(rows.values))
    return digests[0], digests[1]


# ------------------------------------------------------------------------- one launch, parsed

@dataclass
class Trial:
    chain: int
    index: int
    servers: int
    victim: str
    kill_at: int | None = None
    delay: float | None = None
    saves: int = SAVES
    # filled in after the launch
    returncode: int | None = None
    killed: bool = False
    mid_save: bool = False
    reported_sigkill: bool = False
    where: str = "-"
    phase: str = "-"
    event: int | None = None
    restored: int | None = None
    newest: int | None = None
    acked: int = 0
    attempted: int = 0
    restored_digests: tuple | None = None
    restored_from: int | None = None  # servers that wrote the checkpoint it restored
    seconds: float = 0.0  # the launch
    check_seconds: float = 0.0
    leftovers: dict = field(default_factory=dict)
    output: str = field(default="", repr=False)


def read_trace(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def phase_of(lines: list[str]) -> str:
    """Where an event trace ends: the outermost mpips.ckpt call still open ("prune",
    "write_shard", ...), "MPI wait" inside a save but in none of them (a gather, an
    agreement, the reply), or "no save" between saves."""
    stack, in_save = [], False
    for line in lines:
        if not line.startswith("E "):
            continue
        kind, _, name = line.split()[4].partition(":")
        if kind == "call" and not name.startswith("os."):
            stack.append(name)
        elif kind == "ret" and name in stack:
            del stack[len(stack) - 1 - stack[::-1].index(name):]
        elif kind in ("save-begin", "save-end"):
            stack, in_save = [], kind == "save-begin"
    return stack[0] if stack else "MPI wait" if in_save else "no save"


def launch(trial: Trial, root: Path, traces: Path, incremental: bool = False) -> Trial:
    prefix = traces / f"c{trial.chain}-t{trial.index:02d}"
    argv = [PROGRAM, "--root", str(root), "--servers", str(trial.servers), "--saves",
            str(trial.saves), "--keep", str(KEEP), "--victim", trial.victim, "--trace",
            str(prefix), "--trace-ranks", "all"] + (["--incremental"] if incremental else [])
    if trial.kill_at is not None:
        argv += ["--kill-at", str(trial.kill_at)]
    if trial.delay is not None:
        argv += ["--kill-delay", f"{trial.delay:.4f}"]
    start = time.perf_counter()
    proc = run_mpi(trial.servers + 1, argv, timeout=LAUNCH_TIMEOUT)
    trial.seconds = time.perf_counter() - start
    trial.returncode = proc.returncode
    output = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    ranks = {}
    for path in traces.glob(f"{prefix.name}-rank*.log"):
        lines = read_trace(path)
        ranks[lines[0].split()[1] if lines else path.name] = lines
    worker = ranks.get("worker0", [])
    for line in worker:
        word, *rest = line.split()
        if word == "RESTORED":
            trial.restored, trial.restored_digests = int(rest[0]), (rest[1], rest[2])
        elif word == "SAVE":
            trial.attempted = int(rest[0])
        elif word == "SAVED":
            trial.acked = int(rest[0])
    kills = [line.split() for line in ranks.get(trial.victim, []) if line.startswith("KILL ")]
    if kills:
        _, n, in_save, _how, label = kills[0]
        trial.killed, trial.mid_save, trial.event = True, in_save == "1", int(n)
        trial.where = label
        if trial.victim == "worker0":  # where server 0 was when the job was torn down
            lines = ranks.get("server0", [])
            last = [line.split()[4] for line in lines if line.startswith("E ")][-1:]
            trial.phase, trial.where = f"s0:{phase_of(lines)}", f"s0:{''.join(last) or '-'}"
        else:
            trial.phase = phase_of(ranks[trial.victim])
        assert proc.returncode != 0, f"{trial}: the victim died but the launch exited 0\n{output}"
        trial.reported_sigkill = bool(SIGKILL_REPORT.search(proc.stdout + proc.stderr))
    else:
        assert proc.returncode == 0, f"{trial}: no kill, yet exit {proc.returncode}\n{output}"
    trial.output = output
    return trial


# ----------------------------------------------------------------------------- the checks

@dataclass
class Chain:
    """One checkpoint root relaunched over and over, and what the test knows of it."""

    root: Path
    traces: Path
    incremental: bool = False  # every launch saves with --incremental
    newest: int = 0
    newest_servers: int | None = None
    digests: tuple | None = None
    valid_hashes: dict = field(default_factory=dict)  # step -> file hashes when first valid


def check_after(chain: Chain, trial: Trial) -> None:
    """Everything that must hold after a launch, killed or not."""
    context = (f"chain {trial.chain} trial {trial.index} ({trial.victim}, kill_at="
               f"{trial.kill_at}, delay={trial.delay}, died at {trial.where})\n{trial.output}")
    # The launch restored what the previous one left as newest valid, on its server count.
    assert trial.restored == chain.newest, context
    if chain.newest:
        assert trial.restored_digests == chain.digests, f"restore differs\n{context}"
    # The newest valid checkpoint: at least the last save the worker saw succeed, at most the
    # last one it started; it verifies at the strictest level and holds that step's tables.
    info = ckpt.newest_valid(chain.root, warn=lambda message: None, level="full")
    assert info is not None, context
    low, high = max(trial.acked, chain.newest), max(trial.attempted, chain.newest)
    assert low <= info.step <= high, f"newest valid {info.step} not in [{low}, {high}]\n{context}"
    report = ckpt.verify(info.path, "full")
    assert report.ok, f"{report.errors}\n{context}"
    trial.newest = info.step
    chain.digests = check_contents(info.path, info.step)
    # Every valid checkpoint verifies, holds its step's tables, and a checkpoint that was
    # valid before never changed; invalid directories are all newer than the newest valid.
    infos = ckpt.list_checkpoints(chain.root, level="full")
    valid = [i for i in infos if i.valid]
    assert valid[0].step == info.step
    assert [i.step for i in valid[:2]] == [s for s in (info.step, info.step - 1) if s >= 1], \
        f"the checkpoint before the newest is gone or damaged: {infos}\n{context}"
    for i in valid:
        check_contents(i.path, i.step)
        hashes = file_hashes(i.path)
        before = chain.valid_hashes.setdefault(i.step, hashes)
        assert hashes == before, f"valid checkpoint {i.path} changed\n{context}"
    for i in infos:
        if not i.valid:
            assert i.step > info.step, f"older checkpoint {i.path} invalid: {i.reason}\n{context}"
    trial.leftovers = leftovers(chain.root, infos)
    chain.newest, chain.newest_servers = info.step, info.num_servers


def leftovers(root: Path, infos) -> dict:
    """What crashed saves left behind (all ignored by readers): directories of an interrupted
    prune, temporary files, uncommitted step directories."""
    return {"pruned dirs": len(list(root.glob(".pruned-*"))),
            "tmp files": len([p for p in root.rglob("*") if ".tmp-" in p.name]),
            "uncommitted dirs": len([i for i in infos if not i.valid])}


def check_cli(chain: Chain) -> None:
    """``mpips ckpt ls`` lists the newest valid step as valid; ``verify`` passes it."""
    listing = ckpt_cli("ls", str(chain.root), "--level", "sha256")
    assert listing.returncode == 0, listing.stderr
    rows = {int(line.split()[0]): line for line in listing.stdout.splitlines()[1:]
            if line.split() and line.split()[0].isdigit()}
    assert rows[chain.newest].endswith("valid"), listing.stdout
    checked = ckpt_cli("verify", str(chain.root / ckpt.step_dir_name(chain.newest)), "-q")
    assert checked.returncode == 0 and checked.stdout.startswith("OK:"), checked.stderr


# ----------------------------------------------------------------------------- the plan

PROTOCOL_PHASES = ("prepare_checkpoint_dir", "write_shard", "commit", "prune")
"""The parts of server 0's save that kill-at trials must reach (prepare_checkpoint_dir is a
few events of each save: strata alone missed it in about one run in ten)."""


def calibrate(chain: Chain, chain_index: int) -> dict:
    """A complete launch from an empty root saving steps 1..2*SAVES; the last SAVES saves
    (each one prunes, as in a trial) give the number of protocol events per server and how
    long three saves take."""
    trial = launch(Trial(chain_index, 0, 2, "none", saves=2 * SAVES), chain.root, chain.traces,
                   chain.incremental)
    check_after(chain, trial)
    assert trial.newest == 2 * SAVES
    events, window, points = {}, 0.0, {}
    for path in chain.traces.glob("c*-t00-rank*.log"):
        lines = read_trace(path)
        role = lines[0].split()[1]
        if not role.startswith("server"):
            continue
        stamps = [line.split() for line in lines if line.startswith("E ")]
        first = [s[4] for s in stamps].index(f"save-begin:{SAVES + 1}")
        stamps = stamps[first:]
        labels = {s[4] for s in stamps}
        for needed in ("hook:shard-synced", "call:os.fsync", "call:publish") + (
                ("hook:manifest-start", "hook:committed", "call:prune")
                + (() if chain.incremental else ("call:os.rename",))  # a chain is kept whole
                if role == "server0" else ()):
            assert needed in labels, f"{role} never reached {needed}: {sorted(labels)}"
        events[role] = len(stamps)
        window = max(window, float(stamps[-1][3]) - float(stamps[0][3]))
        if role == "server0":  # the events at which a kill lands in each part of the first
            traced = [" ".join(stamp) for stamp in stamps]  # save (a trial's counts alike)
            end = [s[4] for s in stamps].index(f"save-end:{SAVES + 1}")
            for n in range(1, end + 1):
                points.setdefault(phase_of(traced[:n]), []).append(n)
    assert events["server0"] >= 100 and events["server1"] >= 40, events
    assert set(PROTOCOL_PHASES) <= set(points), sorted(points)
    return {"events": events, "window": window, "points": points}


def plan_chain(chain_index: int, calibration: dict, rng: random.Random, count: int) -> list:
    """``count`` trials: ~2/3 kill a server at event N (for server 0, one N inside each of
    PROTOCOL_PHASES of its first save, the others stratified over the calibrated events),
    ~1/3 kill a server or the worker after a random delay within the saves."""
    by_delay = count // 3
    at_s0 = (count - by_delay) * 5 // 8
    plan = []
    for phase in PROTOCOL_PHASES:  # each part of the protocol once, whatever the strata hit
        point = rng.choice(calibration["points"][phase])
        plan.append(Trial(chain_index, 0, 2, "server0", kill_at=point))
    for victim, n in (("server0", at_s0 - len(PROTOCOL_PHASES)),
                      ("server1", count - by_delay - at_s0)):
        total = calibration["events"][victim]
        for k in range(n):
            point = 1 + int((k + rng.random()) * total / n)
            plan.append(Trial(chain_index, 0, 2, victim, kill_at=point))
    for k in range(by_delay):
        servers = (2, 1, 3)[k % 3]
        victim = ("worker0", "server0", f"server{servers - 1}")[(k // 3 + k) % 3]
        plan.append(Trial(chain_index, 0, servers, victim,
                          delay=rng.uniform(0.0, calibration["window"])))
    rng.shuffle(plan)
    for i, trial in enumerate(plan, start=1):
        trial.index = i
    return plan


def run_chain(chain_index: int, base: Path, count: int, incremental: bool = False
              ) -> list[Trial]:
    chain = Chain(base / f"root{chain_index}", base / f"traces{chain_index}", incremental)
    chain.traces.mkdir(parents=True)
    calibration = calibrate(chain, chain_index)
    trials = plan_chain(chain_index, calibration, random.Random(SEED + chain_index), count)
    for trial in trials:
        trial.restored_from = chain.newest_servers
        launch(trial, chain.root, chain.traces, incremental)
        start = time.perf_counter()
        check_after(chain, trial)
        trial.check_seconds = time.perf_counter() - start
        if chain_index == 0 and trial.index == 1:
            check_cli(chain)
    # A last, clean launch restores on yet another server count and saves on.
    final = Trial(chain_index, count + 1, 1 if chain_index == 0 else 3, "none",
                  restored_from=chain.newest_servers)
    check_after(chain, launch(final, chain.root, chain.traces, incremental))
    assert final.newest == final.restored + SAVES
    check_cli(chain)
    return trials + [final]


def summary(trials: list[Trial]) -> str:
    lines = [(f"{'trial':<6} {'S':>4} {'victim':<8} {'how':<12} {'rc':>4} {'mid':>3} "
              f"{'event':>5} {'phase':<22} {'label':<28} restored->newest  left p/t/u  "
              "launch+check")]
    for t in trials:
        how = (f"at {t.kill_at}" if t.kill_at is not None else
               f"delay {t.delay:.3f}" if t.delay is not None else "no kill")
        servers = f"{t.restored_from or '-'}>{t.servers}"
        lines.append(f"{t.chain}/{t.index:<4} {servers:>4} {t.victim:<8} {how:<12} "
                     f"{t.returncode:>4} {'yes' if t.mid_save else '':>3} "
                     f"{t.event if t.event is not None else '-':>5} "
                     f"{t.phase:<22} {t.where:<28} {t.restored:>3} -> {t.newest:<3} "
                     f"{'/'.join(map(str, t.leftovers.values())):>9}  "
                     f"{t.seconds:.2f}+{t.check_seconds:.2f} s")
    died = [t for t in trials if t.killed]
    remapped = sum(1 for t in trials if t.restored and t.restored_from != t.servers)
    phases = {}
    for t in died:
        key = f"{t.phase}{'' if t.mid_save else ' (not mid-save)'}"
        phases[key] = phases.get(key, 0) + 1
    lines.append(f"{len(died)} of {len(trials)} launches died by SIGKILL, "
                 f"{sum(t.mid_save for t in died)} mid-save, {remapped} restored on another "
                 f"server count; where: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(phases.items())))
    last = {t.chain: t.leftovers for t in trials}  # after each chain's final clean launch
    lines.append(f"left p/t/u: .pruned-* directories / *.tmp-* files / uncommitted step "
                 f"directories; at the end: {last}")
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("incremental", [False, True], ids=["full", "incremental"])
def test_sigkill_of_a_rank_mid_checkpoint_always_leaves_the_newest_valid_one(tmp_path,
                                                                              incremental):
    """``incremental`` (issue 19): every save after a chain's first is a delta of the one
    before (a launch's first save builds on the checkpoint it restored), so the kills land in
    delta saves, restores follow chains of dozens of deltas onto other server counts, and
    pruning (--keep 2) must keep every checkpoint the newest builds on."""
    counts = [TRIALS // CHAINS + (c < TRIALS % CHAINS) for c in range(CHAINS)]
    with ThreadPoolExecutor(CHAINS) as pool:
        futures = [pool.submit(run_chain, c, tmp_path, counts[c], incremental)
                   for c in range(CHAINS)]
        launches = [t for f in futures for t in f.result()]
    print(summary(launches))
    if incremental:  # the newest checkpoint of each root is a delta on a chain from step 1
        for c in range(CHAINS):
            newest = ckpt.list_checkpoints(tmp_path / f"root{c}")[0]
            assert newest.valid and newest.parent is not None and newest.chain[0] == 1, newest
            print(f"root {c}: step {newest.step} is a delta at depth {newest.depth}")
    trials = [t for t in launches if t.victim != "none"]
    assert len(trials) == TRIALS
    died = [t for t in trials if t.killed]
    mid_save = [t for t in died if t.mid_save]
    assert len(mid_save) > TRIALS // 2, \
        f"only {len(mid_save)} of {TRIALS} trials died mid-save\n{summary(trials)}"
    assert all(t.reported_sigkill for t in died), summary(trials)
    # The kill-at trials reached every part of the protocol ...
    phases = {t.phase for t in mid_save if t.kill_at is not None}
    assert set(PROTOCOL_PHASES) <= phases, phases
    # ... and both outcomes happened: the interrupted step lost, and already committed.
    assert any(t.newest == t.restored for t in died) and any(t.newest > t.restored for t in died)
    # Restores re-partitioned checkpoints onto other server counts (1 worker + 1 or 3 servers
    # restoring 2 servers' shards and back) and pulled exactly the saved values.
    remapped = [t for t in launches if t.restored and t.restored_from != t.servers]
    assert len(remapped) >= 6 and {t.servers for t in remapped} >= {1, 2, 3}, summary(launches)


@pytest.mark.parametrize("kill_at", [3, 9, 18, 30])
def test_a_server_killed_mid_save_is_survived_with_replicas(tmp_path, ulfm, kill_at):
    """Issue 17: with replicas, a server that dies inside a save (at event ``kill_at`` of the
    write protocol) does not end the job: the other servers take over its segments and save
    without it, and every checkpoint of the launch is committed and holds the tables after
    its step, bit for bit. Without ULFM (MPICH) the launch ends as a lost rank and the
    newest checkpoint is still valid and right."""
    root, trace = tmp_path / "ck", tmp_path / "trace"
    argv = [PROGRAM, "--root", str(root), "--servers", "3", "--replicas", "1", "--saves", "3",
            "--victim", "server1", "--kill-at", str(kill_at), "--trace", str(trace)]
    proc = run_mpi(4, argv, timeout=LAUNCH_TIMEOUT, ft=ulfm)
    killed = [line.split() for line in Path(f"{trace}-rank2.log").read_text().splitlines()
              if line.startswith("KILL ")]
    assert killed and killed[0][2] == "1", f"server 1 did not die inside a save: {killed}"
    print(f"server 1 died at event {kill_at}: {' '.join(killed[0][4:])}")
    if not ulfm:
        assert proc.returncode != 0
        newest = ckpt.newest_valid(root)
        if newest is not None:
            check_contents(newest.path, newest.step)
        return
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"server 1 \(rank 2\) died", proc.stderr), proc.stderr[-3000:]
    for step in (1, 2, 3):
        check_contents(root / ckpt.step_dir_name(step), step)
        assert ckpt.verify(root / ckpt.step_dir_name(step), level="full").ok


def test_after_a_server_died_with_replicas_the_next_incremental_save_is_full(tmp_path, ulfm):
    """Issue 19: incremental saves with replicas. Server 1 dies inside the delta save of step
    2; the survivor that took over its segments did not track their changes, so that save is
    written full (server 0 says why), and the next one is a delta again. Every checkpoint holds
    its step's tables bit for bit. Without ULFM the launch ends as a lost rank and the newest
    valid checkpoint (a chain) is right."""
    root, trace = tmp_path / "ck", tmp_path / "trace"
    argv = [PROGRAM, "--root", str(root), "--servers", "3", "--replicas", "1", "--saves", "4",
            "--victim", "server1", "--kill-at", "100", "--trace", str(trace), "--incremental",
            "--keep", "4"]
    proc = run_mpi(4, argv, timeout=LAUNCH_TIMEOUT, ft=ulfm)
    killed = [line.split() for line in Path(f"{trace}-rank2.log").read_text().splitlines()
              if line.startswith("KILL ")]
    assert killed and killed[0][2] == "1", f"server 1 did not die inside a save: {killed}"
    if not ulfm:
        assert proc.returncode != 0
        newest = ckpt.newest_valid(root)
        if newest is not None:
            check_contents(newest.path, newest.step)
        return
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "full, not incremental: server" in proc.stderr and "took over a server that died" \
        in proc.stderr, proc.stderr[-3000:]
    parents = {}
    for step in (1, 2, 3, 4):
        path = root / ckpt.step_dir_name(step)
        check_contents(path, step)
        assert ckpt.verify(path, level="full").ok
        parents[step] = ckpt.load_manifest(path).parent
    assert parents[1] is None and parents[4] is not None and parents[4]["step"] == 3
    assert any(parents[s] is None for s in (2, 3)), parents  # the save after the death

