"""jobs/lr_shards.held_out_rows: which rows of a file are test rows when every worker reads
only its part: a seeded hash of the row number, so the choice is the same however the file is
cut, and about the asked share of rows."""
import numpy as np
import pytest

from mpips.jobs.lr_shards import held_out_rows


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.2, 0.5])
def test_about_the_asked_share_is_held_out_and_the_choice_is_per_row(fraction):
    rows = np.arange(200_000)
    test = held_out_rows(rows, fraction, seed=3)
    assert abs(test.mean() - fraction) < 0.005
    cut = [held_out_rows(rows[lo:lo + 777], fraction, 3) for lo in range(0, rows.size, 777)]
    assert np.array_equal(np.concatenate(cut), test)  # any cut of the file: the same rows


def test_the_seed_changes_the_rows_and_large_row_numbers_work():
    rows = np.arange(10_000)
    assert not np.array_equal(held_out_rows(rows, 0.2, 1), held_out_rows(rows, 0.2, 2))
    assert np.array_equal(held_out_rows(rows, 0.2, 1), held_out_rows(rows, 0.2, 1))
    big = np.arange(2**40, 2**40 + 50_000)
    assert abs(held_out_rows(big, 0.3, 0).mean() - 0.3) < 0.01
