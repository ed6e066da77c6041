"""The worker rank: the push/pull API (kvworker), what it keeps about each operation in
flight (requests), coded pushes (coded), resending after a dead server (failover), traffic
counters (traffic)."""
