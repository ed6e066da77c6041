"""Pushes through a table's codec, and push filters: the part of KVWorker that sends
mpips.wire.codec messages instead of raw key and value chunks (API layer, mixed into KVWorker)."""
from __future__ import annotations

from ..core.checks import as_keys, as_values
from ..mpi.transport import wait_all
from ..wire.keycache import SentKeys
from ..wire.message import HEADER_WORDS, Op, Status, parse_reply
from .requests import Part, Pending




class CodedPushes:
    """KVWorker methods for tables with a codec (``TableSpec.codec``) and push filters.
    Uses KVWorker's ``_filters``, ``_codecs``, ``_sent_keys``, ``traffic``, ``requests`` and
    ``_post_message``."""

    def set_push_filter(self, table, push_filter) -> None:
        """Filter this worker's pushes to ``table`` (an mpips.wire.filters.PushFilter, e.g.
        ``make_filter("significantly_modified", delta=1e-3)``; None removes it)."""
        name = self._spec(table).name
        if push_filter is None:
            self._filters.pop(name, None)
        else:
            self._filters[name] = push_filter

    def push_filter(self, table):
        """The push filter of ``table`` on this worker, or None."""
        return self._filters.get(self._spec(table).name)

    def _submit_coded(self, spec, keys, vals, callback) -> int:
        """A push as one mpips.wire.codec message per server, checked whole before it is sent."""
        keys = as_keys(keys, spec)
        vals = as_values(vals, keys.size, spec)
        pending = Pending(keep=[keys, vals], callback=callback)
        for server, part in spec.split(keys):
            self._post_coded(pending, spec, server, keys[part], vals[part], resend=False)
        self.traffic.count_push(spec.name, keys.size, spec.width)
        return self.requests.register(pending)

    def _post_coded(self, pending, spec, server: int, keys, vals,
                    resend: bool) -> None:
        if spec.name not in self._codecs:
            self._codecs[spec.name] = spec.make_codec()
        sent = None if resend else self._sent_keys.setdefault((spec.name, server), SentKeys())
        message = self._codecs[spec.name].encode(keys, vals, sent=sent)
        request_id = self._post_message(pending, Op.PUSH_CODED, server, message, spec.table_id,
                                        keys.size, spec.width)
        pending.coded[request_id] = (spec, server, keys, vals)
        # a server that dies gets it again as a plain push (mpips.worker.failover), same seq
        pending.parts.append(Part(Op.PUSH, spec, server, keys, vals, None, request_id,
                                  self._dest(server)))
        self.traffic.count_wire(spec.name, message.nbytes + HEADER_WORDS * 8)

    def _resend_misses(self, pending) -> None:
        """Resend, with full keys, every coded push a server answered with a key-cache miss
        (a server restarted or evicted the list), and wait for the new replies."""
        if not pending.coded:
            return
        missed = [i for i, (_, _, rid, reply) in enumerate(pending.replies)
                  if parse_reply(reply, rid)[0] is Status.KEY_CACHE_MISS]
        if not missed:
            return
        before = len(pending.requests)
        for i in missed:
            spec, server, keys, vals = pending.coded[pending.replies[i][2]]
            self._post_coded(pending, spec, server, keys, vals, resend=True)
        pending.replies = [r for i, r in enumerate(pending.replies) if i not in missed]
        wait_all(pending.requests[before:])

