"""The worker rank: the push/pull API and request tracking (kvworker), coded pushes
(coded), resending after a dead server (failover), traffic counters (traffic)."""
