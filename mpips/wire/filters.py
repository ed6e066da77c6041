"""Push filters: which entries of a gradient push a worker actually sends. Pure module.

Every filter has one interface, ``apply(keys, vals, **context) -> (keys_kept, vals_kept)``
(keys uint64 sorted unique, vals float32 (n, width) or (n,); the result has the same ndim),
and a ``stats`` dict: entries ``seen`` and ``sent``, and ``bytes_saved`` (8 + 4 * width raw
bytes per entry not sent). Filters are looked up by name in ``FILTERS``; ``make_filter``
builds one, ``register_filter`` adds user filters. An entry is a key and its whole row.

Filters from Li et al., OSDI'14, section 5.2 ("user-defined filters"):
significantly_modified (send an entry once its accumulated change exceeds a threshold, keep
the rest as a local residual), kkt (skip coordinates an L1 update would leave at zero), and
random_skip (send a random subset, optionally rescaled to stay unbiased).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import NonFiniteError, ValueShapeError
from ..kernels.merge import merge_sum2
from ..registry import Registry
from .keys import as_keys


def _as_push(keys, vals) -> tuple[np.ndarray, np.ndarray]:
    """Checked (keys uint64 1-D sorted unique, vals float32 (n, width)); raises the
    mpips.errors ValueError subclass naming the problem."""
    keys = as_keys(keys)
    vals = np.asarray(vals)
    rows = vals.reshape(-1, 1) if vals.ndim == 1 else vals
    if rows.ndim != 2 or rows.shape[0] != keys.size or rows.shape[1] < 1:
        raise ValueShapeError(f"values must be ({keys.size}, width) or ({keys.size},), got "
                              f"shape {vals.shape}")
    if vals.dtype.kind != "f":
        raise ValueShapeError(f"values must be floating point, got dtype {vals.dtype}")
    rows = np.ascontiguousarray(rows, np.float32)
    if not np.isfinite(rows).all():
        raise NonFiniteError("pushed values contain NaN or infinity")
    return keys, rows


def _number(filt: str, name: str, value, lo: float, hi: float = math.inf,
            hi_open: bool = False) -> float:
    value = float(value)
    if not (lo <= value and (value < hi if hi_open else value <= hi)):
        raise ValueError(f"filter {filt!r}: {name} must be in [{lo}, {hi}{')' if hi_open else ']'}"
                         f", got {value!r}")
    return value


class PushFilter:
    """Base class: subclasses set ``name`` and implement ``_keep`` (or override ``apply``)."""

    name = ""

    def __init__(self):
        self.stats = {"seen": 0, "sent": 0, "bytes_saved": 0}

    def apply(self, keys, vals, **context):
        """(keys, vals) of the entries to send now."""
        flat = np.ndim(vals) == 1
        keys, rows = _as_push(keys, vals)
        keep = self._keep(keys, rows, **context)
        kept_keys, kept_rows = keys[keep], self._scale(rows[keep])
        self._count(keys.size, kept_keys.size, rows.shape[1])
        return kept_keys, (kept_rows[:, 0] if flat else kept_rows)

    def _keep(self, keys, rows, **context) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def _scale(self, rows):
        return rows

    def _count(self, seen: int, sent: int, width: int) -> None:
        self.stats["seen"] += seen
        self.stats["sent"] += sent
        self.stats["bytes_saved"] += (seen - sent) * (8 + 4 * width)

    def describe(self) -> dict:
        """Filter name and parameters (for logs)."""
        return {"filter": self.name}


class SignificantlyModified(PushFilter):
    """Send an entry only when its accumulated change exceeds ``delta`` (max |x| over its
    row); what is not sent stays here as a residual, added to the next push of that key, so
    nothing is lost: everything sent plus ``residual()`` equals everything pushed (up to
    float32 rounding). ``flush()`` hands the residuals over, e.g. at the end of training."""

    name = "significantly_modified"

    def __init__(self, delta: float = 0.0):
        super().__init__()
        self.delta = _number(self.name, "delta", delta, 0.0, math.inf, hi_open=True)
        self._keys = np.zeros(0, np.uint64)
        self._rows: np.ndarray | None = None  # float32 (len(_keys), width), none all-zero

    def apply(self, keys, vals, **context):
        flat = np.ndim(vals) == 1
        keys, rows = _as_push(keys, vals)
        width = rows.shape[1]
        if self._rows is None or self._keys.size == 0:  # no residual: any width will do
            self._rows = np.zeros((0, width), np.float32)
        elif self._rows.shape[1] != width:
            raise ValueShapeError(f"filter {self.name!r} holds rows of width "
                                  f"{self._rows.shape[1]}, got width {width}")
        total = self._keys.size + keys.size
        acc_keys, acc = np.empty(total, np.uint64), np.empty((total, width), np.float32)
        m = merge_sum2(self._keys, self._rows, keys, rows, acc_keys, acc)
        acc_keys, acc = acc_keys[:m], acc[:m]
        send = np.abs(acc).max(axis=1) > self.delta
        keep = ~send & (acc != 0).any(axis=1)
        self._keys, self._rows = acc_keys[keep], acc[keep]
        self._count(keys.size, int(send.sum()), width)
        sent_rows = acc[send]
        return acc_keys[send], (sent_rows[:, 0] if flat else sent_rows)

    def residual(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, rows) of the unsent accumulated amounts (copies)."""
        rows = self._rows if self._rows is not None else np.zeros((0, 1), np.float32)
        return self._keys.copy(), rows.copy()

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """Return all residuals (to be sent) and forget them."""
        out = self.residual()
        self._keys, self._rows = np.zeros(0, np.uint64), None
        return out

    def describe(self):
        return {"filter": self.name, "delta": self.delta}


class KKTFilter(PushFilter):
    """For L1-regularised models (penalty lam * |w|): skip coordinate k when w_k == 0 and
    |g_k| <= lam, where the subgradient optimality condition already holds and the proximal
    update would leave w_k at zero. ``apply(keys, vals, weights=w)`` with w the current
    weights of the keys, shaped like vals; a row is skipped when all its coordinates are."""

    name = "kkt"

    def __init__(self, lam: float):
        super().__init__()
        self.lam = _number(self.name, "lam", lam, 0.0, math.inf, hi_open=True)

    def _keep(self, keys, rows, weights=None):
        if weights is None:
            raise ValueError("filter 'kkt' needs the current weights of the keys: "
                             "apply(keys, vals, weights=...)")
        w = np.asarray(weights, np.float32)
        w = w.reshape(-1, 1) if w.ndim == 1 else w
        if w.shape != rows.shape:
            raise ValueShapeError(f"weights of shape {np.shape(weights)} for values of shape "
                                  f"{rows.shape}")
        return ~((w == 0) & (np.abs(rows) <= self.lam)).all(axis=1)

    def describe(self):
        return {"filter": self.name, "lam": self.lam}


class RandomSkip(PushFilter):
    """Drop each entry with probability p (seeded); with ``rescale`` the kept entries are
    multiplied by 1 / (1 - p), so the expected push is unchanged."""

    name = "random_skip"

    def __init__(self, p: float = 0.5, seed: int = 0, rescale: bool = False):
        super().__init__()
        self.p = _number(self.name, "p", p, 0.0, 1.0, hi_open=True)
        self.seed, self.rescale = int(seed), bool(rescale)
        self._rng = np.random.default_rng(self.seed)

    def _keep(self, keys, rows):
        return self._rng.random(keys.size) >= self.p

    def _scale(self, rows):
        return rows * np.float32(1.0 / (1.0 - self.p)) if self.rescale else rows

    def describe(self):
        return {"filter": self.name, "p": self.p, "seed": self.seed, "rescale": self.rescale}


FILTERS = Registry("push filter")
register_filter = FILTERS.register
"""Add a PushFilter subclass under its ``name`` (usable as a decorator)."""

for _cls in (SignificantlyModified, KKTFilter, RandomSkip):
    register_filter(_cls)


def make_filter(name: str, **params) -> PushFilter:
    """Instantiate the filter ``name`` with its parameters; clear error for unknown names."""
    return FILTERS.make(name, **params)
