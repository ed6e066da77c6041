"""Push/pull through real MPI launches: exact sums, initial values, errors, layouts."""

import numpy as np
import pytest

from tests.helpers.launch import run_mpi
from tests.helpers.results import result_of
from tests.mpi.programs.kv_rounds import key_set

PROGRAMS = "tests/mpi/programs"


@pytest.mark.parametrize("servers", [1, 2, 3])
@pytest.mark.parametrize("kind,width", [("dense", 1), ("sparse", 2)])
def test_workers_push_rounds_and_pull_exact_sums(servers, kind, width):
    workers, rounds, size, init = 2, 3, 100_000, 0.5
    proc = run_mpi(servers + workers, [f"{PROGRAMS}/kv_rounds.py", "--servers", str(servers),
                                       "--kind", kind, "--width", str(width), "--rounds", str(rounds),
                                       "--size", str(size), "--init", str(init)], timeout=180)
    got = result_of(proc)
    per_round = rounds * (rounds + 1) // 2
    sets = [key_set(kind, w, size) for w in range(workers)]
    union = np.unique(np.concatenate(sets))
    expected = np.full(union.size, init)
    for w, keys in enumerate(sets):
        expected[np.isin(union, keys)] += (w + 1) * per_round
    assert got["num_keys"] == union.size
    assert got["total"] == pytest.approx(float(expected.sum()) * width, rel=0, abs=1e-3)
    sampled_keys = np.array([int(k) for k in got["keys"]], dtype=np.uint64)
    expect_sampled = expected[np.searchsorted(union, sampled_keys)]
    np.testing.assert_array_equal(np.array(got["sampled"]), np.repeat(expect_sampled[:, None], width, 1))
    assert got["unpushed"] and all(v == init for row in got["unpushed"] for v in row)


@pytest.fixture(scope="module")
def semantics():
    return result_of(run_mpi(4, [f"{PROGRAMS}/kv_semantics.py", "--servers", "2"], timeout=180))


@pytest.mark.parametrize("case,error,words", [
    ("push_unsorted", "KeyOrderError", ["key 3", "position 1", "sorted"]),
    ("push_duplicate", "KeyOrderError", ["duplicated", "position 1"]),
    ("push_negative", "KeyRangeError", ["-1", "negative"]),
    ("push_nan", "NonFiniteError", ["nan", "nothing was applied"]),
    ("push_shape", "ValueShapeError", ["(3,)", "(2, 1)"]),
    ("pull_unsorted", "KeyOrderError", ["key 4", "position 1"]),
    ("pull_duplicate", "KeyOrderError", ["duplicated"]),
    ("pull_out_of_range", "KeyRangeError", ["10000", "0..9999"]),
    ("push_out_of_range", "KeyRangeError", ["10000", "0..9999"]),
    ("unknown_table", "TableError", ["'nope'", "'plain'"]),
    ("float_keys", "KeyRangeError", ["integers", "float64"]),
])
def test_bad_keys_and_values_raise_clear_errors(semantics, case, error, words):
    kind, message = semantics["errors"][case]
    assert kind == error
    for word in words:
        assert word in message


@pytest.mark.parametrize("table", ["sparse_sum", "dense_adagrad", "sparse_adagrad"])
def test_a_push_bad_in_its_last_chunk_is_rolled_back_on_every_server(semantics, table):
    got = semantics["bad_push"][table]
    assert got["raised"] == ["NonFiniteError", "KeyOrderError"]
    assert got["unchanged"], "a withdrawn push changed the table"
    assert got["good_push_changed"]


def test_dependencies_callbacks_and_poll(semantics):
    got = semantics["dependencies"]
    assert got["events"] == ["push done", "pull posted", ["pulled", [7.0, 7.0]]]
    assert got["pulled"] == [7.0, 7.0] and got["push_result"] is None
    assert got["polled_value"] == [7.0, 7.0]


def test_a_key_cache_miss_is_resent_with_full_keys(semantics):
    assert semantics["key_cache_miss"]["values"] == [3.0]  # 1 + 2, the resend applied once


def test_pull_of_never_pushed_keys_returns_initial_value(semantics):
    assert semantics["init_pull"] == [0.25, 0.25]


def test_server_update_rules_match_numpy_reference(semantics):
    assert semantics["sgd_max_err"] == 0.0
    assert semantics["adagrad_max_err"] == 0.0


def test_requests_in_flight_chunks_and_push_pull(semantics):
    assert semantics["after_three_pushes_min"] == semantics["after_three_pushes_max"] == 3.0
    assert semantics["push_pull_ok"]
    assert semantics["out_is_returned"]
    assert "already waited" in semantics["wait_twice"]


def test_init_tightens_the_timer_slack_of_idle_sleeps(semantics):
    got, wanted = semantics["timer_slack_ns"]  # the kernel's default is 50,000 ns
    assert got == wanted <= 1000


def test_ranks_keep_their_cpus_unless_pinning_is_asked_for(semantics):
    cpus = semantics["cpus"]  # launched without MPIPS_PIN_RANKS
    assert cpus["after"] == cpus["before"]


@pytest.mark.one_node
def test_with_mpips_pin_ranks_ranks_that_outnumber_the_cores_share_them_servers_first():
    cpus = result_of(run_mpi(4, [f"{PROGRAMS}/kv_semantics.py", "--servers", "2"], timeout=180,
                             env={"MPIPS_PIN_RANKS": "1"}))["cpus"]
    if cpus["ranks"] > len(cpus["before"]):  # worker 0 comes after the 2 servers
        assert cpus["after"] == [cpus["before"][2 % len(cpus["before"])]]
    else:  # a core each: the scheduler places them
        assert cpus["after"] == cpus["before"]


@pytest.mark.parametrize("ranks,servers,words", [
    (3, 3, ["--servers 3", "leaves no worker", "at most 2"]),
    (3, 0, ["need at least 1 server"]),
    (2, 5, ["leaves no worker"]),
])
def test_impossible_layout_exits_nonzero_on_every_rank(ranks, servers, words):
    proc = run_mpi(ranks, ["-m", "mpips", "run", f"{PROGRAMS}/noop_job.py", "--servers", str(servers)],
                   timeout=60)
    assert proc.returncode != 0
    for rank in range(ranks):
        line = next((l for l in proc.stderr.splitlines() if f"[mpips rank {rank}/{ranks}] error:" in l), None)
        assert line is not None, f"rank {rank} said nothing\n{proc.stderr}"
        for word in words:
            assert word in line


def test_every_rank_of_a_node_learns_whether_their_cpu_sets_differ():
    proc = run_mpi(2, [f"{PROGRAMS}/cpu_sets.py"], timeout=60)
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("SETS "))
    assert lines == ["SETS 0 False True", "SETS 1 False True"], proc.stdout + proc.stderr
