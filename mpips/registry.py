"""Registries of named classes (update rules, push filters). Pure module: no MPI."""
from __future__ import annotations


class Registry(dict):
    """``name -> class``; ``register`` adds a class under its ``name`` attribute and
    ``make`` instantiates one by name, with errors that say what ``kind`` of thing is
    unknown and which names are known."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, cls):
        """Add ``cls`` under ``cls.name`` (usable as a decorator); refuses empty or taken names."""
        if not cls.name or cls.name in self:
            raise ValueError(f"{self.kind} name {cls.name!r} is empty or taken")
        self[cls.name] = cls
        return cls

    def make(self, name: str, **params):
        """An instance of the class registered as ``name``, built with ``params``."""
        try:
            cls = self[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; known: "
                             f"{', '.join(sorted(self))}") from None
        try:
            return cls(**params)
        except TypeError as exc:
            raise ValueError(f"{self.kind} {name!r}: {exc}") from None
