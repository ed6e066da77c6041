"""Feature admission through real servers and workers (issue 19): with ``admit="count:3"`` a
key gets its row at its third push, pulls read ``init`` until then, the counts of keys not
admitted yet survive a checkpoint restored on another number of servers, and a replicated
table copies only the rows that exist."""
import json

import pytest

from tests.helpers.launch import run_mpi
from tests.helpers.results import result_of

PROGRAM = "tests/mpi/programs/admission.py"
WORKERS = 2
KEYS = 500  # per worker
HOT = 50  # worker 0's keys pushed a third time before the save


def launch(servers, phase, root, replicas=0, ft=False):
    proc = run_mpi(servers + WORKERS, [PROGRAM, "--servers", str(servers), "--phase", phase,
                                       "--root", str(root), "--replicas", str(replicas)],
                   ft=ft, timeout=180)
    stats = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
             if line.startswith("STATS ")]
    assert len(stats) == servers, proc.stdout + proc.stderr
    return result_of(proc), stats


@pytest.mark.parametrize("before, after, replicas", [(1, 2, 0), (2, 3, 0), (2, 2, 1)])
def test_keys_get_rows_at_their_third_push_also_across_a_restore(tmp_path, before, after,
                                                                 replicas, ulfm):
    saved, stats = launch(before, "save", tmp_path, replicas, ulfm and replicas > 0)
    # two pushes each: no rows, pulls read init 0; the hot keys' third push applied -1
    assert saved["before"] == [[-1.0, HOT], [0.0, KEYS - HOT]]
    assert sum(s["rows"] for s in stats) == HOT
    assert sum(s["admitted"] for s in stats) == HOT
    assert sum(s["deferred"] for s in stats) == 2 * WORKERS * KEYS
    resumed, stats = launch(after, "restore", tmp_path, replicas, ulfm and replicas > 0)
    assert resumed["before"] == saved["before"]  # what the checkpoint holds
    # the third push of the others admits them at once: the counts survived the restore
    assert resumed["after"] == [[-2.0, HOT], [-1.0, WORKERS * KEYS - HOT]]
    assert sum(s["rows"] for s in stats) == WORKERS * KEYS
    assert sum(s["admitted"] for s in stats) == WORKERS * KEYS - HOT
