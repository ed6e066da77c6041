"""Tests that launch real MPI jobs through tests.helpers.launch.run_mpi (marked mpi)."""
