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

    def apply(self, values, state, rows, grads):  # pragma: no cover - interface
        raise NotImplementedError

    def apply_run(self, values, state, start, grads):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict:
        """Rule name and parameters (stored with checkpoints and printed in logs)."""
        return {"rule": self.name}


def _positive(rule: str, name: str, value) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"update rule {rule!r}: {name} must be a positive number, got {value!r}")
    return value


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


RULES = Registry("update rule")
register_rule = RULES.register
"""Add an UpdateRule subclass under its ``name`` (usable as a decorator)."""

for _cls in (SumRule, SGDRule, AdaGradRule):
    register_rule(_cls)


def make_rule(name: str, **params) -> UpdateRule:
    """Instantiate the rule ``name`` with its parameters; clear error for unknown names."""
    return RULES.make(name, **params)
