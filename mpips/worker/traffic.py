"""What a worker's pushes and pulled values cost on the wire, per table. Pure module: no MPI.

``raw_bytes`` is what the pushed keys and values take as plain uint64 keys and float32 rows
(8 + 4 * width bytes per key-value); ``wire_bytes`` is what was actually sent (request
headers, verdicts, payloads or codec messages, and resends after a key-cache miss).
``pulled_values`` and ``pulled_bytes`` count the values that pulls (two-sided) brought back
and the reply bytes they took: 4 per value raw, less for a table whose codec drops zero rows
(mpips.wire.zero_rows).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class TableTraffic:
    pushes: int = 0
    push_kv: int = 0
    raw_bytes: int = 0
    wire_bytes: int = 0
    pulled_values: int = 0
    pulled_bytes: int = 0

    @property
    def bytes_per_kv(self) -> float:
        return self.wire_bytes / self.push_kv if self.push_kv else 0.0


class Traffic:
    """Push traffic counters of one worker, per table name."""

    def __init__(self):
        self.tables: dict[str, TableTraffic] = {}

    def count_push(self, table: str, kvs: int, width: int) -> None:
        """A push of ``kvs`` key-values of row ``width`` was posted."""
        t = self.tables.setdefault(table, TableTraffic())
        t.pushes += 1
        t.push_kv += kvs
        t.raw_bytes += kvs * (8 + 4 * width)

    def count_wire(self, table: str, nbytes: int) -> None:
        """``nbytes`` more went on the wire for pushes to ``table``."""
        self.tables.setdefault(table, TableTraffic()).wire_bytes += int(nbytes)

    def count_pulled(self, table: str, values: int, nbytes: int) -> None:
        """A pull reply brought ``values`` float32 values of ``table`` in ``nbytes``."""
        t = self.tables.setdefault(table, TableTraffic())
        t.pulled_values += int(values)
        t.pulled_bytes += int(nbytes)

    def report(self) -> dict:
        """{table: {pushes, push_kv, raw_bytes, wire_bytes, pulled_values, pulled_bytes,
        bytes_per_kv}}."""
        return {name: {**asdict(t), "bytes_per_kv": round(t.bytes_per_kv, 3)}
                for name, t in self.tables.items()}
