"""mpips tests: unit/ (no MPI needed) and mpi/ (real launches through tests.helpers.launch)."""
