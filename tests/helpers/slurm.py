"""Submitting the repository's slurm/ scripts to the private test cluster (tests/slurm), and
the job they run, run directly for reference."""
from __future__ import annotations

from mpips.cli.sweep import last_json
from tests.helpers.launch import REPO_ROOT, run_mpi

SLURM_DIR = REPO_ROOT / "slurm"
SMALL = ["--synthetic", "4000", "--features", "2000"]


def submit(slurm, tmp_path, script, *options, args=(), env=None) -> str:
    return slurm.sbatch(f"--chdir={tmp_path}", *options, str(SLURM_DIR / script), *args,
                        env=env, cwd=tmp_path)


def job_env(python_for, mpi="openmpi", **extra) -> dict:
    return {"MPIPS_PYTHON": python_for(mpi), "MPIPS_MPI": mpi, "MPIPS_SERVERS": "2", **extra}


def read(path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def reference_metrics(argv) -> dict:
    """The same job run directly (no SLURM, no checkpoints, no stop) on 4 ranks."""
    proc = run_mpi(4, ["-m", "mpips", "run", *argv], timeout=120)
    assert proc.returncode == 0, proc.stderr
    return last_json(proc.stdout)
