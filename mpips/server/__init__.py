"""The server rank: the serve loop (kvserver) and its collaborators: receiving and answering
workers (channel), the segments it serves (segments), push verdicts (verdict), BSP and coded
pushes (whole_pushes), dead workers (survivors), replicas and dead servers (replication,
copies)."""
