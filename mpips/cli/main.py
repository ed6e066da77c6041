"""Command line: ``mpips run|launch|warmup`` (top layer).

``mpips run JOB [--servers S] [job options]`` runs on every rank of an SPMD launch
(``mpiexec -n P mpips run ...`` or ``srun ... mpips run ...``). JOB is a module of
mpips.jobs (the repository's jobs/ directory), a dotted module name, or a path to a .py file
that defines ``add_arguments(parser)`` and ``main(ps, args)``.

Importing this module is cheap (the subcommands load what they need), so that ``mpips run``
holds the stop signals and ties itself to its launcher (mpips.launch.startup) before numpy, numba
and mpi4py load.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
from pathlib import Path

from ..launch import startup
from ..errors import EXIT_RANK_LOST, EXIT_USAGE, RankLost, UsageError


def load_job(name: str):
    """The job module for ``name``: a .py path, a module of mpips.jobs, or a dotted name."""
    path = Path(name)
    if name.endswith(".py") or path.is_file():
        if not path.is_file():
            raise SystemExit(f"mpips run: no job file {name}")
        spec = importlib.util.spec_from_file_location(f"mpips_job_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    for candidate in (f"mpips.jobs.{name}", name):
        try:
            return importlib.import_module(candidate)
        except ModuleNotFoundError as exc:
            if exc.name not in (candidate, candidate.rsplit(".", 1)[0]):
                raise
    raise SystemExit(f"mpips run: no job named {name!r} (not mpips.jobs.{name}, not a module, "
                     f"not a .py file)")


class _JobParser(argparse.ArgumentParser):
    """A job's options: a parse error is a UsageError (one line from rank 0, exit 2), not a
    usage text from every rank."""

    def error(self, message):
        raise UsageError(message)


def _job_parser(name: str, module) -> argparse.ArgumentParser:
    parser = _JobParser(prog=f"mpips run {name}",
                        description=(module.__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--servers", type=int, default=int(os.environ.get("MPIPS_SERVERS", 1)),
                        help="number of server ranks, the last ranks of the launch "
                             "(default: $MPIPS_SERVERS or 1)")
    parser.add_argument("--replicas", type=int,
                        default=int(os.environ.get("MPIPS_REPLICAS", 0)),
                        help="copies of each key range kept on other servers: with K, a launch "
                             "with --ft carries on while fewer than K+1 servers holding the "
                             "same keys die (needs at least K+1 servers; default: "
                             "$MPIPS_REPLICAS or 0)")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    return parser


def run_job(name: str, argv: list[str]) -> int:
    """Run job ``name`` on this rank. Collective over COMM_WORLD. Returns the exit code:
    0, or EXIT_USAGE (2) for a bad layout or a UsageError (bad options, data, checkpoint
    directory: raised alike on every rank, printed once by rank 0); when a rank died (ULFM
    launches), during ``mpips.init`` and the job's set-up included, the process exits with
    EXIT_RANK_LOST right away, and one that carried on past a dead rank exits 0, both without
    MPI_Finalize (mpips.mpi.fault.leave); any other error aborts the launch. A rank that
    cannot start here (ULFM asked for outside Open MPI's mpirun) leaves with EXIT_USAGE before
    MPI_Init, its launch's first rank saying why."""
    refusal = startup.ulfm_refusal(os.environ)
    if refusal is not None:
        if startup.launch_rank(os.environ) in (None, 0):
            print(f"mpips run: error: {refusal}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    module, MPI = _load_and_start_mpi(name)
    try:
        args, refused = _job_parser(name, module).parse_args(argv), None
    except UsageError as exc:
        args, refused = None, exc
    from ..errors import LayoutError, TableError
    from ..mpi.fault import abort_launch, is_rank_failure, leave, lost_during_init, rank_lost
    from ..session.ps import init

    world = MPI.COMM_WORLD
    label = f"[mpips rank {world.Get_rank()}/{world.Get_size()}]"
    if refused is not None:
        return _refuse(world, refused)
    try:
        ps = init(servers=args.servers, replicas=args.replicas)
    except (LayoutError, TableError) as exc:
        print(f"{label} error: {exc}", file=sys.stderr, flush=True)
        return 2
    except MPI.Exception as exc:
        if not is_rank_failure(exc):
            raise
        lost_during_init(label, exc)  # a rank died during mpips.init: exit EXIT_RANK_LOST
    startup.report(startup.READY)
    try:
        module.main(ps, args)
        startup.job_done()
        ps.close()
        if ps.survived_a_failure:  # went on after a dead rank: MPI_Finalize could hang
            startup.report(startup.SURVIVED)
            leave(0)
    except RankLost:  # mpips.mpi.fault logged who died; leave so that a relaunch can resume
        leave(EXIT_RANK_LOST)
    except UsageError as exc:  # the same on every rank (mpips.mpi.agree): nobody waits, no abort
        ps.close()
        return _refuse(world, exc)
    except MPI.Exception as exc:
        if not is_rank_failure(exc):
            abort_launch(label, exc)
        ps.failed = True  # a rank died outside ps.run (creating tables, restoring)
        rank_lost(ps.topology, exc)  # revokes and names the dead rank
        leave(EXIT_RANK_LOST)
    except Exception as exc:  # an MpipsError (bad file, bad key...) is one line
        abort_launch(label, exc)  # the other ranks may be waiting on this one
    return 0


def _load_and_start_mpi(name: str):
    """Load job ``name`` (before MPI_Init unless it imports mpips or mpi4py) and initialize
    MPI (importing mpi4py's MPI): (job module, MPI). A failed MPI_Init, wherever the imports
    ran it, is reported and left on through mpips.launch.startup.init_failed instead of an
    abort. Collective over COMM_WORLD."""
    variable, value = startup.INITIAL_ERRHANDLER
    os.environ.setdefault(variable, value)
    try:
        module = load_job(name)
        from mpi4py import MPI
    except RuntimeError as exc:  # mpi4py: "MPI_Init_thread() failed [error code: N]"
        if "mpi4py.MPI" in sys.modules or "MPI_Init" not in str(exc):
            raise  # not MPI_Init's failure: the job's own error
        startup.init_failed(exc)
    return module, MPI


def _refuse(world, exc: UsageError) -> int:
    """A user mistake found alike on every rank: rank 0 prints it as one line."""
    if world.Get_rank() == 0:
        print(f"[mpips rank 0/{world.Get_size()}] error: {exc}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def _warmup(_args) -> int:
    from ..kernels.warmup import warm_all

    names = warm_all()
    print(f"mpips warmup: compiled {len(names)} kernels", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .ckpt import add_ckpt_parser
    from .data import add_data_parser
    from ..launch.launcher import add_launch_parser
    from .sweep import add_sweep_parser

    parser = argparse.ArgumentParser(prog="mpips", description="A parameter server for MPI clusters.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a job on every rank of an MPI launch",
                         description="Run JOB on this rank; start it on all ranks with mpiexec/srun.")
    run.add_argument("job", help="job name under mpips.jobs, module name, or .py file")
    run.add_argument("job_args", nargs=argparse.REMAINDER, help="--servers S and the job's options")
    warm = sub.add_parser("warmup", help="compile the numba kernels once (before a parallel launch)")
    warm.set_defaults(handler=_warmup)
    add_launch_parser(sub)
    add_ckpt_parser(sub)
    add_data_parser(sub)
    add_sweep_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mpips`` command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["launch"]:  # a stop request waits (blocked) until the launcher handles it
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})
    if argv[:1] != ["run"]:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    startup.begin()  # first: a stop signal during the imports must not kill this rank
    code = 1
    try:
        args = build_parser().parse_args(argv)
        code = run_job(args.job, args.job_args)
    except SystemExit as exc:
        code = exc.code
        raise
    finally:
        startup.report_exit(code)
    return code
