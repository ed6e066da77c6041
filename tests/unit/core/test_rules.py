"""Update rules and their registry (mpips.core.rules), and table specs (mpips.core.spec)."""
import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from mpips.errors import TableError
from mpips.core.rules import (RULES, AdaGradRule, FTRLRule, SGDRule, SumRule, UpdateRule,
                              make_rule, register_rule)
from mpips.core.partition import KEY_SPACE, RangePartition
from mpips.core.spec import TableSpec
from tests.helpers.data import REPO_ROOT

# ===================================================================================== registry


@pytest.fixture
def clean_registry():
    """Restore RULES after a test that registers rules."""
    saved = dict(RULES)
    yield
    RULES.clear()
    RULES.update(saved)


def test_builtin_rules_are_registered():
    assert RULES["sum"] is SumRule and RULES["sgd"] is SGDRule and RULES["adagrad"] is AdaGradRule
    assert RULES["ftrl"] is FTRLRule


def test_unknown_rule_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown update rule 'adam'; known: adagrad, ftrl, sgd, sum"):
        make_rule("adam")


@pytest.mark.parametrize("rule", ["sgd", "adagrad"])
@pytest.mark.parametrize("lr", [0, -0.1, math.nan, math.inf])
def test_bad_learning_rate(rule, lr):
    with pytest.raises(ValueError, match=f"update rule '{rule}': lr must be a positive number"):
        make_rule(rule, lr=lr)


@pytest.mark.parametrize("eps", [0, -1e-8, math.nan])
def test_bad_adagrad_eps(eps):
    with pytest.raises(ValueError, match="eps must be a positive number"):
        make_rule("adagrad", eps=eps)


@pytest.mark.parametrize("rule, params", [("sum", {"lr": 0.1}), ("sgd", {"momentum": 0.9}),
                                          ("sgd", {"lr": None}), ("sgd", {"lr": "fast"}),
                                          ("sgd", {"lr": True})])
def test_bad_rule_parameters_raise_value_error(rule, params):
    with pytest.raises(ValueError, match=f"'{rule}'"):
        make_rule(rule, **params)


@pytest.mark.parametrize("option, value, what", [
    ("alpha", 0, "a positive number"), ("alpha", "fast", "a positive number"),
    ("beta", -1, "a number >= 0"), ("l1", math.nan, "a number >= 0"),
    ("l2", math.inf, "a number >= 0"), ("l1", None, "a number >= 0")])
def test_bad_ftrl_options_name_the_option(option, value, what):
    with pytest.raises(ValueError, match=f"update rule 'ftrl': {option} must be {what}, got"):
        make_rule("ftrl", **{option: value})


def test_a_table_with_a_bad_ftrl_option_is_refused_naming_table_and_option():
    with pytest.raises(TableError, match=r"^table 'w': update rule 'ftrl': l1 must be a number "
                                         r">= 0, got -0\.5$"):
        spec(rule="ftrl", rule_params={"l1": -0.5})


def test_make_rule_parameters_and_describe():
    assert make_rule("sum").describe() == {"rule": "sum"}
    assert make_rule("sgd", lr=0.5).describe() == {"rule": "sgd", "lr": 0.5}
    assert make_rule("adagrad", lr=2, eps=1e-6).describe() == {"rule": "adagrad", "lr": 2.0,
                                                               "eps": 1e-6}
    assert make_rule("ftrl", alpha=0.5, l1=2).describe() == {
        "rule": "ftrl", "alpha": 0.5, "beta": 1.0, "l1": 2.0, "l2": 1.0}
    assert make_rule("ftrl").state_names == ("z", "n")
    assert make_rule("sgd").lr == 0.1  # defaults
    assert make_rule("sgd") is not make_rule("sgd")  # a fresh object each time


class ScaleRule(UpdateRule):
    """values += factor * grads (a user rule for the registry tests)."""

    name = "test_scale"

    def __init__(self, factor=1.0):
        self.factor = float(factor)

    def apply(self, values, state, rows, grads):
        ok = rows >= 0
        values[rows[ok]] += np.float32(self.factor) * grads[ok]

    def apply_run(self, values, state, start, grads):
        values[start:start + len(grads)] += np.float32(self.factor) * grads


def test_register_custom_rule(clean_registry):
    assert register_rule(ScaleRule) is ScaleRule  # usable as a decorator
    rule = make_rule("test_scale", factor=3)
    assert isinstance(rule, ScaleRule)
    values = np.zeros((2, 1), np.float32)
    rule.apply(values, {}, np.array([1, -1]), np.ones((2, 1), np.float32))
    np.testing.assert_array_equal(values, [[0.0], [3.0]])
    assert "test_scale" in str(pytest.raises(ValueError, make_rule, "nope").value)
    spec = TableSpec("t", "dense", 0, 1, size=4, rule="test_scale", rule_params={"factor": 2})
    assert isinstance(spec.make_rule(), ScaleRule)


def test_register_refuses_duplicates_and_empty_names(clean_registry):
    register_rule(ScaleRule)
    with pytest.raises(ValueError, match="'test_scale' is empty or taken"):
        register_rule(ScaleRule)

    class OtherSum(SumRule):
        pass

    with pytest.raises(ValueError, match="'sum' is empty or taken"):
        register_rule(OtherSum)
    assert RULES["sum"] is SumRule

    class Nameless(UpdateRule):
        pass

    with pytest.raises(ValueError, match="'' is empty or taken"):
        register_rule(Nameless)


# ======================================================================= rules vs hand results

WIDTH = 3
ROWS = np.array([2, -1, 0], np.int64)  # -1: a key this slice does not store (skipped)


def fresh_table():
    values = np.arange(4 * WIDTH, dtype=np.float32).reshape(4, WIDTH)
    grads = np.array([[1, 2, 3], [100, 100, 100], [-4, 0, 0.5]], np.float32)
    return values, grads


def test_sum_rule():
    values, grads = fresh_table()
    expected = values.copy()
    expected[2] += [1, 2, 3]
    expected[0] += [-4, 0, 0.5]
    rule = make_rule("sum")
    assert rule.state_names == ()
    rule.apply(values, {}, ROWS, grads)
    np.testing.assert_array_equal(values, expected)


def test_sgd_rule():
    values, grads = fresh_table()
    expected = values.copy()
    expected[2] -= np.float32(0.5) * np.array([1, 2, 3], np.float32)
    expected[0] -= np.float32(0.5) * np.array([-4, 0, 0.5], np.float32)
    make_rule("sgd", lr=0.5).apply(values, {}, ROWS, grads)
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(values[2], [5.5, 6.0, 6.5])  # [6, 7, 8] - 0.5 * [1, 2, 3]


def test_adagrad_rule():
    values, grads = fresh_table()
    rule = make_rule("adagrad", lr=0.5, eps=1e-8)
    assert rule.state_names == ("accum",)
    state = {"accum": np.ones_like(values)}
    rule.apply(values, state, ROWS, grads)
    # row 2: accum = 1 + g^2 = [2, 5, 10]; row 0: [17, 1, 1.25]; rows 1 and 3 untouched
    np.testing.assert_allclose(state["accum"], [[17, 1, 1.25], [1, 1, 1], [2, 5, 10], [1, 1, 1]],
                               rtol=1e-6)
    expected = np.arange(4 * WIDTH, dtype=np.float64).reshape(4, WIDTH)
    expected[2] -= 0.5 * np.array([1, 2, 3]) / np.sqrt([2, 5, 10])
    expected[0] -= 0.5 * np.array([-4, 0, 0.5]) / np.sqrt([17, 1, 1.25])
    np.testing.assert_allclose(values, expected, rtol=1e-6)


@pytest.mark.parametrize("name, params", [("sum", {}), ("sgd", {"lr": 0.3}),
                                          ("adagrad", {"lr": 0.3, "eps": 1e-6}),
                                          ("ftrl", {"alpha": 0.3, "l1": 0.5})])
def test_apply_run_equals_apply_on_consecutive_rows(name, params):
    rng = np.random.default_rng(5)
    values = rng.standard_normal((50, 4)).astype(np.float32)
    grads = rng.standard_normal((20, 4)).astype(np.float32)
    rule = make_rule(name, **params)
    state_a = {s: np.abs(rng.standard_normal(values.shape)).astype(np.float32)
               for s in rule.state_names}
    state_b = {s: a.copy() for s, a in state_a.items()}
    by_rows, by_run = values.copy(), values.copy()
    rule.apply(by_rows, state_a, np.arange(10, 30, dtype=np.int64), grads)
    rule.apply_run(by_run, state_b, 10, grads)
    compare = (np.testing.assert_array_equal if name != "adagrad"
               else lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6))
    compare(by_rows, by_run)
    for s in rule.state_names:
        compare(state_a[s], state_b[s])
    np.testing.assert_array_equal(by_run[:10], values[:10])  # outside the run: untouched
    np.testing.assert_array_equal(by_run[30:], values[30:])


# ==================================================================================== TableSpec

def spec(**overrides):
    fields = dict(name="w", kind="dense", table_id=0, num_segments=2, size=1000, width=4,
                  rule="sgd", rule_params={"lr": 0.1}, init=0.0)
    fields.update(overrides)
    return TableSpec(**fields)


def test_valid_specs():
    dense = spec()
    assert dense.partition == RangePartition(1000, 2)
    assert isinstance(dense.make_rule(), SGDRule) and dense.make_rule().lr == 0.1
    sparse = TableSpec("emb", "sparse", 1, 3)
    assert (sparse.size, sparse.width, sparse.rule, sparse.init) == (KEY_SPACE, 1, "sum", 0.0)
    assert sparse.partition.ranges()[-1].end == KEY_SPACE
    assert spec(size=KEY_SPACE).size == KEY_SPACE  # a dense table may span every key, too
    assert spec(width=1 << 20).width == 1 << 20


BAD_SPECS = {
    "empty_name": ({"name": ""}, "name must be a non-empty string"),
    "non_string_name": ({"name": 7}, "name must be a non-empty string"),
    "bad_kind": ({"kind": "hashed"}, "kind must be one of"),
    "sparse_with_size": ({"kind": "sparse", "size": 100}, "a sparse table spans all uint64"),
    "width_zero": ({"width": 0}, r"width must be an int in \[1, 2\*\*20\], got 0"),
    "width_huge": ({"width": (1 << 20) + 1}, "width must be an int"),
    "width_float": ({"width": 2.0}, "width must be an int"),
    "size_zero": ({"size": 0}, r"size must be an int in \[1, 2\*\*64\], got 0"),
    "size_too_big": ({"size": KEY_SPACE + 1}, "size must be an int"),
    "size_float": ({"size": 10.0}, "size must be an int"),
}


@pytest.mark.parametrize("case", BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_spec_validation(case):
    overrides, pattern = case
    with pytest.raises(TableError, match=pattern):
        spec(**overrides)


@pytest.mark.parametrize("overrides, pattern", [
    ({"rule": "nope"}, "unknown update rule 'nope'"),
    ({"rule_params": {"lr": -1}}, "lr must be a positive number"),
    ({"rule": "sum", "rule_params": {"lr": 0.1}}, "update rule 'sum'"),
])
def test_spec_validates_its_rule(overrides, pattern):
    # a TableError (an MpipsError): mpips run prints it as one line, not a traceback
    with pytest.raises(TableError, match=pattern):
        spec(**overrides)


@pytest.mark.parametrize("init", [math.nan, math.inf, -math.inf, "zero"])
def test_spec_rejects_an_init_value_that_is_not_a_finite_number(init):
    # Pushed values must be finite (NonFiniteError); the value of never-pushed rows too.
    with pytest.raises(TableError, match="init"):
        spec(init=init)


# ================================================================================= fingerprint

def test_fingerprint_is_a_stable_31_bit_number():
    fp = spec().fingerprint()
    assert isinstance(fp, int) and 0 <= fp < 2**31
    assert spec().fingerprint() == fp
    assert spec(rule_params={"lr": 0.1}).fingerprint() == fp
    assert spec(init=0).fingerprint() == fp  # 0 and 0.0 are the same init value


def test_fingerprint_ignores_rule_param_order():
    a = spec(rule="adagrad", rule_params={"lr": 0.1, "eps": 1e-6})
    b = spec(rule="adagrad", rule_params={"eps": 1e-6, "lr": 0.1})
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_is_the_same_in_another_process():
    # Every rank computes it in its own interpreter (with its own hash seed).
    code = ("from mpips.core.spec import TableSpec; print(TableSpec('w', 'dense', 0, 2, size=1000, "
            "width=4, rule='sgd', rule_params={'lr': 0.1}).fingerprint())")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == spec().fingerprint()


CHANGES = {
    "name": {"name": "v"},
    "kind": {"kind": "sparse", "size": KEY_SPACE},
    "table_id": {"table_id": 1},
    "num_segments": {"num_segments": 3},
    "size": {"size": 1001},
    "width": {"width": 5},
    "rule": {"rule": "adagrad"},
    "rule_param": {"rule_params": {"lr": 0.2}},
    "init": {"init": 0.5},
    "consistency": {"consistency": "ssp:2"},
    "codec": {"codec": "keycache"},
    "one_sided": {"one_sided": True},
    "admit": {"kind": "sparse", "size": KEY_SPACE, "admit": "count:2"},
    "evict": {"kind": "sparse", "size": KEY_SPACE, "evict": "unseen:3"},
    "capacity": {"kind": "sparse", "size": KEY_SPACE, "capacity": 9},
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_fingerprint_changes_with_every_field(change):
    assert spec(**change).fingerprint() != spec().fingerprint()


def test_fingerprint_covers_every_field():
    # A new TableSpec field must be added to fingerprint() and to CHANGES above.
    assert {f.name for f in dataclasses.fields(TableSpec)} == {
        "name", "kind", "table_id", "num_segments", "size", "width", "rule", "rule_params",
        "init", "consistency", "codec", "one_sided", "placement", "admit", "evict",
        "capacity"}


def test_fingerprint_changes_with_placement():
    hashed = spec(kind="sparse", size=KEY_SPACE)
    assert hashed.placement == "hash" and spec().placement == "range"
    assert spec(kind="sparse", size=KEY_SPACE, placement="range").fingerprint() != \
        hashed.fingerprint()


def test_placement_is_checked():
    with pytest.raises(TableError, match="placement must be one of"):
        spec(placement="hash")  # dense tables keep ranges
    with pytest.raises(TableError, match="placement must be one of"):
        spec(kind="sparse", size=KEY_SPACE, placement="mixed")


def test_fingerprint_changes_with_admission():
    sparse = dict(kind="sparse", size=KEY_SPACE)
    assert spec(**sparse, admit="count:2").fingerprint() != spec(**sparse).fingerprint()
    assert spec(**sparse, admit="count:2").fingerprint() != \
        spec(**sparse, admit="count:3").fingerprint()
    assert spec(**sparse, evict="unseen:2").fingerprint() != spec(**sparse).fingerprint()
    assert spec(**sparse, capacity=5).fingerprint() != spec(**sparse, capacity=6).fingerprint()
