"""MPI plumbing under the worker and the server: roles and communicators (topology),
buffer point-to-point and polite waiting (transport), one-sided windows (onesided),
failure detection and recovery (fault), collective agreement on outcomes (agree)."""
