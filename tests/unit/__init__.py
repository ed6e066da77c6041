"""Unit tests: no mpiexec, no launch; layer-1/2 modules import without mpi4py."""
