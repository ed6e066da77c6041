"""mpips.launch.startup (what a rank of ``mpips run`` does from its first line) and the helpers of
mpips.launch.processes it works with, each in a fresh interpreter: signals and parent death are
process-wide, and pytest's own process must keep its handlers."""
import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.helpers.data import REPO_ROOT
from tests.helpers.nompi import assert_works_without_mpi4py


def python(code: str, *args, timeout: float = 60, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_startup_and_ranks_import_without_mpi4py_numpy_or_numba():
    assert_works_without_mpi4py(
        "import mpips.cli.main\n"
        "assert not [m for m in ('numpy', 'numba') if m in sys.modules], sorted(sys.modules)\n",
        "mpips.launch.startup", "mpips.launch.ranks", "mpips.launch.processes")


def test_a_held_signal_is_handed_to_the_handler_that_takes_over():
    proc = python("""
        import os, signal
        from mpips.launch import startup
        startup.hold_stop_signals()
        os.kill(os.getpid(), signal.SIGUSR1)    # would kill the process unheld
        print("alive, held", startup.held())
        got = []
        startup.take_over(lambda signum, frame: got.append(signal.Signals(signum).name))
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        print("handler got", got)
        startup.release()                        # a handler took over: nothing changes
        os.kill(os.getpid(), signal.SIGTERM)
        print("still alive", got[-1])
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["alive, held SIGUSR1",
                                        "handler got ['SIGUSR1', 'SIGUSR1', 'SIGTERM']",
                                        "still alive SIGTERM"]


def test_once_the_job_returned_stop_signals_are_ignored_down_to_the_os():
    """Python gives the handlers it installed their default action back as the interpreter
    ends, before MPI_Finalize (an exit hook of mpi4py) runs: a SIGUSR1 there killed ranks
    whose job had finished and saved (a SLURM job that had completed was requeued).
    job_done ignores the stop signals at the OS level (SIG_IGN, which Python leaves alone)."""
    proc = python("""
        import os, signal
        from mpips.launch import startup
        startup.hold_stop_signals()
        startup.take_over(lambda signum, frame: print("handled", signum, flush=True))
        startup.job_done()
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        ignored = int(next(line for line in open("/proc/self/status")
                           if line.startswith("SigIgn:")).split()[1], 16)
        print([bool(ignored >> (s - 1) & 1) for s in (signal.SIGUSR1, signal.SIGTERM)])
        startup.release()   # the job is done: nothing gives the defaults back
        os.kill(os.getpid(), signal.SIGUSR1)
        print("alive")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[True, True]", "alive"]


def test_sigterm_before_the_job_can_save_is_a_clean_stop(tmp_path):
    """SIGTERM (scancel, a time limit: SIGKILL follows) while the rank starts: nothing of the
    run to save yet, so it leaves at once with 75 and says so, rather than dying of it."""
    proc = python("""
        import os, signal
        from mpips.launch import startup
        startup.begin()
        os.kill(os.getpid(), signal.SIGTERM)
        print("not reached", flush=True)
    """, env={"MPIPS_STARTUP_DIR": str(tmp_path)})
    assert proc.returncode == 75 and proc.stdout == "", proc.stderr
    assert "got SIGTERM while starting" in proc.stderr
    assert sorted(p.name.rsplit(".", 1)[1] for p in tmp_path.iterdir()) == ["exit-75", "held"]


def test_a_program_that_never_reported_its_start_up_leaves_no_exit_marker(tmp_path):
    """A plain program calling mpips.init (not mpips run) that leaves through
    mpips.mpi.fault.leave: a lone exit marker would make the launcher judge its start-up."""
    proc = python("""
        from mpips.mpi.fault import leave
        leave(0)
    """, env={"MPIPS_STARTUP_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_a_handler_the_held_signal_takes_effect_at_release():
    proc = python("""
        import os, signal
        from mpips.launch import startup
        startup.hold_stop_signals()
        os.kill(os.getpid(), signal.SIGUSR1)
        print("held", flush=True)
        startup.release()
        print("not reached", flush=True)
    """)
    assert proc.returncode == -signal.SIGUSR1 and proc.stdout == "held\n", proc.stderr


def test_markers_report_the_stages_of_a_rank(tmp_path):
    proc = python("""
        import os, sys
        from mpips.launch import startup
        startup.report(startup.HELD)
        startup.report(startup.READY)
        startup.report_exit(2)
        print(os.getpid())
    """, env={"MPIPS_STARTUP_DIR": str(tmp_path)})
    pid = proc.stdout.strip()
    stages = sorted(p.name.rsplit(".", 1)[1] for p in tmp_path.iterdir())
    assert stages == ["exit-2", "held", "ready"]
    assert all(p.name.split(".")[0].endswith(f"-{pid}") for p in tmp_path.iterdir())


def test_the_line_of_an_aborting_rank_is_left_for_the_launcher_and_judges_no_start_up(tmp_path):
    """MPI_Abort may outrun the forwarding of what the rank printed: the line is kept in
    aborts/, which the start-up watch (mpips.launch.ranks) does not take for a marker."""
    from mpips.launch import startup
    from mpips.launch.ranks import StartupWatch

    for line in ("[mpips rank 2/3] error: ReplicaStreamError: batch 8", "[mpips rank 0/3] x"):
        proc = python("""
            import sys
            from mpips.launch import startup
            startup.report_abort(sys.argv[1])
        """, line, env={"MPIPS_STARTUP_DIR": str(tmp_path)})
        assert proc.returncode == 0, proc.stderr
        time.sleep(0.01)  # distinct modification times: the launcher repeats them in order
    assert startup.aborts(str(tmp_path)) == ["[mpips rank 2/3] error: ReplicaStreamError: "
                                             "batch 8", "[mpips rank 0/3] x"]
    assert StartupWatch(os.getpid(), ["x"], str(tmp_path))._markers() == {}
    assert startup.aborts(str(tmp_path / "missing")) == []
    assert python("from mpips.launch import startup; startup.report_abort('x')",
                  env={"MPIPS_STARTUP_DIR": ""}).returncode == 0


def test_a_rank_dies_with_its_parent(tmp_path):
    """The parent starts a child that asked for PR_SET_PDEATHSIG, then is SIGKILLed: the
    child goes too, at once (it used to run on, re-parented to PID 1)."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "from mpips.launch import startup; startup.die_with_parent(); import time; "
            "print('child ready', flush=True); time.sleep(120)"])
        print(child.pid, flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    child = int(parent.stdout.readline())
    assert parent.stdout.readline() == "child ready\n"  # printed after its prctl
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:].split()[0] not in (b"Z", b"X")


def test_block_term_runs_a_command_with_sigterm_blocked():
    proc = subprocess.run([sys.executable, "-m", "mpips.launch.processes", "--block-term", "--",
                           "grep", "SigBlk", "/proc/self/status"], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    mask = int(proc.stdout.split()[1], 16)
    assert mask & (1 << (signal.SIGTERM - 1))


def test_stop_requests_turn_the_first_signal_into_a_request_and_the_second_into_an_end():
    proc = python("""
        import os, signal
        from mpips.launch.processes import StopRequests, Terminated
        with StopRequests() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            print("requested", stop.signal)
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except Terminated:
                print("terminated")
        print("restored", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    """)
    assert proc.stdout.splitlines() == ["requested SIGTERM", "terminated", "restored True"], \
        proc.stderr


def test_ulfm_is_refused_outside_open_mpis_mpirun_naming_the_launcher():
    """Issue 22: Open MPI supports ULFM only under its own mpirun (PRRTE sets PRTE_LAUNCHED)."""
    from mpips.launch.startup import launch_rank, ulfm_refusal

    assert ulfm_refusal({}) is None
    assert ulfm_refusal({"OMPI_MCA_mpi_ft_enable": "1", "PRTE_LAUNCHED": "1"}) is None
    under_srun = ulfm_refusal({"OMPI_MCA_mpi_ft_enable": "1", "SLURM_JOB_ID": "12",
                               "SLURM_STEP_ID": "0"})
    assert "started by srun (SLURM job 12, step 0)" in under_srun and "\n" not in under_srun
    assert "mpirun --with-ft ulfm" in under_srun
    alone = ulfm_refusal({"OMPI_MCA_mpi_ft_enable": "1"})
    assert "something other than Open MPI's mpirun" in alone
    assert launch_rank({"SLURM_PROCID": "3"}) == 3 and launch_rank({"PMI_RANK": "0"}) == 0
    assert launch_rank({}) is None


def test_mpips_run_under_ulfm_without_mpirun_is_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, "-m", "mpips", "run", "sparse_lr"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env={**os.environ, "OMPI_MCA_mpi_ft_enable": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("mpips run: error: ULFM fault tolerance")
