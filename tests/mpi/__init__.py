"""Tests that launch real MPI jobs through tests.launch.run_mpi (marked mpi)."""
