"""SPMD program for tests/mpi/test_kv.py: semantics of the KVWorker API beyond plain sums.

Worker 0 prints ``RESULT <json>``; every check is recorded as data, the test asserts.
"""
import argparse
import ctypes
import json
import os

import numpy as np

import mpips
from mpips.kernels import codec as codec_kernels
from mpips.mpi.transport import TIMER_SLACK_NANOSECONDS
from mpips.kernels import reference


def errors_of(kv, table, dense):
    """Type and message of the error each bad call raises (None if it does not raise)."""
    cases = {
        "push_unsorted": lambda: kv.push(table, np.array([5, 3], np.uint64), np.ones(2)),
        "push_duplicate": lambda: kv.push(table, np.array([3, 3], np.uint64), np.ones(2)),
        "push_negative": lambda: kv.push(table, np.array([-1, 2]), np.ones(2)),
        "push_nan": lambda: kv.push(table, np.array([1, 2], np.uint64), np.array([1.0, np.nan])),
        "push_shape": lambda: kv.push(table, np.array([1, 2], np.uint64), np.ones(3)),
        "pull_unsorted": lambda: kv.wait(kv.pull(table, np.array([9, 4], np.uint64))),
        "pull_duplicate": lambda: kv.wait(kv.pull(table, np.array([4, 4], np.uint64))),
        "pull_out_of_range": lambda: kv.wait(kv.pull(dense, np.array([0, 10_000], np.uint64))),
        "push_out_of_range": lambda: kv.push(dense, np.array([0, 10_000], np.uint64), np.ones(2)),
        "unknown_table": lambda: kv.pull("nope", np.array([1], np.uint64)),
        "float_keys": lambda: kv.pull(table, np.array([1.0, 2.0])),
    }
    out = {}
    for name, call in cases.items():
        try:
            call()
            out[name] = None
        except mpips.MpipsError as exc:
            out[name] = [type(exc).__name__, str(exc)]
    return out


def rules_match_reference(kv, sgd, ada, keys, rounds):
    """Push the same gradients through the servers and through the NumPy reference."""
    rng = np.random.default_rng(0)
    ref_v = {"sgd": np.zeros((keys.size, 1), np.float32), "adagrad": np.zeros((keys.size, 1), np.float32)}
    accum = np.zeros((keys.size, 1), np.float32)
    rows = np.arange(keys.size, dtype=np.int64)
    for _ in range(rounds):
        g = rng.standard_normal((keys.size, 1)).astype(np.float32)
        kv.wait(kv.push(sgd, keys, g))
        kv.wait(kv.push(ada, keys, g))
        reference.apply_sgd(ref_v["sgd"], rows, g, np.float32(0.5))
        reference.apply_adagrad(ref_v["adagrad"], accum, rows, g, np.float32(0.3), np.float32(1e-6))
    got_sgd = kv.wait(kv.pull(sgd, keys)).reshape(-1, 1)
    got_ada = kv.wait(kv.pull(ada, keys)).reshape(-1, 1)
    return {"sgd_max_err": float(np.abs(got_sgd - ref_v["sgd"]).max()),
            "adagrad_max_err": float(np.abs(got_ada - ref_v["adagrad"]).max())}


def in_flight_and_chunks(kv, table):
    """Many requests in flight; a multi-chunk push whose keys are partly new mid-chunk."""
    old = np.arange(0, 2**64 - 2**50, 2**50, dtype=np.uint64)[:300_000]
    ts = [kv.push(table, old, np.ones(old.size)) for _ in range(3)]
    pull_ts = kv.pull(table, old)  # same server, posted after the pushes: sees all three
    after_three = kv.wait(pull_ts)
    for t in ts:
        kv.wait(t)
    mixed = np.unique(np.concatenate([old[::2], old[:1000] + np.uint64(1)]))
    both = kv.wait(kv.push_pull(table, mixed, np.full(mixed.size, 2.0)))
    expect = np.where(np.isin(mixed, old), 5.0, 2.0)
    out = np.empty(old.size, np.float32)
    same = kv.wait(kv.pull(table, old, out=out)) is out
    try:
        kv.wait(pull_ts)
        twice = None
    except ValueError as exc:
        twice = str(exc)
    return {"after_three_pushes_min": float(after_three.min()), "after_three_pushes_max": float(after_three.max()),
            "push_pull_ok": bool(np.array_equal(both, expect)), "out_is_returned": bool(same),
            "wait_twice": twice}


def dependencies_and_callbacks(kv, table):
    """``after=`` completes the named operations first (running their callbacks), ``poll``
    completes what is done without blocking."""
    keys = np.array([11, 12], np.uint64)
    events = []
    t_push = kv.push(table, keys, np.full(2, 7.0), callback=lambda r: events.append("push done"))
    t_pull = kv.pull(table, keys, after=[t_push],
                     callback=lambda r: events.append(["pulled", r.tolist()]))
    events.append("pull posted")
    pulled = kv.wait(t_pull).tolist()
    push_result = kv.wait(t_push)  # completed as a dependency: its result is still there
    t_poll = kv.pull(table, keys)
    polled = []
    while t_poll not in polled:
        polled += kv.poll()
    return {"events": events, "pulled": pulled, "push_result": push_result,
            "polled_value": kv.wait(t_poll).tolist()}


def key_cache_miss_is_resent(kv, coded):
    """A coded push naming a key list the server no longer holds (as after its LRU evicted
    it) is resent with full keys: nothing is lost, nothing applied twice."""
    keys = np.arange(5, 500, 7, dtype=np.uint64) * np.uint64(2**55)
    kv.wait(kv.push(coded, keys, np.ones(keys.size)))  # full keys: both sides cache them
    for other in range(70):  # evict them from the server's LRU (and the worker's)
        kv.wait(kv.push(coded, keys + np.uint64(other + 1), np.zeros(keys.size)))
    sent = kv.coded.sent_keys[(coded.name, 0)]  # the worker still believes the server has them
    signature = int(codec_kernels.key_signature(keys))
    sent.add(signature)
    kv.wait(kv.push(coded, keys, np.full(keys.size, 2.0)))
    return {"values": sorted(set(kv.wait(kv.pull(coded, keys)).tolist())),
            "bytes_per_kv": kv.traffic.report()[coded.name]["bytes_per_kv"]}


def bad_push_changes_nothing(kv, tables):
    """A multi-chunk push spanning every server, made bad only in its last chunk (a NaN, an
    unsorted key), is withdrawn: every table reads back bit for bit as before, including
    optimizer state (checked by a later good push) and sparse keys that would be new."""
    n = 1_000_000  # several chunks per server
    out = {}
    for name, table in tables.items():
        size = kv.tables[table.name].size
        k = np.arange(n, dtype=np.uint64) * np.uint64(size // n)
        grads = np.linspace(-1, 1, k.size, dtype=np.float32)
        kv.wait(kv.push(table, k[::2], grads[::2]))  # half the keys exist, half would be new
        before = kv.wait(kv.pull(table, k)).copy()
        bad_nan = grads.copy()
        bad_nan[-1] = np.nan
        unsorted = k.copy()
        unsorted[-2], unsorted[-1] = unsorted[-1], unsorted[-2]
        raised = []
        for bad_keys, bad_grads in ((k, bad_nan), (unsorted, grads)):
            try:
                kv.push(table, bad_keys, bad_grads)
                raised.append(None)
            except mpips.MpipsError as exc:
                raised.append(type(exc).__name__)
        after = kv.wait(kv.pull(table, k))
        kv.wait(kv.push(table, k, grads))  # a good push after the bad ones
        good = kv.wait(kv.pull(table, k))
        out[name] = {"raised": raised,
                     "unchanged": bool(np.array_equal(before.view(np.uint32), after.view(np.uint32))),
                     "good_push_changed": bool(not np.array_equal(good, after))}
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--servers", type=int, default=2)
    a = p.parse_args()
    cpus_before = sorted(os.sched_getaffinity(0))
    with mpips.init(servers=a.servers) as ps:
        table = ps.sparse_table("plain")
        dense = ps.dense_table("dense", 10_000, init=0.25)
        sgd = ps.dense_table("sgd", 5_000, rule="sgd", lr=0.5)
        ada = ps.sparse_table("ada", rule="adagrad", lr=0.3, eps=1e-6)
        big = ps.dense_table("big", 1_000_000, rule="adagrad", lr=0.1)
        coded = ps.sparse_table("coded", codec="keycache")

        def work(kv):
            if kv.worker_rank != 0:
                return None
            result = {"errors": errors_of(kv, table, dense)}
            # PR_GET_TIMERSLACK (Linux): the slack mpips.init gave this rank's sleeps
            result["cpus"] = {"before": cpus_before, "after": sorted(os.sched_getaffinity(0)),
                              "ranks": ps.topology.size}
            result["timer_slack_ns"] = [ctypes.CDLL(None).prctl(30, 0, 0, 0, 0),
                                        TIMER_SLACK_NANOSECONDS]
            result["init_pull"] = kv.wait(kv.pull(dense, np.array([0, 9_999], np.uint64))).tolist()
            keys = np.arange(0, 5_000, 7, dtype=np.uint64)
            result.update(rules_match_reference(kv, sgd, ada, keys, rounds=4))
            result.update(in_flight_and_chunks(kv, table))
            result["dependencies"] = dependencies_and_callbacks(kv, table)
            result["key_cache_miss"] = key_cache_miss_is_resent(kv, coded)
            result["bad_push"] = bad_push_changes_nothing(
                kv, {"sparse_sum": table, "dense_adagrad": big, "sparse_adagrad": ada})
            return result

        result = ps.run(work)
        if ps.is_worker and ps.worker_rank == 0:
            print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
