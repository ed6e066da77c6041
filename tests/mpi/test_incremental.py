"""Incremental checkpoints of a running job (issue #19): servers track the rows pushes change
and the keys eviction removes, ``save_checkpoint(..., incremental=True)`` writes only those as
a delta of the previous checkpoint, and every checkpoint of the chain reads back (offline, and
restored onto another number of servers) as exactly the model the job pulled when it saved.
Program: tests/mpi/programs/incremental.py."""
import json

import numpy as np

from mpips import ckpt
from tests.helpers.ckpt import ckpt_cli
from tests.helpers.launch import launch
from tests.mpi.programs.incremental import batch

PROGRAM = "tests/mpi/programs/incremental.py"


def models(proc) -> dict[int, dict]:
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("MODEL "):
            _, step, text = line.split(" ", 2)
            out[int(step)] = json.loads(text)
    return out


def read_back(path, name: str, keys: np.ndarray, init: float = 0.0) -> np.ndarray:
    """What a pull of ``keys`` from the model saved at ``path`` returns (init when absent)."""
    rows = ckpt.read_table(path, name)
    out = np.full((keys.size, rows.values.shape[1]), init, np.float32)
    where = np.searchsorted(rows.keys, keys)
    found = (where < rows.keys.size) & (rows.keys[np.minimum(where, rows.keys.size - 1)] == keys)
    out[found] = rows.values[where[found]]
    return out


def assert_saved(path, model: dict) -> None:
    for name in ("w", "e"):
        keys = np.array(model[name][0], np.uint64)
        want = np.array(model[name][1], np.uint32)
        got = read_back(path, name, keys).view(np.uint32).ravel()
        np.testing.assert_array_equal(got, want, err_msg=f"{path} table {name}")
    got = ckpt.read_table(path, "d").values.view(np.uint32).ravel()
    np.testing.assert_array_equal(got, np.array(model["d"], np.uint32), err_msg=f"{path} d")


def test_a_chain_of_deltas_reads_back_and_restores_onto_other_server_counts(tmp_path):
    root = tmp_path / "ck"
    proc = launch(4, [PROGRAM, "--servers", "2", "--root", str(root), "--steps", "6"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checkpoint step 1: full, not incremental: no checkpoint was saved or restored " \
           "by these servers yet" in proc.stderr
    saved = models(proc)
    assert sorted(saved) == [1, 2, 3, 4, 5, 6]
    infos = {i.step: i for i in ckpt.list_checkpoints(root, level="full")}
    assert all(i.valid for i in infos.values()), [i.reason for i in infos.values()]
    assert [infos[s].parent for s in range(1, 7)] == [None, 1, 2, 3, 4, 5]
    assert infos[6].chain == (1, 2, 3, 4, 5, 6) and infos[6].base == 1 and infos[6].depth == 5
    for step in range(2, 7):  # a delta holds the rows of the step's pushes, not the model
        manifest = ckpt.load_manifest(infos[step].path)
        written = sum(shard.ranges["w"].rows for shard in manifest.shards)
        pushed = np.unique(np.concatenate([batch(step, worker) for worker in (0, 1)]))
        assert written == pushed.size < ckpt.read_table(infos[step].path, "w").keys.size
    for step, model in saved.items():
        assert_saved(root / ckpt.step_dir_name(step), model)
    # evictions are removals in the deltas: keys pushed once at step 1 are gone by step 4
    e6 = ckpt.read_table(root / ckpt.step_dir_name(6), "e")
    assert not np.isin(np.arange(100, 110, dtype=np.uint64), e6.keys).any()
    assert np.isin(np.arange(5, dtype=np.uint64), e6.keys).all()

    # Restore the chain onto 3 servers, then 1: each pulls the step's model and saves on
    # as deltas of the restored checkpoint, whatever the number of servers that wrote it.
    first = 7
    for servers in (3, 1):
        proc = launch(servers + 2, [PROGRAM, "--servers", str(servers), "--root", str(root),
                                    "--restore", "--first", str(first), "--steps", "2",
                                    "--keep", "2"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "full, not incremental" not in proc.stderr
        for step, model in models(proc).items():
            path = root / ckpt.step_dir_name(step)
            assert ckpt.load_manifest(path).parent["step"] == step - 1
            assert_saved(path, model)
        first += 2
    # keep=2 kept the two newest and everything they build on: the whole chain
    infos = ckpt.list_checkpoints(root)
    assert [i.step for i in infos] == list(range(10, 0, -1)) and all(i.valid for i in infos)
    listing = ckpt_cli("ls", str(root))
    assert listing.returncode == 0, listing.stderr
    assert "delta of 9" in listing.stdout and "full" in listing.stdout, listing.stdout
