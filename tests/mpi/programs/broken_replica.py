"""SPMD program for tests/mpi/test_server_failover.py: a replica stream that breaks.

Launched on 3 ranks (2 servers, 1 worker, ``replicas=1``). Server 0 numbers its replica
batches of rows wrong (as a bug would): each is announced 7 past the number its holder
expects. The holder must not apply it to its copy, nor serve on with a copy it can no longer
trust: it reports a one-line ReplicaStreamError naming the stream and the launch ends.
"""
import numpy as np

import mpips
from mpips.server import replication
from mpips.wire.replica import Kind


def misnumber_rows_batches() -> None:
    encode = replication.encode_batch

    def misnumbered(kind, segment, table_id, num_keys, arrays, number, *rest):
        if kind is Kind.ROWS:
            number += 7
        return encode(kind, segment, table_id, num_keys, arrays, number, *rest)
    replication.encode_batch = misnumbered


def main():
    with mpips.init(servers=2, replicas=1) as ps:
        table = ps.sparse_table("w", width=1, rule="sum")
        if ps.is_server and ps.topology.server_index == 0:
            misnumber_rows_batches()

        def work(kv):
            keys = np.arange(1, 1000, dtype=np.uint64)
            for _ in range(3):
                kv.wait(kv.push(table, keys, np.ones((keys.size, 1), np.float32)))
            print("PUSHED", flush=True)
        ps.run(work)


if __name__ == "__main__":
    main()
