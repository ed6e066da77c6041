"""jobs/drift_lr.py (issue 19, done-when 2) on a small drifting stream: without admission and
eviction the weight table keeps every key it was ever pushed; with ``--admit count:2
--evict unseen:STEPS`` it levels off far below that while the test AUC stays within 0.3
points; with ``--capacity N`` no server ever holds more than N rows between requests."""
import pytest

from tests.helpers.launch import run_mpi
from tests.helpers.results import final_metrics

ROWS = ["--rows", "60000", "--active", "300", "--report-every", "1"]


def drift(*options):
    return final_metrics(run_mpi(4, ["-m", "mpips", "run", "drift_lr", "--servers", "2",
                                     *ROWS, *options], timeout=240))


@pytest.mark.long
def test_admission_and_eviction_level_the_table_off_and_capacity_bounds_it():
    none = drift()
    kept = drift("--admit", "count:2", "--evict", "unseen:50")
    capped = drift("--admit", "count:2", "--capacity", "250")
    print({name: (r["rows"], r["max_rows"], round(r["test_auc"], 4))
           for name, r in (("none", none), ("admit+evict", kept), ("capacity", capped))})
    # no admission, no eviction: a row for every key pushed, one-off ids included
    assert none["rows"] == none["max_rows"] == none["distinct_train_keys"]
    assert none["evicted"] == 0 and none["deferred"] == 0
    growth = [rows for _, rows in none["rows_over_clocks"]]
    assert growth == sorted(growth)  # it only grows
    # admitted and evicted: the table stays a fraction of that, AUC within 0.3 points
    assert kept["max_rows"] < none["rows"] / 100 and kept["evicted"] > 0
    assert kept["admitted"] < none["rows"] / 2 and kept["deferred"] > 0
    assert abs(kept["test_auc"] - none["test_auc"]) <= 0.003
    last_half = [rows for _, rows in kept["rows_over_clocks"][len(kept["rows_over_clocks"]) // 2:]]
    assert max(last_half) < 1.5 * min(last_half)  # levelled off, not growing
    # capacity: at most 250 rows per server (2 servers) at every clock
    assert max(rows for _, rows in capped["rows_over_clocks"]) <= 2 * 250
    assert capped["evicted"] > 0 and capped["rows"] <= 2 * 250
