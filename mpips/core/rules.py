"""Server-side update rules behind one signature, and their registry. Pure module: no MPI.

A rule turns pushed values into a change of the stored rows. ``apply(values, state, rows,
grads)`` updates ``values[rows[i]]`` from ``grads[i]`` for every ``rows[i] >= 0``;
``apply_run(values, state, start, grads)`` does the same for the consecutive rows
``start, start+1, ...`` (vectorised NumPy, the common case of a chunk that matches a run of
stored keys). ``state`` is the dict of per-row optimizer arrays named by ``state_names``
(same shape as values). Rules
are looked up by name in ``RULES``; ``register_rule`` adds user rules.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels import hashindex
from ..kernels import rows as row_kernels
from ..registry import Registry


class UpdateRule:
    """Base class: subclasses set ``name`` and ``state_names`` and implement ``apply``."""

    name = ""
    state_names: tuple[str, ...] = ()
    kernel: tuple | None = None
    """(rule code, p0, p1) of mpips.kernels.hashindex for rules the sparse store applies in
    its own lookup loop; None: the store finds the rows, then calls ``apply``."""
    heat_state: str | None = None
    """The state array that grows with every push of a key (a sum of squared gradients), by
    which a sparse slice lays out the rows it loads (mpips.store.sparse_slice); None: the
    rule keeps no such array."""

    def apply(self, values, state, rows, grads):  # pragma: no cover - interface
        raise NotImplementedError

    def apply_run(self, values, state, start, grads):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict:
        """Rule name and parameters (stored with checkpoints and printed in logs)."""
        return {"rule": self.name}


def _number(rule: str, name: str, value, what: str, ok) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and ok(number)):
        raise ValueError(f"update rule {rule!r}: {name} must be {what}, got {value!r}")
    return number


def _positive(rule: str, name: str, value) -> float:
    return _number(rule, name, value, "a positive number", lambda v: v > 0)


class SumRule(UpdateRule):
    """values += pushed values (the server keeps the sum of all pushes)."""

    name = "sum"
    kernel = (hashindex.RULE_SUM, np.float32(0), np.float32(0))

    def apply(self, values, state, rows, grads):
        row_kernels.apply_sum(values, rows, grads)

    def apply_run(self, values, state, start, grads):
        values[start:start + len(grads)] += grads


class SGDRule(UpdateRule):
    """values -= lr * gradient."""

    name = "sgd"

    def __init__(self, lr: float = 0.1):
        self.lr = _positive("sgd", "lr", lr)
        self.kernel = (hashindex.RULE_SGD, np.float32(self.lr), np.float32(0))

    def apply(self, values, state, rows, grads):
        row_kernels.apply_sgd(values, rows, grads, np.float32(self.lr))

    def apply_run(self, values, state, start, grads):
        values[start:start + len(grads)] -= np.float32(self.lr) * grads

    def describe(self):
        return {"rule": self.name, "lr": self.lr}


class AdaGradRule(UpdateRule):
    """accum += g²; values -= lr * g / (sqrt(accum) + eps)."""

    name = "adagrad"
    state_names = ("accum",)
    heat_state = "accum"

    def __init__(self, lr: float = 0.1, eps: float = 1e-8):
        self.lr = _positive("adagrad", "lr", lr)
        self.eps = _positive("adagrad", "eps", eps)
        self.kernel = (hashindex.RULE_ADAGRAD, np.float32(self.lr), np.float32(self.eps))

    def apply(self, values, state, rows, grads):
        row_kernels.apply_adagrad(values, state["accum"], rows, grads, np.float32(self.lr),
                                  np.float32(self.eps))

    def apply_run(self, values, state, start, grads):
        stop = start + len(grads)
        accum = state["accum"][start:stop]
        accum += grads * grads
        values[start:stop] -= np.float32(self.lr) * grads / (np.sqrt(accum) + np.float32(self.eps))

    def describe(self):
        return {"rule": self.name, "lr": self.lr, "eps": self.eps}


def _not_negative(rule: str, name: str, value) -> float:
    return _number(rule, name, value, "a number >= 0", lambda v: v >= 0)


class FTRLRule(UpdateRule):
    """FTRL-proximal (McMahan et al., "Ad Click Prediction: a View from the Trenches", KDD
    2013): per-coordinate rates alpha / (beta + sqrt(sum of g²)), and an L1 penalty that keeps a
    weight exactly 0 while |z| <= l1, so most weights of a sparse model stay 0 (and cost
    nothing on the wire with the ``zeros`` codec). State: ``z`` and ``n`` (sum of g²) next to
    the values, which hold the weights."""

    name = "ftrl"
    state_names = ("z", "n")
    heat_state = "n"

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, l1: float = 1.0,
                 l2: float = 1.0):
        self.alpha = _positive("ftrl", "alpha", alpha)
        self.beta = _not_negative("ftrl", "beta", beta)
        self.l1 = _not_negative("ftrl", "l1", l1)
        self.l2 = _not_negative("ftrl", "l2", l2)
        self._f32 = tuple(np.float32(v) for v in (self.alpha, self.beta, self.l1, self.l2))

    def apply(self, values, state, rows, grads):
        row_kernels.apply_ftrl(values, state["z"], state["n"], rows, grads, *self._f32)

    def apply_run(self, values, state, start, grads):
        rows = np.arange(start, start + len(grads), dtype=np.int64)
        row_kernels.apply_ftrl(values, state["z"], state["n"], rows, grads, *self._f32)

    def describe(self):
        return {"rule": self.name, "alpha": self.alpha, "beta": self.beta, "l1": self.l1,
                "l2": self.l2}


RULES = Registry("update rule")
register_rule = RULES.register
"""Add an UpdateRule subclass under its ``name`` (usable as a decorator)."""

for _cls in (SumRule, SGDRule, AdaGradRule, FTRLRule):
    register_rule(_cls)


def make_rule(name: str, **params) -> UpdateRule:
    """Instantiate the rule ``name`` with its parameters; clear error for unknown names."""
    return RULES.make(name, **params)
