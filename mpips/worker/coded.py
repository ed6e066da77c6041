"""Pushes through a table's codec: ``CodedPushes``, the part of a worker that sends one
mpips.wire.codec message per server instead of raw key and value chunks (API layer).

KVWorker makes it at its first push to a table with a codec (``TableSpec.codec``) and calls it
at two hooks: ``push`` (instead of its own posting, after the table's push filter) and
``resend_misses`` (in KVWorker._complete, only for an operation with coded parts). Nothing
here is collective.
"""
from __future__ import annotations

from ..core.checks import as_keys, as_values
from ..mpi.transport import wait_all
from ..wire.keycache import SentKeys
from ..wire.message import HEADER_WORDS, Op, Status, parse_reply
from .requests import Part, Pending, Requests
from .traffic import Traffic


class CodedPushes:
    """The coded pushes of one worker. It owns each table's codec and, per (table name,
    segment), the key lists sent there (``sent_keys``: the mirror of that server's key
    cache). It posts through ``post``, the worker's one-message posting function
    (KVWorker._post_message: ``post(pending, op, segment, message, table_id, num_keys, width)``,
    returning the request id), names a segment's server through ``dest``, registers each
    push with the worker's ``requests`` and counts it in ``traffic``."""

    def __init__(self, post, dest, requests: Requests, traffic: Traffic):
        self.post = post
        self.dest = dest
        self.requests = requests
        self.traffic = traffic
        self.codecs: dict[str, object] = {}
        self.sent_keys: dict[tuple[str, int], SentKeys] = {}

    def push(self, spec, keys, vals, callback) -> int:
        """A push as one codec message per server, checked whole before it is sent; returns
        its timestamp."""
        keys = as_keys(keys, spec)
        vals = as_values(vals, keys.size, spec)
        pending = Pending(keep=[keys, vals], callback=callback)
        for server, part in spec.split(keys):
            self._post(pending, spec, server, keys[part], vals[part], resend=False)
        self.traffic.count_push(spec.name, keys.size, spec.width)
        return self.requests.register(pending)

    def resend_misses(self, pending: Pending) -> None:
        """Resend, with full keys, every coded push a server answered with a key-cache miss
        (a server restarted or evicted the list), and wait for the new replies."""
        missed = [i for i, (_, _, rid, reply) in enumerate(pending.replies)
                  if parse_reply(reply, rid)[0] is Status.KEY_CACHE_MISS]
        if not missed:
            return
        before = len(pending.requests)
        for i in missed:
            spec, server, keys, vals = pending.coded[pending.replies[i][2]]
            self._post(pending, spec, server, keys, vals, resend=True)
        pending.replies = [r for i, r in enumerate(pending.replies) if i not in missed]
        wait_all(pending.requests[before:])

    def _post(self, pending: Pending, spec, server: int, keys, vals, resend: bool) -> None:
        if spec.name not in self.codecs:
            self.codecs[spec.name] = spec.make_codec()
        sent = None if resend else self.sent_keys.setdefault((spec.name, server), SentKeys())
        message = self.codecs[spec.name].encode(keys, vals, sent=sent)
        request_id = self.post(pending, Op.PUSH_CODED, server, message, spec.table_id,
                               keys.size, spec.width)
        pending.coded[request_id] = (spec, server, keys, vals)
        # a server that dies gets it again as a plain push (mpips.worker.failover), same seq
        pending.parts.append(Part(Op.PUSH, spec, server, keys, vals, None, request_id,
                                  self.dest(server)))
        self.traffic.count_wire(spec.name, message.nbytes + HEADER_WORDS * 8)
