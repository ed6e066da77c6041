"""SPMD program for tests/mpi/test_checkpoint_kill.py: checkpoint every step while one rank
SIGKILLs itself somewhere inside the checkpoint write protocol.

Every launch restores the newest valid checkpoint under --root (none on the first launch:
step 0), then for steps s+1 .. s+--saves pushes deterministic AdaGrad gradients (a known
function of the step, see ``dense_grads``/``sparse_push``), ends the step and saves a
checkpoint of that step (keeping --keep; with --incremental, a delta of the checkpoint
before: one chain from the first, full, save on). The victim (--victim server0|server1|...|worker0)
dies by SIGKILL either

- at protocol event number --kill-at (counted from the first save of this launch): an event
  is a crash point of mpips.ckpt.durable (``crash_hook``), or the entry/return of a function
  of mpips.ckpt that does file operations, or of an ``os`` file call made while the rank is
  inside a save (wrapped here, in the program: the library is unchanged); or
- --kill-delay seconds after its first save began (a timer thread), wherever it then is.

The worker, the victim, and with --trace-ranks all every rank, append one line per event to
``<trace>-rank<R>.log`` with unbuffered writes, so the test learns where a rank died although
it never exits cleanly: ``ROLE <role>``, ``E <n> <in_save> <seconds since its first event>
<label>``, ``KILL <n> <in_save> at|delay <last label>``, and on the worker ``RESTORED <step>
<dense sha256> <sparse sha256>`` (of the rows it pulled after the restore), ``SAVE <step>``,
``SAVED <step> <seconds>``.
"""
import argparse
import functools
import hashlib
import os
import signal
import threading
import time

import numpy as np

import mpips
from mpips.mpi.fault import leave
from mpips.ckpt import checkpoint as mpips_checkpoint
from mpips import ckpt
from mpips.ckpt import catalog, chunkio, durable, shardfile, writer

DENSE, WIDTH, BASE_KEYS, KEYS_PER_STEP = 256, 2, 64, 8
DENSE_LR, SPARSE_LR = 0.1, 0.2

# --------------------------------------------------------------- the data, a function of step

def sparse_key_of(i):
    """A key spread over the whole uint64 space (so every server holds some)."""
    return (np.asarray(i, np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(0x5BD1E995)


def dense_grads(step: int) -> np.ndarray:
    """Gradient of every dense row at ``step`` (dyadic: exact in float32)."""
    k = np.arange(DENSE)[:, None]
    j = np.arange(WIDTH)[None, :]
    return (((k * 7 + j * 3 + step * 5) % 11 - 5) / 4).astype(np.float32)


def sparse_push(step: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted keys, gradients) of the sparse push at ``step``: the base keys plus
    KEYS_PER_STEP keys new at this step, so a checkpoint's key set names its step."""
    idx = np.concatenate([np.arange(BASE_KEYS), BASE_KEYS + (step - 1) * KEYS_PER_STEP
                          + np.arange(KEYS_PER_STEP)])
    grads = (((idx + step) % 9 - 4) / 8).astype(np.float32)
    keys = sparse_key_of(idx)
    order = np.argsort(keys)
    return keys[order], grads[order]


def sparse_keys_at(step: int) -> np.ndarray:
    """Every key pushed by steps 1..step, sorted."""
    return np.sort(sparse_key_of(np.arange(BASE_KEYS + step * KEYS_PER_STEP)))


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, np.float32).tobytes()).hexdigest()


# --------------------------------------------------------------------------- the kill switch

class Trace:
    """Counts the protocol events of this rank while it is inside a save, logs them, and
    SIGKILLs the rank at event ``kill_at`` (or when the ``arm_delay`` timer fires)."""

    def __init__(self, path: str | None, kill_at: int | None, counting: bool):
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self.fd = None if path is None else os.open(path, flags, 0o644)
        self.kill_at, self.counting = kill_at, counting
        self.n, self.in_save, self.last, self.t0 = 0, False, "start", None
        self.lock = threading.RLock()  # the fsync thread of fsync_and_hash has events too
        self.timer = None

    def line(self, text: str) -> None:
        if self.fd is not None:
            os.write(self.fd, (text + "\n").encode())

    def event(self, label: str) -> None:
        if not (self.counting and self.in_save):
            return
        with self.lock:
            now = time.perf_counter()
            self.t0 = now if self.t0 is None else self.t0
            self.n, self.last = self.n + 1, label
            self.line(f"E {self.n} {int(self.in_save)} {now - self.t0:.4f} {label}")
            if self.kill_at is not None and self.n == self.kill_at:
                self.die("at")

    def die(self, how: str) -> None:
        with self.lock:
            self.line(f"KILL {self.n} {int(self.in_save)} {how} {self.last}")
            os.kill(os.getpid(), signal.SIGKILL)

    def arm_delay(self, delay: float | None) -> None:
        """Start the delayed kill (the first call only)."""
        if delay is not None and self.timer is None:
            self.timer = threading.Timer(delay, self.die, args=("delay",))
            self.timer.daemon = True
            self.timer.start()


TRACE: Trace | None = None

# Functions of mpips.ckpt that touch files (looked up by name in every module that imported
# them, so ``from .durable import publish`` in writer.py is wrapped too). Names that a future
# version no longer has are skipped; the test checks the calibration saw enough events.
FILE_FUNCTIONS = ("prepare_checkpoint_dir", "write_shard", "write_hdf5", "write_chunks",
                  "fsync_and_hash", "sha256_file", "fsync_path", "publish",
                  "write_bytes_durably", "commit", "prune", "inspect_checkpoint")
OS_FUNCTIONS = ("fsync", "replace", "link", "unlink", "rename", "mkdir", "rmdir")


def _wrapped(name, fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        TRACE.event(f"call:{name}")
        result = fn(*args, **kwargs)
        TRACE.event(f"ret:{name}")
        return result
    return call


def install_kill_points() -> None:
    """Turn every file operation of a server's save into a counted event (servers only)."""
    modules = (ckpt, durable, writer, shardfile, chunkio, catalog)
    for name in FILE_FUNCTIONS:
        originals = {id(getattr(m, name)): getattr(m, name) for m in modules if hasattr(m, name)}
        for original in originals.values():
            wrapper = _wrapped(name, original)
            for m in modules:
                if getattr(m, name, None) is original:
                    setattr(m, name, wrapper)
    for name in OS_FUNCTIONS:
        setattr(os, name, _wrapped(f"os.{name}", getattr(os, name)))
    durable.crash_hook = lambda label: TRACE.event(f"hook:{label}")
    original = mpips_checkpoint.SaveCoordinator._write_and_commit

    def write_and_commit(self, order):
        TRACE.in_save = True
        TRACE.event(f"save-begin:{order['step']}")
        TRACE.arm_delay(ARGS.kill_delay if ARGS.victim == ROLE else None)
        try:
            return original(self, order)
        finally:
            TRACE.event(f"save-end:{order['step']}")
            TRACE.in_save = False

    # The servers' side of one save (collective over the servers); if it is ever renamed,
    # this raises AttributeError above and the test fails at its calibration launch.
    mpips_checkpoint.SaveCoordinator._write_and_commit = write_and_commit


# ------------------------------------------------------------------------------------ main

ARGS = None
ROLE = None


def main():
    global ARGS, ROLE, TRACE
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--replicas", type=int, default=0,
                   help="copies of each key range (a ULFM launch survives the victim server)")
    p.add_argument("--saves", type=int, default=3, help="checkpoints this launch writes")
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--incremental", action="store_true",
                   help="save incrementally: each save a delta of the checkpoint before (the "
                        "servers write a full one when there is none)")
    p.add_argument("--victim", default="none", help="server<i>, worker0 or none")
    p.add_argument("--kill-at", type=int, default=None)
    p.add_argument("--kill-delay", type=float, default=None)
    p.add_argument("--trace", default=None, help="trace file prefix")
    p.add_argument("--trace-ranks", default="victim", help="victim or all")
    ARGS = a = p.parse_args()
    with mpips.init(servers=a.servers, replicas=a.replicas) as ps:
        ROLE = f"server{ps.server_rank}" if ps.is_server else f"worker{ps.worker_rank}"
        traced = a.trace is not None and (a.trace_ranks == "all" or a.victim == ROLE
                                          or ps.is_worker)
        TRACE = Trace(f"{a.trace}-rank{ps.rank}.log" if traced else None,
                      a.kill_at if a.victim == ROLE else None, counting=traced)
        TRACE.line(f"ROLE {ROLE}")
        if ps.is_server:
            install_kill_points()
        dense = ps.dense_table("dense", DENSE, width=WIDTH, rule="adagrad", lr=DENSE_LR,
                               consistency="bsp")
        sparse = ps.sparse_table("sparse", rule="adagrad", lr=SPARSE_LR, consistency="bsp")
        restored = ps.restore(a.root)
        first = 0 if restored is None else int(restored["checkpoint_step"])

        def work(kv):
            rows = kv.wait(kv.pull(dense, np.arange(DENSE, dtype=np.uint64)))
            srows = kv.wait(kv.pull(sparse, sparse_keys_at(first))) if first else np.empty(0)
            TRACE.line(f"RESTORED {first} {digest(rows)} {digest(srows)}")
            for step in range(first + 1, first + a.saves + 1):
                kv.wait(kv.push(dense, np.arange(DENSE, dtype=np.uint64), dense_grads(step)))
                kv.wait(kv.push(sparse, *sparse_push(step)))
                kv.clock()
                TRACE.line(f"SAVE {step}")
                TRACE.in_save = True
                if ROLE == a.victim:
                    TRACE.arm_delay(a.kill_delay)
                t0 = time.perf_counter()
                kv.save_checkpoint(a.root, step, {"step": step}, keep=a.keep,
                                   incremental=a.incremental)
                TRACE.in_save = False
                TRACE.line(f"SAVED {step} {time.perf_counter() - t0:.4f}")
            return first

        ps.run(work)
    TRACE.line("EXIT")
    if ps.survived_a_failure:  # MPI_Finalize could wait for the dead server forever
        leave(0)


if __name__ == "__main__":
    main()
