"""Which mpips modules a plain operation runs through, in a real launch.

tests/mpi/programs/call_path.py (1 server, 1 worker, no replicas, an async table without
codec) prints, per rank, the source files of every mpips function a probed stretch ran. A
plain push of several chunks (so its verdict path runs) and a plain pull, each with its wait,
must not run the code of resending after a dead server, of codecs, or of fault handling;
nor must a ``clock()`` or ``close()`` without replicas. On the server, serving them must not
run the code of dead workers, replication, whole (BSP or coded) pushes, or faults.
"""
import json

import pytest

from tests.helpers.launch import run_mpi

PROGRAMS = "tests/mpi/programs"

NOT_ON_A_PLAIN_PATH = ["mpips/worker/failover.py", "mpips/worker/coded.py",
                       "mpips/wire/codec.py", "mpips/wire/keycache.py", "mpips/mpi/fault.py"]
NOT_ON_A_PLAIN_SERVE = NOT_ON_A_PLAIN_PATH + [
    "mpips/server/survivors.py", "mpips/server/replication.py", "mpips/server/copies.py",
    "mpips/server/replica_stream.py", "mpips/server/whole_pushes.py", "mpips/wire/replica.py"]


@pytest.fixture(scope="module")
def ranks() -> dict:
    """role -> the CALLS line of that rank (one server, one worker)."""
    proc = run_mpi(2, [f"{PROGRAMS}/call_path.py"], timeout=180)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [json.loads(line[len("CALLS "):]) for line in proc.stdout.splitlines()
             if line.startswith("CALLS ")]
    assert sorted(line["role"] for line in lines) == ["server", "worker"], proc.stdout
    return {line["role"]: line for line in lines}


@pytest.mark.parametrize("probe", ["push_wait", "pull_wait", "clock", "close"])
def test_plain_operations_on_the_worker_run_no_failover_codec_or_fault_code(ranks, probe):
    got = ranks["worker"]["probes"][probe]
    assert "mpips/worker/kvworker.py" in got["files"]  # the probe saw the worker's own code
    assert not set(NOT_ON_A_PLAIN_PATH) & set(got["files"]), got["calls"]


def test_the_probed_push_took_the_verdict_path_and_the_pull_read_it(ranks):
    probes = ranks["worker"]["probes"]
    assert probes["push_wait"]["chunks"] > 1
    assert "mpips/worker/kvworker.py:_judge" in probes["push_wait"]["calls"]
    assert probes["pull_wait"]["pulled_right"]


def test_serving_plain_operations_runs_no_failure_replication_or_codec_code(ranks):
    got = ranks["server"]["probes"]["serve"]
    for call in ["mpips/server/kvserver.py:_handle", "mpips/server/verdict.py:wait_withdrawn",
                 "mpips/server/segments.py:slice_for", "mpips/server/channel.py:reply"]:
        assert call in got["calls"], call  # the probe saw the push, its verdict, the pull
    assert not set(NOT_ON_A_PLAIN_SERVE) & set(got["files"]), got["calls"]
