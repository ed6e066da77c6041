"""The worker rank: the push/pull API (kvworker.KVWorker), which owns its collaborators:
request tracking (requests.Requests, as ps-lite's Customer, with Pending and Part), the
requests on the wire (posting.Poster), coded pushes (coded.CodedPushes, made at the first push
to a table with a codec), resending after a dead server (failover.ServerFailover, as ps-lite's
Resender, made only in a launch with replicas) and traffic counters (traffic.Traffic)."""
