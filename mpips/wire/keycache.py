"""Key caching for the message codec: the receiver's KeyCache (signature -> key list, LRU),
the sender's SentKeys (which signatures one receiver was sent), and KeyCacheMiss. Pure module.

A sender that finds a key list's signature in its SentKeys for a receiver sends only the
signature (mpips.wire.codec). The two sides evict independently, so the receiver may have dropped
a list the sender thinks it holds: decoding then raises KeyCacheMiss, the sender calls
``SentKeys.forget(exc.signature)`` and encodes the message again, now with full keys.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np



class _LRU:
    def __init__(self, capacity: int = 64):
        if not (isinstance(capacity, int) and capacity >= 1):
            raise ValueError(f"cache capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()

    def __len__(self):
        return len(self._items)

    def __contains__(self, signature):
        return int(signature) in self._items

    def clear(self):
        self._items.clear()


class KeyCache(_LRU):
    """Receiver side: signature -> key list (read-only uint64 array), the least recently used
    evicted beyond ``capacity`` lists or ``max_keys`` keys in all."""

    def __init__(self, capacity: int = 64, max_keys: int = 1 << 26):
        super().__init__(capacity)
        self.max_keys = max_keys
        self.num_keys = 0
        self.hits = self.misses = 0

    def get(self, signature: int) -> np.ndarray | None:
        keys = self._items.get(int(signature))
        if keys is None:
            self.misses += 1
            return None
        self._items.move_to_end(int(signature))
        self.hits += 1
        return keys

    def put(self, signature: int, keys: np.ndarray) -> None:
        keys = np.array(keys, np.uint64)  # own read-only copy
        keys.setflags(write=False)
        self.forget(signature)
        self._items[int(signature)] = keys
        self.num_keys += keys.size
        while len(self._items) > self.capacity or self.num_keys > self.max_keys:
            self.num_keys -= self._items.popitem(last=False)[1].size

    def forget(self, signature: int) -> None:
        old = self._items.pop(int(signature), None)
        self.num_keys -= 0 if old is None else old.size

    def clear(self):
        super().clear()
        self.num_keys = 0


class SentKeys(_LRU):
    """Sender side, one per receiver: the signatures of the key lists sent to it in full
    (LRU; give it at most the receiver's KeyCache capacity)."""

    def knows(self, signature: int) -> bool:
        if int(signature) in self._items:
            self._items.move_to_end(int(signature))
            return True
        return False

    def add(self, signature: int) -> None:
        self._items[int(signature)] = True
        self._items.move_to_end(int(signature))
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def forget(self, signature: int) -> None:
        self._items.pop(int(signature), None)
