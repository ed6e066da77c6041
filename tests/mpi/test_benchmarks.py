"""The benchmarks run and report well-formed figures (never asserts on their speed)."""
import json
import os
import subprocess
import sys

import pytest

from tests.helpers.launch import REPO_ROOT


def test_kv_throughput_reports_mpips_next_to_floor(tmp_path):
    out = tmp_path / "kv.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/kv_throughput.py", "--keys", "200000",
                           "--servers", "2", "--workers", "1", "--rounds", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=240,
                          cwd=REPO_ROOT, env={**os.environ, "MPIPS_BENCH_LAUNCHED": "",
                                              "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {(r["system"], r["op"]) for r in rows} == {
        ("mpips", "push"), ("mpips", "pull"), ("mpi-floor", "push"), ("mpi-floor", "pull")}
    for row in rows:
        assert row["keys"] == 200000 and row["servers"] == 2 and row["workers"] == 1
        assert row["mkv_per_s"] > 0
    assert all(r["correct"] for r in rows if r["system"] == "mpips")
    assert all(0 < r["fraction_of_floor"] for r in rows if r["system"] == "mpips")
    assert len(out.read_text().splitlines()) == 4


def test_kv_minibatch_reports_every_op_next_to_its_floor_and_the_store_size(tmp_path):
    """Zipf minibatches with new keys on 2 servers and 2 workers, the table filled in arrival
    order and saved: each op's figures next to the bare-MPI floor, the fill rate and the
    servers' bytes per stored key; then the same from the saved table, restored."""
    out = tmp_path / "mb.jsonl"
    rows = _minibatch(out, "--fill", "arrival", "--save", str(tmp_path / "saved"))
    _check_minibatch_rows(rows, "arrival", fills=True)
    assert len(out.read_text().splitlines()) == len(rows)
    memory = next(r for r in rows if r["op"] == "memory")
    # the table's 50,000 keys, plus the new keys the pushes brought (10 % of each request)
    assert 50_000 < memory["stored_keys"] < 50_000 + 2 * 3 * 7 * 3000
    assert 12 < memory["bytes_per_key"] < 200 and memory["rss_bytes_per_key"] > 0
    restored = _minibatch(out, "--restore", str(tmp_path / "saved"))
    _check_minibatch_rows(restored, "restored", fills=False)
    again = next(r for r in restored if r["op"] == "memory")
    # every saved key came back; the same seed draws the same requests, new keys included
    assert again["stored_keys"] == memory["stored_keys"]
    missing = _minibatch(out, "--restore", str(tmp_path / "none"), code=1)
    assert "no checkpoint of --keys 50000" in missing


def _minibatch(out, *extra, code=0):
    """kv_minibatch's rows on a 50,000-key table (its output when it must fail with ``code``)."""
    proc = subprocess.run([sys.executable, "benchmarks/kv_minibatch.py", "--keys", "50000",
                           "--draws", "3000", "--steps", "5", "--warmup", "2",
                           "--new-fraction", "0.1", "--servers", "2", "--workers", "2",
                           "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=240,
                          cwd=REPO_ROOT, env={**os.environ, "MPIPS_BENCH_LAUNCHED": "",
                                              "PYTHONPATH": str(REPO_ROOT)})
    if code:
        assert proc.returncode == code, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _check_minibatch_rows(rows, fill, fills):
    """Each op's figures next to its floor, the fill rate when the table was filled (not
    restored), and the store's size."""
    pairs = {(r["system"], r["op"]) for r in rows}
    assert pairs == {(system, op) for system in ("mpips", "mpi-floor")
                     for op in ("push", "pull", "pull-push")} | \
        {("mpips", "memory")} | ({("mpips", "fill")} if fills else set())
    for row in rows:
        if row["op"] in ("push", "pull", "pull-push"):
            assert row["servers"] == 2 and row["workers"] == 2 and row["new_fraction"] == 0.1
            assert row["mkv_per_s"] > 0 and 0 < row["p50_us"] <= row["p99_us"]
            assert 500 < row["keys_per_request"] < 3000
        if row["op"] != "memory":
            assert row["fill"] == fill
    assert all(r["fraction_of_floor"] > 0 for r in rows if r["system"] == "mpips"
               and "fraction_of_floor" in r)


@pytest.mark.long
def test_kv_throughput_codec_switch_reports_bytes_on_the_wire(tmp_path):
    """A repeated push of a cached key set costs the values plus a few header bytes."""
    proc = subprocess.run([sys.executable, "benchmarks/kv_throughput.py", "--keys", "100000",
                           "--servers", "2", "--workers", "1", "--rounds", "2", "--codec",
                           "keycache", "--out", ""],
                          capture_output=True, text=True, timeout=240,
                          cwd=REPO_ROOT, env={**os.environ, "MPIPS_BENCH_LAUNCHED": "",
                                              "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    pushes = {r["codec"]: r for r in rows if r["system"] == "mpips" and r["op"] == "push"}
    assert set(pushes) == {"", "keycache"}
    assert pushes[""]["push_bytes_per_kv"] > 12.0  # keys, values, headers and verdicts
    assert 4.0 <= pushes["keycache"]["push_bytes_per_kv"] <= 5.0
    assert all(r["correct"] for r in rows if r["system"] == "mpips")


@pytest.mark.long
def test_kv_throughput_dense_section_reports_rma_two_sided_and_latency():
    proc = subprocess.run([sys.executable, "benchmarks/kv_throughput.py", "--keys", "20000",
                           "--servers", "1", "--workers", "2", "--rounds", "2", "--dense",
                           "--latency-reps", "50", "--out", ""],
                          capture_output=True, text=True, timeout=240,
                          cwd=REPO_ROOT, env={**os.environ, "MPIPS_BENCH_LAUNCHED": "",
                                              "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    dense = [r for r in rows if r.get("table") == "dense"]
    assert {(r["op"], r["path"], r.get("server")) for r in dense} == {
        ("pull", "rma", None), ("pull", "two-sided", None),
        ("pull-latency", "rma", "idle"), ("pull-latency", "two-sided", "idle"),
        ("pull-latency", "rma", "busy"), ("pull-latency", "two-sided", "busy"),
        ("pull-latency", "send-recv", "idle")}
    assert all(r["correct"] for r in dense if r["op"] == "pull")
    assert all(0 < r["p50_us"] <= r["p99_us"] and r["reps"] == 50
               for r in dense if r["op"] == "pull-latency")


@pytest.mark.slow
def test_recovery_reports_kills_next_to_the_bare_mpi_floor(tmp_path):
    """Two kills: worker 0 (ULFM: the others carry on; MPICH: relaunch), then worker 1."""
    out = tmp_path / "recovery.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/recovery.py", "--kills", "2", "--epochs",
                           "6", "--out", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    kills = [r for r in rows if not r.get("summary")]
    ulfm = kills[0]["ulfm"]
    assert [r["kill"] for r in kills if r["system"] == "mpips"] == [0, 1]
    assert {r["path"] for r in kills if r["system"] == "bare-mpi"} == (
        {"live", "relaunch"} if ulfm else {"relaunch"})
    for row in kills:
        if row["path"] == "live":
            assert 0 < row["recovery_s"] and row.get("launch_exit", 0) == 0
        else:
            assert row["launch_exit"] in (76, 9, 137)
            assert 0 < row["leave_s"] and 0 < row["resume_s"]
            assert abs(row["recovery_s"] - row["leave_s"] - row["resume_s"]) < 1e-3
    mpips_paths = {r["path"] for r in kills if r["system"] == "mpips"}
    assert mpips_paths == ({"live"} if ulfm else {"relaunch"})  # workers were killed
    summaries = {(r["system"], r["path"]) for r in rows if r.get("summary")}
    assert ("mpips", "live" if ulfm else "relaunch") in summaries
    assert len(out.read_text().splitlines()) == len(rows)


@pytest.mark.slow
def test_recovery_with_replicas_times_a_server_and_a_worker_that_the_job_survives(tmp_path,
                                                                                ulfm):
    """--replicas 1: kill 0 is a server's, kill 1 a worker's; both jobs carry on (ULFM).
    Without ULFM (MPICH) the benchmark refuses, naming why."""
    out = tmp_path / "recovery.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/recovery.py", "--replicas", "1",
                           "--kills", "2", "--ranks", "5", "--servers", "3", "--epochs", "6",
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    if not ulfm:
        assert proc.returncode != 0 and "needs Open MPI's ULFM" in proc.stderr
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    kills = [r for r in rows if not r.get("summary") and r["system"] == "mpips"]
    assert [(r["kill"], r["path"], r["rank"]) for r in kills] == [(0, "live-server", 2),
                                                                 (1, "live", 0)]
    for row in kills:
        assert row["launch_exit"] == 0 and 0 < row["detect_s"] <= row["recovery_s"]
    summaries = {(r["system"], r["path"]) for r in rows if r.get("summary")}
    assert {("mpips", "live-server"), ("mpips", "live"), ("bare-mpi", "live")} <= summaries
    assert len(out.read_text().splitlines()) == len(rows)


@pytest.mark.long
def test_incremental_reports_full_and_delta_saves_next_to_floors_and_restores_bitwise(tmp_path):
    """2 servers save a full checkpoint and 5 deltas of 1 % changes; 3 servers restore the
    chain: the model pulled is bitwise the saved one, and every delta holds fewer bytes."""
    out = tmp_path / "incremental.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/incremental.py", "--rows", "200000",
                           "--servers", "2", "--restore-servers", "3", "--timeout", "240",
                           "--dir", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT, env={**os.environ, "MPIPS_BENCH_LAUNCHED": "",
                                              "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    ops = [(r["system"], r.get("op")) for r in rows]
    assert ops.count(("mpips", "full-save")) == 2 and ops.count(("mpips", "delta-save")) == 5
    assert ops.count(("floor", "write")) == 7 and ops.count(("floor", "read")) == 2
    assert {("mpips", "restore-full"), ("mpips", "restore-chain")} <= set(ops)
    saves = [r for r in rows if r["system"] == "mpips" and r["op"].endswith("-save")]
    full = [r for r in saves if r["op"] == "full-save"]
    deltas = [r for r in saves if r["op"] == "delta-save"]
    assert [r["step"] for r in deltas] == [2, 3, 4, 5, 6]
    assert [r["depth"] for r in deltas] == [1, 2, 3, 4, 5] and all(r["delta"] for r in deltas)
    for r in deltas:  # exactly the changed rows are written: 1 % of the table
        assert r["changed_rows"] == r["rows_written"] == 2000
        assert 0 < r["bytes"] < min(f["bytes"] for f in full) and r["seconds"] > 0
    assert full[0]["rows_written"] == 200000 and full[1]["rows_written"] == 200000 + 5 * 200
    assert all(r["seconds"] > 0 and r["bytes"] > 0 for r in rows if r["system"] == "floor")
    chain = next(r for r in rows if r["op"] == "restore-chain")
    assert chain["step"] == 6 and chain["files"] == 6 * 3 and chain["restore_servers"] == 3
    assert chain["depth"] == 5
    summary = rows[-1]
    assert summary["system"] == "summary" and summary["bitwise_equal"] is True
    assert summary["digest"] == summary["digest_restored"] and summary["keys_pulled"] == 201000
    assert summary["bytes_ratio"] > 1 and summary["time_ratio"] > 0
    assert {type(summary["goal_bytes_20x"]), type(summary["goal_time_10x"])} == {bool}
    assert len(out.read_text().splitlines()) == len(rows)


@pytest.mark.long
def test_mf_reports_mpips_next_to_surprise_and_the_one_process_kernel(tmp_path):
    """benchmarks/mf.py on a small set: one line per system and a summary (no speed asserted)."""
    out = tmp_path / "mf.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/mf.py", "--ratings", "50000", "--users",
                           "2000", "--items", "500", "--rank", "10", "--epochs", "1",
                           "--batch-size", "2048", "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["system"] for r in rows] == ["mpips", "surprise", "kernel", "summary"]
    for row in rows[:3]:
        assert row["ratings_per_s"] > 0 and row["train_seconds"] > 0
    assert rows[0]["workers"] == 2 and 0.2 < rows[0]["test_rmse"] < 1.0
    assert 0.2 < rows[1]["test_rmse"] < 1.0
    assert isinstance(rows[3]["goal_rate_at_least_surprise"], bool)
    assert len(out.read_text().splitlines()) == len(rows)


@pytest.mark.long
def test_word2vec_reports_mpips_next_to_gensim_and_the_one_process_kernel(tmp_path):
    """benchmarks/word2vec.py with one seed: one line per system and a summary."""
    out = tmp_path / "word2vec.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/word2vec.py", "--seeds", "1", "--out",
                           str(out)], capture_output=True, text=True, timeout=900,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["system"] for r in rows] == ["gensim", "mpips", "kernel", "summary"]
    assert all(r["words_per_s"] > 0 for r in rows[:3])
    assert rows[0]["vocabulary"] == rows[1]["vocabulary"] == 7978
    assert 0.2 < rows[0]["spearman"] < 0.6 and 0.2 < rows[1]["spearman"] < 0.6
    assert isinstance(rows[3]["goal_rate_at_least_gensim"], bool)
    assert len(out.read_text().splitlines()) == len(rows)


@pytest.mark.long
def test_data_load_reports_every_mode_next_to_the_raw_read_floor(tmp_path):
    """A 5 MB text on 2 ranks: the whole parse, byte-range parts and .h5 rows all load every
    row, each figure next to the floor of reading the bytes."""
    out = tmp_path / "load.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/data_load.py", "--megabytes", "5",
                           "--ranks", "2", "--dir", str(tmp_path / "d"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["mode"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"whole", "parts", "h5", "floor"}
    assert rows["whole"]["rows"] == rows["parts"]["rows"] == rows["h5"]["rows"] > 10_000
    for row in rows.values():
        assert row["seconds"] > 0 and len(row["peak_mib_per_rank"]) == 2
        assert row["x_floor"] > 0 and 5e6 <= row["text_bytes"] < 8e6


def test_capacity_measures_its_constants_checks_the_model_and_works_the_examples(tmp_path):
    """Timing on 1+1 ranks, scaling launches on 2 and 3 servers with a replica: the model's
    byte counts match what the servers held and the workers sent, and the worked examples
    come out of the same constants."""
    out = tmp_path / "capacity.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/capacity.py", "--keys", "60000",
                           "--draws", "2000", "--steps", "3", "--servers", "2,3",
                           "--workers", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT, env={**os.environ, "MPIPS_BENCH_LAUNCHED": "",
                                              "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    timing = [r for r in rows if r["section"] == "timing"]
    assert {(r["op"], r["request_keys"]) for r in timing} == {
        (op, k) for op in ("push", "pull") for k in (16, 256, 4096, 32768)}
    assert all(r["mpips_p50_us"] > 0 and r["floor_p50_us"] > 0 for r in timing)
    scaling = {r["servers"]: r for r in rows if r["section"] == "scaling"}
    assert sorted(scaling) == [2, 3]
    for servers, row in scaling.items():
        # every key of every plain table is stored once, spread over the servers
        assert all(sum(row[f"rows_{rule}"]) == 60000 and len(row[f"rows_{rule}"]) == servers
                   for rule in ("sum", "adagrad", "ftrl"))
        assert row["store_bytes_adagrad_replicated"] > row["store_bytes_adagrad"] > 0
        assert row["checkpoint_bytes"] > 0 and row["save_seconds"] > 0
    checks = {(r["figure"], r["servers"]): r for r in rows if r["section"] == "check"}
    # the request and codec layouts predict the bytes on the wire, on both server counts
    for servers in (2, 3):
        for codec in ("raw", "varint", "varint,fp16", "varint,fixed8"):
            assert checks[f"wire_bytes_{codec}", servers]["within"], checks[f"wire_bytes_{codec}",
                                                                            servers]
        assert checks["fullest_share", servers]["within"]
    assert checks["store_bytes", 2]["error"] == 0.0  # the launch the constants come from
    examples = {r["servers"]: r for r in rows if r["section"] == "model"}
    assert sorted(examples) == [100, 1000]
    assert examples[100]["rows_per_server"] == 1e7 and examples[1000]["rows_per_server"] == 1e8
    assert examples[1000]["gib_per_server"]["adagrad"] > examples[100]["gib_per_server"]["adagrad"]
    assert len(out.read_text().splitlines()) == len(rows)
