"""The launcher itself: ranks start, see each other, print; hung launches fail loudly."""
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.launch import REPO_ROOT, run_mpi
from tests.helpers.live_launch import lingering

HELLO = textwrap.dedent("""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    total = comm.allreduce(comm.Get_rank())
    print(f"rank {comm.Get_rank()} of {comm.Get_size()} sum {total}", flush=True)
""")


def test_three_ranks_each_print_rank_and_size(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text(HELLO)
    proc = run_mpi(3, [script], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank "))
    assert lines == [f"rank {r} of 3 sum 3" for r in range(3)], proc.stdout + proc.stderr


@pytest.mark.long
def test_hung_launch_is_killed_and_fails_with_its_output(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text("import time\nfrom mpi4py import MPI\n"
                      "print('started', MPI.COMM_WORLD.Get_rank(), flush=True)\n"
                      "time.sleep(600)\n")
    with pytest.raises(AssertionError) as info:
        run_mpi(2, [script], timeout=15)
    message = str(info.value)
    assert "killed after 15 s" in message
    assert "started 0" in message and "started 1" in message
    assert not lingering(str(script)), "ranks survived the kill"


def test_mpips_launch_command_runs_python_module(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text(HELLO)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run([sys.executable, "-m", "mpips", "launch", "-n", "2", "--no-warmup",
                           "--timeout", "120", "--", str(script)],
                          capture_output=True, text=True, timeout=180, env=env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(l for l in proc.stdout.splitlines() if l.startswith("rank ")) == [
        "rank 0 of 2 sum 1", "rank 1 of 2 sum 1"]
