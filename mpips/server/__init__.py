"""The server rank: its serve loop and request handling (kvserver), whole pushes and their
verdicts (push), dead workers (survivors), replicas and dead servers (replication)."""
