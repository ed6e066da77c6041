"""Per-table consistency models (BSP, bounded-delay SSP(tau), async) and the clock a read
requires under each. Pure module: no MPI.

A read at clock ``c`` requires ``Consistency.required_clock(c, tau)`` = ``max(0, c - tau)``
(``ssp``), ``c`` (``bsp``: tau = 0) or nothing (``async``): every update of clocks below it
must be applied before the read is served. The server side of these rules, which decides
when each request runs, is mpips.core.scheduler.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Callable

__all__ = ["CONSISTENCY_MODELS", "Consistency", "as_consistency"]

CONSISTENCY_MODELS = ("bsp", "ssp", "async")

_REQUIRED: dict[str, Callable[[int, int], int]] = {
    "bsp": lambda clock, tau: clock,
    "ssp": lambda clock, tau: max(0, clock - tau),
    "async": lambda clock, tau: 0,
}


@dataclass(frozen=True)
class Consistency:
    """Consistency model of a table: ``bsp``, ``ssp`` with ``staleness`` tau, or ``async``."""

    model: str = "bsp"
    staleness: int = 0

    def __post_init__(self):
        if self.model not in CONSISTENCY_MODELS:
            raise ValueError(f"unknown consistency model {self.model!r}: expected one of "
                             f"{', '.join(CONSISTENCY_MODELS)}")
        if isinstance(self.staleness, bool):
            raise ValueError(f"staleness must be an integer >= 0, got {self.staleness!r}")
        try:
            tau = operator.index(self.staleness)
        except TypeError:
            raise ValueError(f"staleness must be an integer >= 0, got {self.staleness!r}") from None
        if tau < 0:
            raise ValueError(f"staleness must be >= 0, got {tau}")
        if tau and self.model != "ssp":
            raise ValueError(f"{self.model} takes no staleness (got {tau}): "
                             f"use 'ssp:{tau}' for bounded delay")
        object.__setattr__(self, "staleness", tau)

    @classmethod
    def parse(cls, text: str) -> "Consistency":
        """``"bsp"``, ``"async"`` or ``"ssp:<tau>"`` (case and spaces ignored)."""
        model, sep, tau = str(text).strip().lower().partition(":")
        model, tau = model.strip(), tau.strip()
        if model == "ssp" and not tau:
            raise ValueError(f"{text!r}: ssp needs a staleness bound, e.g. 'ssp:4'")
        if sep and not tau.lstrip("-").isdigit():
            raise ValueError(f"{text!r}: staleness must be an integer, e.g. 'ssp:4'")
        return cls(model, int(tau) if sep else 0)

    def __str__(self) -> str:
        return f"ssp:{self.staleness}" if self.model == "ssp" else self.model

    @property
    def deterministic(self) -> bool:
        """True for BSP: pushes are stashed and applied in a fixed order at clock boundaries."""
        return self.model == "bsp"

    def required_clock(self, worker_clock: int, staleness: int | None = None) -> int:
        """Finished-clock count every live worker must reach before a read at
        ``worker_clock`` is served: ``c`` (bsp), ``max(0, c - tau)`` (ssp; ``staleness``
        overrides tau for this read), ``0`` (async). ``0`` means no wait."""
        if operator.index(worker_clock) < 0:
            raise ValueError(f"worker clock must be >= 0, got {worker_clock}")
        model = self if staleness is None else replace(self, staleness=staleness)
        return _REQUIRED[self.model](worker_clock, model.staleness)


def as_consistency(value: "Consistency | str") -> Consistency:
    """A Consistency from itself or from its text form (see :meth:`Consistency.parse`)."""
    return value if isinstance(value, Consistency) else Consistency.parse(value)
