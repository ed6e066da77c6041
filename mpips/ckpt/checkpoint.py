"""Saving a running job's tables to an HDF5 checkpoint (MPI layer; restoring them:
mpips.ckpt.restore).

The files are mpips.ckpt's: one shard per server plus a manifest written last. A save is a
request every worker sends every server (``KVWorker.save_checkpoint``, collective over the
workers) after completing its own operations and ending its step, so it happens at a step
boundary: a server that has the request of every live worker has applied everything before
it (BSP pushes included). The servers then write their shards, gather what they wrote to
server 0 and commit (collective over the servers), and answer; an error on any server is
the answer of every server, and nothing is reported saved that was not committed.
``SaveSignal`` turns SIGUSR1/SIGTERM into a request to save at the next step boundary.

**Incremental saves.** From the first checkpoint a server's slices take part in (saved or
restored), they track the rows that change (mpips.store.slice). A save asked with
``incremental`` writes only those rows and the keys removed, as a delta of that checkpoint
(mpips.ckpt.chain), when every server tracked its changes against the same checkpoint and it
is still there, under the same root; otherwise (the first save of a launch, a server that took
over a dead one's rows, a parent that is gone) it writes a full checkpoint, and server 0 logs
why. Tracking restarts at every commit; a save that fails changes nothing.

Control messages here are small JSON texts in uint8 buffers: no pickling.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np

from .. import ckpt
from ..launch import startup
from ..mpi.agree import decode_text, encode_text, gather_texts, on_root
from .manifest import _shard_from_json
from ..errors import MpipsError
from ..mpi.fault import survive_collective
from ..wire.message import Status


class SaveCoordinator:
    """Server side of a save: collects the SAVE requests of the workers, then writes.

    Its hooks into the server are narrow: ``segments`` (mpips.server.segments: ``hosted``,
    segment -> slices, and ``num_segments``) is what it writes; ``channel`` (a
    mpips.server.channel.WorkerChannel: ``recv_exact``, ``reply``) receives and answers the
    requests; ``guard(action)`` runs an answer so that a worker that died is skipped; with
    replicas, ``survivors.handle()`` takes over a dead server's segments before a retry."""

    def __init__(self, topology, tables, segments, channel, tags, *, guard=None,
                 survivors=None, replicated: bool = False):
        self.topology, self.tables, self.segments = topology, tables, segments
        self.channel, self.tags = channel, tags
        self.guard = guard or (lambda action: action())
        self.survivors, self.replicated = survivors, replicated
        self.requests: dict[int, tuple] = {}  # worker -> (request id, source, order)

    def on_request(self, hdr, source: int, live_workers: set[int]) -> None:
        """Record a worker's SAVE (its payload is the JSON order); save once all live
        workers asked. Collective over the servers when it saves."""
        tag = self.tags.payload(hdr.request_id)
        payload = np.empty(hdr.chunk_keys, np.uint8)
        self.channel.recv_exact(payload, source, tag)
        worker = self.topology.layout.worker_index(source)
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
            self.guard(lambda: self.channel.reply(request_id, status, error, source,
                                                  self.tags.payload(request_id)))

    def _write_and_commit(self, order: dict) -> str | None:
        """Collective over the living servers; the error text (same on every server) or
        None. Each server writes the shard of every segment it serves (mpips.core.hosting: its
        own, and a dead server's it took over), so the shards always tile the key space.

        With replicas a server may die before or during the save: the survivors agree that
        the attempt failed, leave the dead one out (mpips.mpi.fault.survive_collective), take
        over its segments and save again among themselves; a save that the death interrupted
        after its commit counts as saved."""
        if not self.replicated:
            return self._attempt(self.topology.group, order, retry=False)
        attempts = []

        def attempt(group):
            attempts.append(group)
            group.Barrier()  # a server that died before the save fails this on every server
            self.survivors.handle()  # take over its segments before writing them
            return self._attempt(group, order, retry=len(attempts) > 1)
        return survive_collective(self.topology, attempt)

    def _attempt(self, group, order: dict, *, retry: bool) -> str | None:
        count = self.segments.num_segments
        step, root = int(order["step"]), order["root"]
        sinces = gather_texts(group, json.dumps(self._since()))
        plan, error = on_root(group, lambda: _prepare(root, step, order, retry, sinces))
        if error is not None:
            return f"checkpoint not saved: {error}"
        if plan["directory"] is None:  # committed by the attempt a server's death interrupted
            self._track(None)  # which rows it held is not known here: the next save is full
            return None
        directory, parent = plan["directory"], plan["parent"]
        write = _delta_data if parent else _slice_data
        try:
            info = json.dumps([ckpt.write_shard(directory, segment, count, step,
                                                [write(s) for s in tables]).to_json()
                               for segment, tables in sorted(self.segments.hosted.items())])
        except (MpipsError, OSError) as exc:
            info = f"server {self.topology.server_index}: {type(exc).__name__}: {exc}"
        infos = gather_texts(group, info)
        tables = {spec.name: ckpt.TableMeta.from_spec(spec) for spec in self.tables}
        outcome, error = on_root(group, lambda: _commit(directory, step, count, infos, order,
                                                        tables, parent))
        if error is not None:
            return f"checkpoint not committed: {error}"
        if group.Get_rank() == 0:
            if plan["why_full"]:
                self.topology.log(f"checkpoint step {step}: full, not incremental: "
                                  f"{plan['why_full']}")
            if outcome["warning"]:
                self.topology.log(f"warning: {outcome['warning']}")
        self._track(outcome["since"])
        return None

    def _since(self) -> dict | str | None:
        """The checkpoint every slice this server serves tracks its changes against; None
        when none tracks any, "mixed" when some do not (taken over from a server that died)
        or they track against different checkpoints."""
        sinces = [s.since for tables in self.segments.hosted.values() for s in tables]
        if all(since is None for since in sinces):
            return None
        if any(since != sinces[0] for since in sinces):
            return "mixed"
        return sinces[0]

    def _track(self, since: dict | None) -> None:
        """A save was committed: the slices served track their changes against it."""
        for tables in self.segments.hosted.values():
            for table in tables:
                table.track_changes(since)


def _prepare(root, step: int, order: dict, retry: bool, sinces: list[str]) -> dict:
    """Server 0: the plan of the save: "directory" to write checkpoint ``step`` into (None
    when ``retry`` finds it committed already by this run: a server died after the commit,
    before the save's end), "parent" (the checkpoint a delta builds on, None: a full save)
    and "why_full" (why a save asked to be incremental is not). ``sinces``: each server's
    JSON of the checkpoint its slices track changes against (SaveCoordinator._since)."""
    if retry:
        info = ckpt.inspect_checkpoint(Path(root) / ckpt.step_dir_name(step), "quick")
        if info.valid and info.run == order.get("run"):
            return {"directory": None}
    directory = str(ckpt.prepare_checkpoint_dir(root, step))
    parent, why = None, None
    if order.get("incremental"):
        parent, why = _parent_for(root, step, [json.loads(text) for text in sinces])
    return {"directory": directory, "parent": parent, "why_full": why}


def _parent_for(root, step: int, sinces: list) -> tuple[str | None, str | None]:
    """(the directory of the checkpoint a delta of step ``step`` can build on, None) or
    (None, why there is none)."""
    if all(since is None for since in sinces):
        return None, "no checkpoint was saved or restored by these servers yet"
    missing = [i for i, since in enumerate(sinces) if since is None or since == "mixed"]
    if missing:
        return None, (f"server {missing[0]} serves rows whose changes it did not track (it "
                      f"took over a server that died)")
    if any(since != sinces[0] for since in sinces):
        return None, "the servers tracked changes against different checkpoints"
    since = sinces[0]
    path = Path(root) / ckpt.step_dir_name(int(since["step"]))
    if os.path.realpath(root) != since["root"]:
        return None, f"the last checkpoint, step {since['step']}, is under {since['root']}"
    if int(since["step"]) >= step:
        return None, f"the last checkpoint, step {since['step']}, is not older than {step}"
    try:
        same = ckpt.manifest_digest(path) == since["digest"]
    except OSError:
        same = False
    if not same:
        return None, f"the last checkpoint, {path}, is gone or was replaced"
    info = ckpt.inspect_checkpoint(path, "quick")
    if not info.valid:
        return None, f"the last checkpoint does not verify: {info.reason}"
    return str(path), None


def tracked_since(root, path) -> dict:
    """What slices track their changes against after checkpoint ``path`` under ``root`` was
    saved or restored (Slice.track_changes)."""
    return {"step": int(ckpt.load_manifest(path).step), "digest": ckpt.manifest_digest(path),
            "root": os.path.realpath(root)}


def _delta_data(table) -> "ckpt.SliceData":
    """The rows of ``table`` changed since its last checkpoint, and the keys it removed."""
    spec = table.spec
    keys, values, state, removed = table.changes()
    sketch = table.admission.counts.copy() if getattr(table, "admission", None) is not None \
        else None
    return ckpt.SliceData.from_spec(spec, table.key_range, values, keys=keys, state=state,
                                    admission=sketch, removed=removed)


def _slice_data(table) -> "ckpt.SliceData":
    spec = table.spec
    if spec.kind == "sparse":
        keys, values, state = table.snapshot()
        sketch = table.admission.counts.copy() if table.admission is not None else None
        return ckpt.SliceData.from_spec(spec, table.key_range, values, keys=keys, state=state,
                                        admission=sketch)
    return ckpt.SliceData.from_spec(spec, table.key_range, table.values, state=table.state)


def _commit(directory: str, step: int, count: int, infos: list[str], order: dict,
            tables: dict, parent: str | None) -> dict:
    """Server 0: commit if every shard was written (a delta of ``parent`` if given), then
    prune (only the checkpoints of the order's run). Raises MpipsError/OSError naming what
    failed (``on_root`` passes it on); returns "since" (what the slices track changes against
    now) and "warning" (when the checkpoint stands but pruning older ones failed)."""
    failed = [t for t in infos if not t.startswith("[")]
    if failed:
        raise ckpt.CheckpointError(directory, "; ".join(failed))
    try:
        written = sorted((shard for text in infos for shard in json.loads(text)),
                         key=lambda shard: int(shard["server"]))
        shards = [_shard_from_json(directory, shard, step, count, tables) for shard in written]
    except (KeyError, ValueError, TypeError) as exc:
        raise ckpt.InconsistentCheckpointError(directory, f"bad shard description ({exc!r})"
                                               ) from None
    ckpt.commit(directory, step, shards, order.get("job") or {}, run=order.get("run"),
                parent=parent)
    since, warning = tracked_since(order["root"], directory), None
    if order.get("keep"):
        try:
            ckpt.prune(order["root"], keep_last=int(order["keep"]), level="quick",
                       run=order.get("run"))
        except (MpipsError, OSError) as exc:
            warning = f"checkpoint {directory} saved, but pruning older ones failed: {exc}"
    return {"since": since, "warning": warning}


def save_order(root, step: int, job: dict | None, keep: int | None,
               run: str | None = None, incremental: bool = False) -> np.ndarray:
    """The SAVE request's payload (``KVWorker.save_checkpoint`` sends it to every server)."""
    return encode_text({"root": str(root), "step": int(step), "job": job or {}, "keep": keep,
                        "run": run, "incremental": bool(incremental)})


class SaveSignal:
    """SIGUSR1/SIGTERM ask for a checkpoint at the next step boundary: every rank installs
    it, so the signal never kills a server; ``received`` names the signal, and the workers
    agree on it at a step boundary (e.g. an Allreduce of the flag). A signal that came
    earlier, while ``mpips run`` held it (mpips.launch.startup), counts as received now."""

    def __init__(self):
        self.received = None
        startup.take_over(self._handle)

    def _handle(self, signum, frame) -> None:
        self.received = self.received or signal.Signals(signum).name
