"""mpips.cli.sweep: sweep files -> task options, task records, the collected table (no SLURM)."""
import argparse
import csv
import json

import pytest

from mpips.cli import sweep
from tests.helpers.data import REPO_ROOT
from tests.helpers.nompi import assert_works_without_mpi4py

SHA = "0123456789abcdef" * 4


def write(path, text):
    path.write_text(text)
    return path


def test_tsv_sweep_skips_comments_and_blank_lines_and_pads_missing_values(tmp_path):
    path = write(tmp_path / "s.tsv", "# comment\nname\tlr\tstaleness\n\nA\t0.1\t4\n  # x\nB\t0.2\n")
    assert sweep.read_sweep(path) == [{"name": "A", "lr": "0.1", "staleness": "4"},
                                      {"name": "B", "lr": "0.2", "staleness": ""}]


def test_whitespace_separated_sweep_when_the_header_has_no_tab(tmp_path):
    path = write(tmp_path / "s.txt", "lr   consistency\n0.1  bsp\n0.3 async\n")
    assert [s["consistency"] for s in sweep.read_sweep(path)] == ["bsp", "async"]


def test_jsonl_and_json_sweeps(tmp_path):
    rows = [{"lr": 0.1, "resume": True}, {"lr": 0.2, "staleness": None}]
    jsonl = write(tmp_path / "s.jsonl", "# c\n" + "\n".join(map(json.dumps, rows)) + "\n\n")
    assert sweep.read_sweep(jsonl) == rows
    assert sweep.read_sweep(write(tmp_path / "s.json", json.dumps(rows))) == rows


@pytest.mark.parametrize("name,text,match", [
    ("dup.tsv", "lr\tlr\n1\t2\n", "unique"),
    ("long.tsv", "lr\n1\t2\n", "2 values for 1 columns"),
    ("empty.tsv", "# nothing\n\n", "no header"),
    ("bad.jsonl", '{"lr": 1}\n{lr\n', "not JSON"),
    ("list.json", '[1, 2]', "JSON objects"),
])
def test_bad_sweep_files_are_named_errors(tmp_path, name, text, match):
    with pytest.raises(sweep.SweepError, match=match):
        sweep.read_sweep(write(tmp_path / name, text))


def test_task_args_rules():
    params = {"name": "t0", "lr": "0.1", "staleness": "-", "table": "", "hashed_keys": "true",
              "quiet": "no", "--seed": "7", "args": "--codec 'keycache,zeros' --l2 1e-4"}
    assert sweep.task_args(params) == ["--lr", "0.1", "--hashed-keys", "--seed", "7",
                                       "--codec", "keycache,zeros", "--l2", "1e-4"]
    assert sweep.task_args({"lr": 0.5, "resume": True, "quiet": False, "staleness": None,
                            "servers": 2}) == ["--lr", "0.5", "--resume", "--servers", "2"]


def test_the_example_sweep_gives_four_sparse_lr_option_sets():
    sets = sweep.read_sweep(REPO_ROOT / "slurm" / "sweep-example.tsv")
    assert len(sets) == 4
    assert sweep.task_args(sets[2]) == ["--lr", "0.1", "--consistency", "ssp", "--staleness",
                                        "4", "--servers", "2"]
    assert all("--staleness" not in sweep.task_args(s) for i, s in enumerate(sets) if i != 2)


def test_parameter_set_names_the_valid_task_ids(tmp_path):
    path = write(tmp_path / "s.tsv", "lr\n1\n2\n")
    assert sweep.parameter_set(path, 1) == {"lr": "2"}
    with pytest.raises(sweep.SweepError, match="tasks 0-1"):
        sweep.parameter_set(path, 2)


@pytest.mark.parametrize("text,expected", [
    ('epoch 1/2\n[1,0]<stdout>: {"a": 1}\n[1,0]<stdout>: epoch 2\n', {"a": 1}),
    ('0: {"a": 1}\n0: {"b": 2}\n1: {not json}\n', {"b": 2}),
    ('{"a": [1, {"c": 2}]}\n', {"a": [1, {"c": 2}]}),
    ('[1, 2]\nno json here\n', None),
    ("", None),
])
def test_last_json_line_ignores_rank_labels_and_noise(text, expected):
    assert sweep.last_json(text) == expected


def test_json_lines_joins_a_line_that_srun_label_split_into_pieces():
    metrics = {"curve": [0.123456789 * i for i in range(200)], "model_sha256": SHA}
    text = json.dumps(metrics)
    pieces = [text[i:i + 1024] for i in range(0, len(text), 1024)]
    assert len(pieces) > 2
    log = ["0: epoch 1/1", f"0: {pieces[0]}", " 1: {other rank", *(f"0: {p}" for p in pieces[1:]),
           "mpips-sbatch: launcher exit code 0"]
    assert sweep.last_json("\n".join(log)) == metrics
    padded = "\n".join(f" 3: {p}" for p in pieces)  # srun pads labels to the widest rank
    assert sweep.json_lines('{"a": 1}\n' + padded + '\n[1,2]<stdout>: {"b": 2}') == \
        [{"a": 1}, metrics, {"b": 2}]
    assert sweep.json_lines("\n".join(pieces)) == []  # unlabelled pieces: no way to tell


def record(task, code, metrics=None, **extra):
    stdout = "" if metrics is None else "epoch 1/1\n[1,0]<stdout>: " + json.dumps(metrics) + "\n"
    return sweep.make_record(task=task, exit_code=code, stdout=stdout, **extra)


@pytest.mark.parametrize("rec,status", [
    (None, "missing"),
    (record(0, None), "unfinished"),
    (record(0, 1, {"test_accuracy": 0.9}), "failed"),
    (record(0, 0), "failed"),
    (record(0, 0, {"stopped_at_step": 12}), "stopped"),
    (record(0, 0, {"test_accuracy": 0.9}), "ok"),
])
def test_status_of_a_record(rec, status):
    assert sweep.status_of(rec)[0] == status


def make_results(tmp_path):
    """A results dir for a 7-task sweep: 2 ok, failed by exit code, failed without a metrics
    line, stopped, unfinished, and task 6 without a record."""
    results = tmp_path / "results"
    results.mkdir()
    write(results / "sweep.tsv",
          "name\tlr\tconsistency\n" + "".join(f"t{i}\t0.{i + 1}\tbsp\n" for i in range(7)))
    good = {"test_accuracy": 0.8125, "test_logloss": 0.4, "model_sha256": SHA, "seconds": 1.5}
    records = [record(0, 0, good), record(1, 0, {**good, "test_accuracy": 0.75}),
               record(2, 1, good), record(3, 0), record(4, 0, {"stopped_at_step": 9}),
               record(5, None)]
    for task, rec in enumerate(records):
        sweep.write_record(results / f"task-{task:04d}.json", rec)
    return results


def test_collect_marks_failed_stopped_unfinished_and_missing_tasks(tmp_path):
    columns, rows = sweep.collect(make_results(tmp_path))
    assert columns == ["task", "status", "exit", "name", "lr", "consistency", "test_accuracy",
                       "test_logloss", "seconds", "model_sha256", "note"]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "failed", "stopped",
                                           "unfinished", "missing"]
    assert [r["task"] for r in rows] == list(range(7))
    assert rows[1]["test_accuracy"] == 0.75 and rows[6]["lr"] == "0.7"
    assert rows[2]["note"] == "exit code 1" and rows[3]["note"] == "no metrics line"
    assert rows[6]["exit"] == "" and rows[6]["note"] == "no record"


def test_collect_with_chosen_metrics_and_a_record_without_a_task_id(tmp_path):
    results = make_results(tmp_path)
    sweep.write_record(results / "task-extra.json", record(None, 0, {"test_auc": 0.5}))
    columns, rows = sweep.collect(results, metrics=["test_auc"])
    assert columns[-2:] == ["test_auc", "note"]
    assert rows[-1]["task"] == "task-extra" and rows[-1]["test_auc"] == 0.5


def test_unreadable_record_is_a_failed_task(tmp_path):
    results = tmp_path / "r"
    results.mkdir()
    write(results / "task-0000.json", "{half a rec")
    _, rows = sweep.collect(results)
    assert rows[0]["status"] == "failed" and rows[0]["task"] == "task-0000"


def test_table_is_aligned_and_shortens_digests_while_csv_keeps_everything(tmp_path):
    columns, rows = sweep.collect(make_results(tmp_path))
    lines = sweep.format_table(columns, rows).splitlines()
    assert len(lines) == 8 and lines[0].split() == columns
    start = lines[0].index("status")
    assert all(line[start:].split()[0] in sweep.STATUSES for line in lines[1:])
    assert SHA[:12] in lines[1] and SHA not in lines[1]
    sweep.write_csv(tmp_path / "t.csv", columns, rows)
    table = list(csv.DictReader((tmp_path / "t.csv").read_text().splitlines()))
    assert table[0]["model_sha256"] == SHA and float(table[0]["test_accuracy"]) == 0.8125
    assert table[6]["status"] == "missing"


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="mpips")
    sweep.add_sweep_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sweep", *map(str, argv)])
    return args.handler(args)


def test_command_line_count_args_record_collect(tmp_path, capsys, monkeypatch):
    path = write(tmp_path / "s.tsv", "name\tlr\tservers\na\t0.1\t2\nb\t0.2\t1\n")
    assert run_cli("count", path) == 0 and capsys.readouterr().out == "2\n"
    assert run_cli("args", path, 1) == 0
    assert capsys.readouterr().out.split("\n") == ["--lr", "0.2", "--servers", "1", ""]
    assert run_cli("args", path, 5) == 2 and "no task 5" in capsys.readouterr().err
    results = tmp_path / "results"
    out = write(tmp_path / "out.txt", '0: {"test_accuracy": 0.5}\n')
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert run_cli("record", results / "task-0000.json", "--started", "--task", 0) == 0
    assert sweep.status_of(json.loads((results / "task-0000.json").read_text()))[0] == "unfinished"
    assert run_cli("record", results / "task-0000.json", "--exit-code", 0, "--stdout", out,
                   "--task", 0, "--sweep", path) == 0
    rec = json.loads((results / "task-0000.json").read_text())
    assert rec["params"] == {"name": "a", "lr": "0.1", "servers": "2"} and rec["name"] == "a"
    assert rec["job_id"] == "42" and rec["restarts"] == 1 and rec["metrics"]["test_accuracy"] == 0.5
    assert run_cli("record", results / "x.json") == 2  # needs --exit-code or --started
    capsys.readouterr()
    assert run_cli("collect", results, "--sweep", path) == 0
    captured = capsys.readouterr()
    assert "1 ok, 1 missing" in captured.err and (results / "results.csv").is_file()
    assert [line.split()[1] for line in captured.out.splitlines()[1:]] == ["ok", "missing"]
    assert run_cli("collect", results, "--sweep", path, "--strict", "--csv", tmp_path / "c") == 1
    assert run_cli("collect", tmp_path / "nowhere") == 2


def test_sweep_module_is_pure():
    assert_works_without_mpi4py("from mpips.cli.sweep import task_args\n"
                                "assert task_args({'lr': 1}) == ['--lr', '1']\n", "mpips.cli.sweep")
