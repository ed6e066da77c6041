"""Launches that span two hosts (the two-host tier: tests.helpers.two_hosts; collected only
with MPIPS_TEST_HOSTS=2, where every launch of the session spans host A and host B).

Ranks alternate between the hosts, so servers and workers sit on both; sparse LR trains to
the same model as on one host, bitwise under BSP; losing host B (its daemon and ranks killed
at once) ends the launch as a lost rank, which Open MPI's mpirun alone would report as exit
0, and a relaunch resumes from the newest checkpoint and finishes; a silent loss (B's link
down) is noticed through TCP keepalive settings."""
import os

from mpips.cli.sweep import last_json
from mpips.errors import EXIT_RANK_LOST
from tests.helpers.data import w8a_path
from tests.helpers.launch import launch, run_mpi
from tests.helpers.live_launch import LiveLaunch, lingering
from tests.helpers.results import final_metrics

WHERE = ("from mpi4py import MPI; import socket; "
         "print('HOST', MPI.COMM_WORLD.Get_rank(), socket.gethostname(), flush=True)")


def sparse_lr(*extra):
    return ["-m", "mpips", "run", "sparse_lr", "--servers", "4", "--data", str(w8a_path()),
            "--seed", "3", *extra]


def one_host(two_hosts) -> dict[str, str]:
    """This environment without the settings that make launches span two hosts."""
    return {k: v for k, v in os.environ.items() if k not in two_hosts.spanning_names}


def test_ranks_alternate_between_the_two_hosts(two_hosts):
    proc = run_mpi(4, ["-c", WHERE], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hosts = {int(rank): host for _, rank, host in
             (line.split() for line in proc.stdout.splitlines() if line.startswith("HOST "))}
    assert hosts == {0: two_hosts.a_name, 1: two_hosts.b_name, 2: two_hosts.a_name,
                     3: two_hosts.b_name}


def test_sparse_lr_on_two_hosts_trains_the_one_host_model_bitwise_under_bsp(two_hosts):
    """2 servers and 2 workers per host (8 ranks, servers = ranks 4..7): the same model as the
    same launch on one host, to the bit, and so the same accuracy."""
    argv = sparse_lr("--epochs", "2", "--consistency", "bsp", "--quiet")
    spanning = final_metrics(launch(8, argv, timeout=300))
    local = final_metrics(launch(8, argv, timeout=300, environ=one_host(two_hosts)))
    assert spanning["model_sha256"] == local["model_sha256"]
    assert spanning["test_accuracy"] == local["test_accuracy"] > 0.97
    assert spanning["servers"] == 4 and spanning["workers"] == 4


def test_losing_host_b_is_a_lost_rank_and_a_relaunch_resumes(two_hosts, tmp_path):
    """Host B dies after the first checkpoint: Open MPI's runtime ends the job (it cannot
    run through a lost daemon) and mpirun exits 0; mpips launch says which ranks never
    finished, ends as a lost rank (76), and with --relaunch resumes from the checkpoint."""
    ckpt = tmp_path / "ckpt"
    argv = sparse_lr("--epochs", "4", "--replicas", "1", "--checkpoint-dir", str(ckpt),
                     "--checkpoint-every", "1", "--resume")
    for relaunch in (0, 1):
        with LiveLaunch(8, argv, ft=True, relaunch=relaunch) as run:
            assert run.wait_for("checkpoint step", 240, stream="out"), run.out + run.err
            assert two_hosts.pids_on_b()
            two_hosts.lose_b()
            code = run.finish(timeout=300)
        if relaunch == 0:
            assert code == EXIT_RANK_LOST, run.err
            assert "rank(s) never finished" in run.err and f"{two_hosts.b_name}-" in run.err
        else:
            assert code == 0, run.err
            assert "relaunching on 7 ranks" in run.err
            metrics = last_json(run.out)
            assert metrics["resumed_from_step"] > 0 and metrics["test_accuracy"] > 0.97
        assert not lingering(str(ckpt)), "a rank outlived its launch"


def test_a_silent_loss_of_host_b_is_noticed_through_keepalive_settings(two_hosts, tmp_path):
    """Host B's link goes down without a word (no connection is closed): with the keepalive
    settings the README gives, Open MPI's runtime notices the lost daemon and the launch
    ends as a lost rank (by default it would wait minutes)."""
    keepalive = {"PRTE_MCA_oob_tcp_keepalive_time": "1", "PRTE_MCA_oob_tcp_keepalive_intvl": "1",
                 "PRTE_MCA_oob_tcp_keepalive_probes": "2"}
    ckpt = tmp_path / "ckpt"
    argv = sparse_lr("--epochs", "20", "--checkpoint-dir", str(ckpt), "--checkpoint-every", "1")
    with LiveLaunch(6, argv, env=keepalive) as run:
        try:
            assert run.wait_for("checkpoint step", 240, stream="out"), run.out + run.err
            two_hosts.cut_link()
            code = run.finish(timeout=120)
        finally:
            two_hosts.lose_b()  # what is left of host B after its daemon gave up
            two_hosts.mend_link()
    assert code == EXIT_RANK_LOST, run.err
    assert "lost communication with a remote daemon" in run.err
    assert "rank(s) never finished" in run.err
