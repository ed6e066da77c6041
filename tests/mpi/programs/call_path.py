"""SPMD program for tests/mpi/test_call_path.py: which mpips modules a plain operation runs.

Launched on 2 ranks (1 server, 1 worker, no replicas) with one async table without codec.
Each rank watches some stretch of its work with ``sys.setprofile`` (a *probe*) and records
every Python function of mpips it entered. The worker probes one push of several chunks plus
its wait (so the verdict path runs too), one pull plus its wait, a ``clock()`` and its
``close()``; the server probes its whole ``ps.run``. Every rank prints one line ``CALLS <json>``:
``{"rank", "role", "package", "probes": {name: {"files": [...], "calls": [...]}}}`` with
``files`` the sorted mpips source files (relative to the repository, e.g.
"mpips/worker/kvworker.py") and ``calls`` each "file:function" entered, once, in the order
first entered.
"""
import json
import sys
from pathlib import Path

import numpy as np

import mpips
from mpips.server.kvserver import KVServer
from mpips.wire.message import chunk_keys_for

ROOT = Path(mpips.__file__).resolve().parents[1]  # the directory holding the mpips package
WIDTH = 1


class Probe:
    """``with Probe() as p:`` records the mpips functions entered in the block (this thread)."""

    def __init__(self):
        self.calls: dict[str, None] = {}  # "file:function", in the order first entered
        self._names: dict[str, str | None] = {}  # code file -> path under ROOT (None: not mpips)

    def _path(self, filename: str) -> str | None:
        if filename not in self._names:
            try:
                path = Path(filename).resolve().relative_to(ROOT).as_posix()
            except ValueError:
                path = None
            self._names[filename] = path if path and path.startswith("mpips/") else None
        return self._names[filename]

    def _hook(self, frame, event, arg):
        if event == "call":
            path = self._path(frame.f_code.co_filename)
            if path is not None:
                self.calls.setdefault(f"{path}:{frame.f_code.co_name}")

    def __enter__(self):
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)
        return False

    def report(self) -> dict:
        return {"files": sorted({c.rsplit(":", 1)[0] for c in self.calls}),
                "calls": list(self.calls)}


def worker_probes(kv, table) -> dict:
    chunk = chunk_keys_for(WIDTH)
    keys = np.arange(2 * chunk + 1000, dtype=np.uint64) * np.uint64(7919)  # three chunks
    vals = np.ones((keys.size, WIDTH), np.float32)
    probes = {}
    with Probe() as probe:
        kv.wait(kv.push(table, keys, vals))
    probes["push_wait"] = {**probe.report(), "chunks": -(-keys.size // chunk)}
    with Probe() as probe:
        pulled = kv.wait(kv.pull(table, keys))
    probes["pull_wait"] = {**probe.report(), "pulled_right": bool((pulled == 1.0).all())}
    with Probe() as probe:
        kv.clock()
    probes["clock"] = probe.report()
    with Probe() as probe:
        kv.close()  # ps.run's own close then does nothing
    probes["close"] = probe.report()
    return probes


def main():
    with mpips.init(servers=1) as ps:
        table = ps.sparse_table("plain", width=WIDTH)  # async, no codec
        line = {"rank": ps.topology.rank, "role": "server" if ps.is_server else "worker",
                "package": mpips.__file__}
        if ps.is_server:
            probe, serve = Probe(), KVServer.serve

            def probed_serve(server):
                with probe:
                    serve(server)
            KVServer.serve = probed_serve
            ps.run(lambda kv: None)
            line["probes"] = {"serve": probe.report()}
        else:
            line["probes"] = ps.run(lambda kv: worker_probes(kv, table))
        print("CALLS " + json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
