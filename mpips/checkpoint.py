"""Saving a running job's tables to an HDF5 checkpoint and restoring them (MPI layer).

The files are mpips.ckpt's: one shard per server plus a manifest written last. A save is a
request every worker sends every server (``KVWorker.save_checkpoint``, collective over the
workers) after completing its own operations and ending its step, so it happens at a step
boundary: a server that has the request of every live worker has applied everything before
it (BSP pushes included). The servers then write their shards, gather what they wrote to
server 0 and commit (collective over the servers), and answer. ``restore`` (collective over
the launch, before ``PS.run``) loads the newest valid checkpoint into the tables on any
number of servers, re-partitioning key ranges.

Control messages here are small JSON texts in uint8 buffers: no pickling.
"""
from __future__ import annotations

import json
import signal
import sys

import numpy as np
from mpi4py import MPI

from . import ckpt, startup
from .ckpt.manifest import _shard_from_json
from .errors import MpipsError, TableError
from .fault import survive_collective
from .message import Status


def encode_text(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), np.uint8).copy()


def decode_text(buf: np.ndarray):
    return json.loads(buf.tobytes().decode())


class SaveCoordinator:
    """Server side of a save: collects the SAVE requests of the workers, then writes."""

    def __init__(self, server):
        self.server = server
        self.requests: dict[int, tuple] = {}  # worker -> (request id, source, order)

    def on_request(self, hdr, source: int, live_workers: set[int]) -> None:
        """Record a worker's SAVE (its payload is the JSON order); save once all live
        workers asked. Collective over the servers when it saves."""
        tag = self.server.tags.payload(hdr.request_id)
        payload = np.empty(hdr.chunk_keys, np.uint8)
        self.server._recv_exact(payload, source, tag)
        worker = self.server.topology.layout.worker_index(source)
        self.requests[worker] = (hdr.request_id, source, decode_text(payload))
        if live_workers <= set(self.requests):
            self._save()

    def on_worker_gone(self, live_workers: set[int]) -> None:
        """A worker died: save if every worker still alive has asked (it never will)."""
        for worker in [w for w in self.requests if w not in live_workers]:
            del self.requests[worker]  # asked, then died: nobody to answer
        if self.requests and live_workers <= set(self.requests):
            self._save()

    def _save(self) -> None:
        requests, self.requests = self.requests, {}
        order = requests[min(requests)][2]
        error = self._write_and_commit(order)
        status = Status.BAD_REQUEST if error else Status.OK
        for request_id, source, _ in requests.values():  # a worker that died is skipped
            self.server.survivors.run(lambda: self.server._reply(
                request_id, status, error, source, self.server.tags.payload(request_id)))

    def _write_and_commit(self, order: dict) -> str | None:
        """Collective over the living servers; the error text (same on every server) or
        None. Each server writes the shard of every segment it serves (mpips.hosting: its
        own, and a dead server's it took over), so the shards always tile the key space."""
        srv = self.server
        if srv.replication.enabled:  # a server may have died: leave it out of the
            survive_collective(srv.topology, lambda comm: comm.Barrier())  # collectives,
            srv.survivors.handle()  # and take over its segments before writing them
        group = srv.topology.group
        index, count = group.Get_rank(), srv.topology.num_servers
        step, root = int(order["step"]), order["root"]
        directory = None
        try:
            if index == 0:
                directory = str(ckpt.prepare_checkpoint_dir(root, step))
        except MpipsError as exc:
            directory = exc
        directory = _agree(group, directory, "prepare")
        info = None
        if not isinstance(directory, str):
            return directory
        try:
            info = json.dumps([ckpt.write_shard(directory, segment, count, step,
                                                [_slice_data(s) for s in tables]).to_json()
                               for segment, tables in sorted(srv.replication.hosted.items())])
        except (MpipsError, OSError) as exc:
            info = f"server {srv.topology.server_index}: {type(exc).__name__}: {exc}"
        infos = _gather_texts(group, info)
        result = None
        if index == 0:
            tables = {t.spec.name: ckpt.TableMeta.from_spec(t.spec) for t in srv.slices}
            result = _commit(directory, step, count, infos, order, tables)
        return _agree(group, result, "commit")


def _slice_data(table) -> "ckpt.SliceData":
    spec = table.spec
    keys = table.keys if spec.kind == "sparse" else None
    return ckpt.SliceData.from_spec(spec, table.key_range, table.values, keys=keys,
                                    state=table.state)


def _commit(directory: str, step: int, count: int, infos: list[str], order: dict,
            tables: dict):
    """Server 0: commit if every shard was written; returns None or an error text."""
    failed = [t for t in infos if not t.startswith("[")]
    if failed:
        return "checkpoint not committed: " + "; ".join(failed)
    try:
        written = sorted((shard for text in infos for shard in json.loads(text)),
                         key=lambda shard: int(shard["server"]))
        shards = [_shard_from_json(directory, shard, step, count, tables) for shard in written]
        ckpt.commit(directory, step, shards, order.get("job") or {})
        if order.get("keep"):
            ckpt.prune(order["root"], keep_last=int(order["keep"]), level="quick")
    except (MpipsError, OSError, KeyError, ValueError) as exc:
        return f"checkpoint not committed: {type(exc).__name__}: {exc}"
    return None


def _gather_texts(comm: MPI.Intracomm, text: str) -> list[str]:
    """Every rank's text on rank 0 ([] elsewhere). Collective over ``comm``."""
    data = np.frombuffer(text.encode(), np.uint8)
    sizes = np.empty(comm.Get_size() if comm.Get_rank() == 0 else 0, np.int64)
    comm.Gather(np.array([data.size], np.int64), sizes if comm.Get_rank() == 0 else None, root=0)
    if comm.Get_rank() != 0:
        comm.Gatherv(data, None, root=0)
        return []
    out = np.empty(int(sizes.sum()), np.uint8)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    comm.Gatherv(data, [out, sizes, offsets, MPI.BYTE], root=0)
    return [out[o:o + n].tobytes().decode() for o, n in zip(offsets, sizes)]


def _agree(comm: MPI.Intracomm, value, what: str):
    """Rank 0's ``value`` (str, None, or an exception turned into its text) on every rank.
    Collective over ``comm``."""
    if comm.Get_rank() == 0:
        text = value if isinstance(value, str) or value is None else f"{what}: {value}"
        buf = encode_text({"value": text})
        size = np.array([buf.size], np.int64)
    else:
        size = np.zeros(1, np.int64)
    comm.Bcast(size, root=0)
    if comm.Get_rank() != 0:
        buf = np.empty(int(size[0]), np.uint8)
    comm.Bcast(buf, root=0)
    return decode_text(buf)["value"]


def save_order(root, step: int, job: dict | None, keep: int | None) -> np.ndarray:
    """The SAVE request's payload (``KVWorker.save_checkpoint`` sends it to every server)."""
    return encode_text({"root": str(root), "step": int(step), "job": job or {}, "keep": keep})


def restore(ps, root, *, log=None) -> dict | None:
    """Load the newest valid checkpoint under ``root`` into ``ps``'s tables; returns its
    job dict plus "checkpoint_step" and "checkpoint_path" on every rank, or None when there is none. Collective
    over the launch, before ``PS.run``. Raises CheckpointError / TableError on every rank
    when the checkpoint cannot be restored (tables differ, corrupt data)."""
    comm = ps.topology.data
    found = None
    if comm.Get_rank() == 0:
        warn = log or (lambda m: print(f"[mpips rank 0] warning: {m}", file=sys.stderr, flush=True))
        info = ckpt.newest_valid(root, warn=warn, level="quick")
        found = None if info is None else {"path": str(info.path), "step": info.step,
                                           "job": info.job}
    found = _agree(comm, json.dumps(found), "restore")
    found = json.loads(found)
    if found is None:
        return None
    error = None
    try:
        if ps.is_server:
            for table in ps._slices:
                _load_slice(table, found["path"])
    except (MpipsError, OSError) as exc:
        error = f"rank {comm.Get_rank()}: {type(exc).__name__}: {exc}"
    errors = _gather_texts(comm, error or "")
    errors = _agree(comm, "; ".join(e for e in errors if e) or None, "restore")
    if errors:
        raise ckpt.CheckpointError(found["path"], f"restore failed: {errors}")
    return {**found["job"], "checkpoint_step": found["step"], "checkpoint_path": found["path"]}


def _load_slice(table, path: str) -> None:
    """Fill one server slice from the checkpoint at ``path`` (its own key range)."""
    spec = table.spec
    manifest = ckpt.load_manifest(path)
    try:
        meta = manifest.table(spec.name)
    except ckpt.CheckpointError:
        raise TableError(f"table {spec.name!r} is not in checkpoint {path} "
                         f"(it has {sorted(manifest.tables)})") from None
    mine = ckpt.TableMeta.from_spec(spec)
    fields = ("kind", "size", "width", "rule", "rule_params", "state_names")
    differ = [f for f in fields if getattr(meta, f) != getattr(mine, f)]
    if differ:
        raise TableError(f"table {spec.name!r} differs from checkpoint {path} in "
                         f"{', '.join(differ)}: checkpoint {meta}, job {mine}")
    if spec.kind == "dense":
        ckpt.read_table(path, spec.name, table.key_range, out_values=table.values,
                        out_state=table.state)
    else:
        rows = ckpt.read_table(path, spec.name, table.key_range)
        table.keys, table.values = rows.keys, rows.values
        table.state = {name: np.ascontiguousarray(a) for name, a in rows.state.items()}


class SaveSignal:
    """SIGUSR1/SIGTERM ask for a checkpoint at the next step boundary: every rank installs
    it, so the signal never kills a server; ``received`` names the signal, and the workers
    agree on it at a step boundary (e.g. an Allreduce of the flag). A signal that came
    earlier, while ``mpips run`` held it (mpips.startup), counts as received now."""

    def __init__(self):
        self.received = None
        startup.take_over(self._handle)

    def _handle(self, signum, frame) -> None:
        self.received = self.received or signal.Signals(signum).name
