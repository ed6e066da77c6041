"""``mpips data convert|info``: in process through mpips.cli.main.main and as a user runs the
``mpips`` console script; mistakes are one line and exit code 2; h5dump shows the layout."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpips.cli.main import main
from mpips.ml.csr_file import open_data
from mpips.ml.libsvm import read_libsvm, write_libsvm
from mpips.ml.ratings import make_ratings, read_ratings, write_ratings
from mpips.ml.synthetic import make_sparse_classification
from tests.helpers.data import REPO_ROOT, unavailable

MPIPS = Path(sys.executable).with_name("mpips")


def mpips(*args) -> subprocess.CompletedProcess:
    """The ``mpips`` console script of this venv, run as a user would."""
    return subprocess.run([str(MPIPS), *map(str, args)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120, check=False)


@pytest.fixture
def svm(tmp_path):
    path = tmp_path / "d.svm"
    write_libsvm(make_sparse_classification(300, 40, 4, seed=1), path)
    return path


def test_convert_and_info_in_process(tmp_path, svm, capsys):
    out = tmp_path / "d.h5"
    assert main(["data", "convert", str(svm), str(out)]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith(f"wrote {out}: libsvm, 300 rows, ")
    assert " entries, " in line and " bytes in " in line
    with open_data(out) as data:
        got, want = data.read_all(), read_libsvm(svm)
        assert np.array_equal(got.indices, want.indices) and got.n_features == want.n_features
    assert main(["data", "info", str(out), "--verify"]) == 0
    info = capsys.readouterr().out
    assert f"{out}: mpips data file version 1, kind libsvm, 300 rows" in info
    assert "indices" in info and "fletcher32" in info and "chunks (" in info
    assert "checksums and rows: ok" in info


def test_ratings_and_corpus_kinds(tmp_path, capsys):
    ratings = make_ratings(500, 40, 30, seed=2).data
    text = tmp_path / "u.data"
    write_ratings(ratings, text)
    assert main(["data", "convert", str(text), str(tmp_path / "u.h5"), "--kind", "ratings"]) == 0
    with open_data(tmp_path / "u.h5") as data:
        assert np.array_equal(data.read_all().ratings, read_ratings(text).ratings)
    (tmp_path / "c.txt").write_text("a b\n\nc a\n")
    assert main(["data", "convert", str(tmp_path / "c.txt"), str(tmp_path / "c.h5"),
                 "--kind", "corpus"]) == 0
    assert main(["data", "info", str(tmp_path / "c.h5")]) == 0
    out = capsys.readouterr().out
    assert "kind corpus, 3 rows, 4 entries" in out and "words" in out and "no checksum" in out


@pytest.mark.parametrize("make, args, message", [
    (None, ["convert", "{tmp}/none.svm", "{tmp}/o.h5"], "{tmp}/none.svm: no such file"),
    ("1 1:1\n1 1:2 x\n", ["convert", "{tmp}/in.txt", "{tmp}/o.h5"], read_libsvm),
    ("1 2 3\n1 2\n", ["convert", "{tmp}/in.txt", "{tmp}/o.h5", "--kind", "ratings"],
     read_ratings),
    ("1 1:1\n", ["convert", "{tmp}/in.txt", "{tmp}/in.txt"],
     "{tmp}/in.txt: exists (add --overwrite to replace it)"),
    ("1 1:1\n", ["convert", "{tmp}/in.txt", "{tmp}/no/o.h5"],
     "{tmp}/no/o.h5: no such directory {tmp}/no"),
    ("1 1:1\n", ["info", "{tmp}/in.txt"],
     "{tmp}/in.txt: not an HDF5 file (convert text with 'mpips data convert')"),
    (None, ["info", "{tmp}/none.h5"], "{tmp}/none.h5: no such file"),
])
def test_mistakes_are_one_line_and_exit_2(tmp_path, capsys, make, args, message):
    if make is not None:
        (tmp_path / "in.txt").write_text(make)
    args = [a.format(tmp=tmp_path) for a in args]
    if callable(message):  # a malformed line: the text reader's own 'path:line: what'
        with pytest.raises(ValueError) as caught:
            message(tmp_path / "in.txt")
        message = str(caught.value)
        assert message.startswith(f"{tmp_path / 'in.txt'}:2: ")
    assert main(["data", *args]) == 2
    err = capsys.readouterr().err
    assert err == f"mpips data: error: {message.format(tmp=tmp_path)}\n"
    assert not list(tmp_path.glob("o.h5*"))


def test_the_console_script(tmp_path, svm):
    out = tmp_path / "d.h5"
    proc = mpips("data", "convert", svm, out)
    assert proc.returncode == 0 and proc.stdout.startswith(f"wrote {out}: libsvm, 300 rows")
    again = mpips("data", "convert", svm, out)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr == f"mpips data: error: {out}: exists (add --overwrite to replace it)\n"
    assert mpips("data", "convert", svm, out, "--overwrite").returncode == 0
    (tmp_path / "foreign.h5").write_bytes(out.read_bytes())
    import h5py

    with h5py.File(tmp_path / "foreign.h5", "r+") as f:
        del f.attrs["mpips_data"]
    bad = mpips("data", "info", tmp_path / "foreign.h5")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr == (f"mpips data: error: {tmp_path / 'foreign.h5'}: an HDF5 file but not "
                          f"an mpips data file (no mpips_data='csr' attribute)\n")
    info = mpips("data", "info", out, "--verify")
    assert info.returncode == 0 and "checksums and rows: ok" in info.stdout


def test_h5dump_shows_the_descriptions(tmp_path, svm):
    if shutil.which("h5dump") is None:  # fails under CI=true, where .ci/run installs it
        unavailable("h5dump (Debian hdf5-tools)", "h5dump (Debian hdf5-tools) missing")
    out = tmp_path / "d.h5"
    assert main(["data", "convert", str(svm), str(out)]) == 0
    dump = subprocess.run(["h5dump", "-A", str(out)], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    for name in ("indptr", "indices", "values", "labels"):
        assert f'DATASET "{name}"' in dump
    assert dump.count('ATTRIBUTE "description"') == 5  # the root's and every dataset's
    assert "0-based feature id of each entry" in dump and '"csr"' in dump
    assert 'ATTRIBUTE "n_features"' in dump
