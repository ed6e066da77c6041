"""Pulls of a table whose codec drops zeros (issue 19: FTRL's zero weights cost nothing extra
on the wire): replies leave out the all-zero rows, and the worker gets back the same values,
bit for bit, as from a raw table fed the same pushes (hash placement: split and scattered
back; pull and push_pull)."""
from tests.helpers.launch import run_mpi
from tests.helpers.results import result_of


def test_zero_weights_of_an_ftrl_table_are_left_out_of_pull_replies():
    got = result_of(run_mpi(4, ["tests/mpi/programs/zero_pulls.py"], timeout=180))
    assert got["pull_same"] and got["push_pull_same"]
    assert got["zero_share"] > 0.8  # FTRL's L1 keeps most weights at exactly 0
    (values, raw_bytes), (same_values, zero_bytes) = got["pulled"]["raw"], got["pulled"]["zeros"]
    assert values == same_values == 20_000 and raw_bytes == 4 * values
    assert zero_bytes < 0.35 * raw_bytes
