"""tests.helpers.live_launch.remove_stale_mpi_files: what killed launches leave in /tmp goes,
what a live or starting launch uses stays (run on a fake /tmp)."""
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.helpers import live_launch
from tests.helpers.live_launch import remove_stale_mpi_files


def aged(path, seconds=60.0):
    path.mkdir(parents=True)
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_what_killed_launches_of_either_wheel_left_goes_when_no_launcher_runs(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(live_launch, "_mpi_launcher_running", lambda: False)
    stale = aged(tmp_path / "ompi.vm.0" / "jf.0" / "1042481152")
    (stale / "0").mkdir()
    os.utime(stale, (time.time() - 60, time.time() - 60))
    starting = tmp_path / "ompi.vm.0" / "jf.0" / "203882496"
    starting.mkdir()
    dead_pid = aged(tmp_path / "ompi.999999999")  # no such process
    live_pid = aged(tmp_path / f"ompi.{os.getpid()}")
    dead_daemon = aged(tmp_path / "prted.999999998" / "1")  # a killed host's PRRTE daemon
    live_daemon = aged(tmp_path / f"prted.{os.getpid()}")
    topology = tmp_path / "hydra_hwloc_xmlfile_8rXLKC"  # a killed mpiexec.hydra's
    topology.write_text("<topology/>")
    os.utime(topology, (time.time() - 60, time.time() - 60))
    assert remove_stale_mpi_files(tmp=tmp_path) >= 4  # and any stale /dev/shm segment
    assert not stale.exists() and not dead_pid.exists()
    assert not dead_daemon.parent.exists() and not topology.exists()
    assert starting.exists() and live_pid.exists() and live_daemon.exists()


def test_job_directories_stay_while_an_mpi_launcher_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(live_launch, "_mpi_launcher_running", lambda: True)
    job = aged(tmp_path / "ompi.vm.0" / "jf.0" / "1042481152")
    topology = tmp_path / "hydra_hwloc_xmlfile_AvowNE"
    topology.write_text("<topology/>")
    os.utime(topology, (time.time() - 60, time.time() - 60))
    remove_stale_mpi_files(tmp=tmp_path)
    assert job.exists() and topology.exists()


def test_a_launcher_is_recognised_by_its_process_name(tmp_path):
    fake = tmp_path / "prterun"  # a process named as Open MPI 5's launcher
    shutil.copy(shutil.which("sleep"), fake)
    proc = subprocess.Popen([str(fake), "30"])
    try:
        for _ in range(500):  # its comm is set once the exec is done
            if (Path(f"/proc/{proc.pid}/comm").read_text().strip() == "prterun"):
                break
            time.sleep(0.01)
        assert live_launch._mpi_launcher_running()
    finally:
        proc.kill()
        proc.wait()
