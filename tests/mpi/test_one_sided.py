"""One-sided pulls (mpips.mpi.onesided) return exactly what two-sided pulls return, on 1-3
servers, through shared-memory views and through Win.Get, also while a server is busy in a
long update (tests/mpi/programs/one_sided.py)."""
import pytest

from tests.helpers.launch import run_mpi
from tests.helpers.results import result_of

PROGRAM = "tests/mpi/programs/one_sided.py"


ONE_NODE = pytest.mark.one_node  # shared-memory windows: ranks on one node only


@pytest.mark.parametrize("servers,mode,consistency", [
    pytest.param(1, "shared", "async", marks=ONE_NODE), (2, "get", "async"),
    pytest.param(3, "shared", "async", marks=ONE_NODE), (3, "get", "async"),
    pytest.param(2, "shared", "bsp", marks=ONE_NODE), (2, "get", "bsp")])
def test_one_sided_pulls_equal_two_sided_pulls(servers, mode, consistency):
    got = result_of(run_mpi(servers + 2, [PROGRAM, "--servers", str(servers), "--consistency",
                                          consistency], env={"MPIPS_RMA": mode}, timeout=180))
    assert got["mode"] == mode
    for worker in (got, got["worker1"]):
        assert all(worker["w1"].values()), worker["w1"]
        assert all(worker["w3"].values()), worker["w3"]
    if consistency == "async":
        # worker 1 kept reading while a server applied a long update, and read right
        assert got["worker1"]["right"] and got["worker1"]["pulls_during_busy"] >= 1
