"""Hyper-parameter sweeps as SLURM job arrays (pure: no mpi4py, no SLURM needed).

A sweep file holds one parameter set per task: tab-separated with a header line (``.tsv``, any
suffix but ``.json``/``.jsonl``) or one JSON object per line (``.jsonl``; ``.json``: a list).
Lines that are blank or start with ``#`` are skipped; task ids count parameter sets from 0
(``sbatch --array=0-$((N-1))``). Column ``lr`` becomes ``--lr VALUE`` (``a_b`` -> ``--a-b``);
an empty value, ``-``, ``false``/``no`` (JSON false/null) leaves the option out; ``true``/``yes``
(JSON true) gives a bare flag; ``name`` only labels the task; ``args`` is split like a shell
line and appended as is. Each task writes one JSON record (exit code, the job's last JSON
stdout line as metrics, its parameters); ``collect`` puts them into one table.

    mpips sweep count   slurm/sweep-example.tsv         # N, the number of tasks
    mpips sweep args    slurm/sweep-example.tsv 3       # task 3's job options, one per line
    mpips sweep record  DIR/task-0003.json --exit-code 0 --stdout run.out --task 3
    mpips sweep collect DIR [--csv OUT.csv] [--metrics a,b] [--strict]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

from ..errors import SweepError

#: Metrics shown by ``collect`` unless --metrics says otherwise (those present in a record).
DEFAULT_METRICS = ("test_accuracy", "test_logloss", "test_auc", "seconds", "model_sha256")
#: Columns that are not job options.
LABEL_COLUMN, ARGS_COLUMN = "name", "args"
#: Status of a task in the collected table, best first.
STATUSES = ("ok", "stopped", "unfinished", "failed", "missing")
SWEEP_COPY_NAMES = ("sweep.tsv", "sweep.jsonl", "sweep.json")
RECORD_GLOB = "task-*.json"

_TRUE, _FALSE = ("true", "yes"), ("", "-", "false", "no", "none", "null")



# --------------------------------------------------------------------------- sweep files

def is_json_sweep(path) -> bool:
    return Path(path).suffix.lower() in (".json", ".jsonl")


def read_sweep(path) -> list[dict]:
    """The parameter sets of a sweep file, in order (task id = index)."""
    text = Path(path).read_text()
    if is_json_sweep(path):
        return _read_json_sweep(text, path)
    lines = [line.rstrip("\r\n") for line in text.splitlines()]
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise SweepError(f"{path}: no header line")
    split = (lambda s: s.split("\t")) if "\t" in lines[0] else str.split
    header = [name.strip() for name in split(lines[0])]
    if len(set(header)) != len(header) or not all(header):
        raise SweepError(f"{path}: header needs unique, non-empty column names: {header}")
    sets = []
    for number, line in enumerate(lines[1:], start=1):
        values = [value.strip() for value in split(line)]
        if len(values) > len(header):
            raise SweepError(f"{path}: parameter set {number - 1} has {len(values)} values for "
                             f"{len(header)} columns: {line!r}")
        sets.append(dict(zip(header, values + [""] * (len(header) - len(values)))))
    return sets


def _read_json_sweep(text: str, path) -> list[dict]:
    try:
        if Path(path).suffix.lower() == ".json":
            sets = json.loads(text)
        else:
            sets = [json.loads(line) for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    except json.JSONDecodeError as exc:
        raise SweepError(f"{path}: not JSON: {exc}") from None
    if not isinstance(sets, list) or not all(isinstance(s, dict) for s in sets):
        raise SweepError(f"{path}: need JSON objects, one per parameter set")
    return sets


def parameter_set(path, task: int) -> dict:
    sets = read_sweep(path)
    if not 0 <= task < len(sets):
        raise SweepError(f"{path} has {len(sets)} parameter sets (tasks 0-{len(sets) - 1}); "
                         f"no task {task}")
    return sets[task]


def task_args(params: dict) -> list[str]:
    """A parameter set as job options (see the module docstring for the rules)."""
    argv, extra = [], []
    for column, value in params.items():
        if column == LABEL_COLUMN:
            continue
        if column == ARGS_COLUMN:
            extra = shlex.split(str(value or ""))
            continue
        option = column if column.startswith("-") else "--" + column.replace("_", "-")
        text = "" if value is None else str(value).strip()
        if value is True or text.lower() in _TRUE:
            argv.append(option)
        elif value is not False and text.lower() not in _FALSE:
            argv += [option, text]
    return argv + extra


# --------------------------------------------------------------------------- task records

#: Rank labels launchers put before each output line: Open MPI --tag-output
#: ("[1,0]<stdout>: "), srun --label ("0: ", padded), MPICH Hydra -prepend-rank ("[0] ").
RANK_LABEL = re.compile(r"^(\[\d+,\d+\]<std\w+>: ?|\s*\d+: |\[\d+\] )")
#: At most this many following lines are tried as the rest of a line that a launcher split
#: (srun --label cuts lines of about 1 KiB and labels every piece).
MAX_PIECES = 512


def json_lines(text: str) -> list[dict]:
    """Every JSON object that is a line of ``text`` (after its rank label), in order. A line
    that a launcher split into labelled pieces is joined again: the pieces that follow with
    the same label are appended until the object parses."""
    lines, found, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        start = line.find("{")
        i += 1
        if start < 0:
            continue
        label = RANK_LABEL.match(line)
        label = label.group(0) if label and label.end() <= start else ""
        candidate, used = line[start:], i
        for _ in range(MAX_PIECES + 1):
            value = _json_object(candidate)
            if value is not None:
                found.append(value)
                i = used
                break
            used = _next_with_label(lines, used, label)
            if used is None:
                break
            candidate += lines[used][len(label):]
            used += 1
    return found


def _json_object(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _next_with_label(lines: list[str], start: int, label: str) -> int | None:
    """Index of the next line from ``start`` carrying ``label`` (a continuation of a split
    line); None without a label (nothing says a line was split) or when there is none."""
    if not label:
        return None
    for j in range(start, min(len(lines), start + MAX_PIECES)):
        match = RANK_LABEL.match(lines[j])
        if match and match.group(0) == label:
            return j
    return None


def last_json(text: str) -> dict | None:
    """The last JSON object line of ``text`` (see :func:`json_lines`), or None."""
    objects = json_lines(text)
    return objects[-1] if objects else None


def make_record(*, task, exit_code: int | None, stdout: str = "", params: dict | None = None,
                env: dict | None = None) -> dict:
    """A task's record. ``exit_code`` None means started, not finished; ``env`` (SLURM_*
    variables) says which job ran it."""
    env = env or {}
    metrics = last_json(stdout) if exit_code is not None else None
    return {"task": task, "exit_code": exit_code, "metrics": metrics,
            "params": params, "name": (params or {}).get(LABEL_COLUMN),
            "job_id": env.get("SLURM_JOB_ID"), "array_job_id": env.get("SLURM_ARRAY_JOB_ID"),
            "restarts": int(env.get("SLURM_RESTART_COUNT") or 0),
            "nodes": env.get("SLURM_JOB_NODELIST"),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_record(path, record: dict) -> None:
    """Write ``record`` as JSON, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def status_of(record: dict | None) -> tuple[str, str]:
    """(status, note) of a task from its record (None: no record)."""
    if record is None:
        return "missing", "no record"
    code, metrics = record.get("exit_code"), record.get("metrics")
    if code is None:
        return "unfinished", "started, no exit code (running, or killed)"
    if code != 0:
        return "failed", f"exit code {code}"
    if not isinstance(metrics, dict):
        return "failed", "no metrics line"
    if "stopped_at_step" in metrics:
        return "stopped", f"checkpointed at step {metrics['stopped_at_step']}"
    return "ok", ""


# --------------------------------------------------------------------------- collecting

def load_records(directory) -> dict:
    """Task id (int, or the file's stem) -> record, for every task-*.json in ``directory``.
    An unreadable record counts as a failed task."""
    records = {}
    for path in sorted(Path(directory).glob(RECORD_GLOB)):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            record = {"task": None, "exit_code": -1, "metrics": None, "error": str(exc)}
        task = record.get("task")
        records[path.stem if task is None else int(task)] = record
    return records


def find_sweep_copy(directory) -> Path | None:
    for name in SWEEP_COPY_NAMES:
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    return None


def collect(directory, sweep=None, metrics=None) -> tuple[list[str], list[dict]]:
    """(columns, rows) of the sweep's table: task, status, exit code, the parameters, the
    metrics, a note. Tasks of the sweep file (``sweep``, else DIR/sweep.tsv|jsonl|json)
    without a record are "missing"."""
    records = load_records(directory)
    sweep = sweep or find_sweep_copy(directory)
    sets = read_sweep(sweep) if sweep else []
    tasks = sorted(set(range(len(sets))) | set(records), key=lambda t: (isinstance(t, str), t))
    params = {t: (records.get(t) or {}).get("params") or (sets[t] if isinstance(t, int) and
                                                            t < len(sets) else {})
              for t in tasks}
    param_columns = list(dict.fromkeys(k for t in tasks for k in params[t]))
    found = [r.get("metrics") or {} for r in records.values()]
    wanted = list(metrics) if metrics else [m for m in DEFAULT_METRICS
                                            if any(m in f for f in found)]
    columns = ["task", "status", "exit", *param_columns, *wanted, "note"]
    rows = []
    for task in tasks:
        record = records.get(task)
        status, note = status_of(record)
        code = None if record is None else record.get("exit_code")
        values = (record or {}).get("metrics") or {}
        row = {"task": task, "status": status, "exit": "" if code is None else code,
               **{k: params[task].get(k, "") for k in param_columns},
               **{m: values.get(m, "") for m in wanted}, "note": note}
        rows.append(row)
    return columns, rows


def _cell(value, short: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}" if short else repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    text = str(value)
    if short and len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12]  # a sha256
    return text


def format_table(columns: list[str], rows: list[dict]) -> str:
    """An aligned text table (numbers shortened, sha256 digests cut to 12 characters)."""
    cells = [columns] + [[_cell(row.get(c), True) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(text.ljust(w) for text, w in zip(line, widths)).rstrip()
                     for line in cells)


def write_csv(path, columns: list[str], rows: list[dict]) -> None:
    """The table as CSV, full precision, written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([_cell(row.get(c), False) for c in columns] for row in rows)
    os.replace(tmp, path)


def summary(rows: list[dict]) -> str:
    counts = {s: sum(row["status"] == s for row in rows) for s in STATUSES}
    return f"{len(rows)} tasks: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)


# --------------------------------------------------------------------------- command line

def _count(args) -> int:
    print(len(read_sweep(args.sweep)))
    return 0


def _args(args) -> int:
    for word in task_args(parameter_set(args.sweep, args.task)):
        if "\n" in word:
            raise SweepError(f"task {args.task}: an option value holds a newline: {word!r}")
        print(word)
    return 0


def _record(args) -> int:
    if args.exit_code is None and not args.started:
        raise SweepError("record needs --exit-code CODE (or --started)")
    params = parameter_set(args.sweep, args.task) if args.sweep and args.task is not None \
        else None
    stdout = "" if args.started or not args.stdout else \
        Path(args.stdout).read_text(errors="replace")
    env = {k: v for k, v in os.environ.items() if k.startswith("SLURM_")}
    write_record(args.out, make_record(task=args.task, exit_code=None if args.started else
                                       args.exit_code, stdout=stdout, params=params, env=env))
    return 0


def _collect(args) -> int:
    if not Path(args.dir).is_dir():
        raise SweepError(f"{args.dir}: no such directory")
    metrics = [m for m in args.metrics.split(",") if m] if args.metrics else None
    columns, rows = collect(args.dir, args.sweep, metrics)
    out = Path(args.csv) if args.csv else Path(args.dir) / "results.csv"
    write_csv(out, columns, rows)
    print(format_table(columns, rows))
    print(f"{summary(rows)}; wrote {out}", file=sys.stderr)
    return 1 if args.strict and any(row["status"] != "ok" for row in rows) else 0


def _guarded(handler):
    def run(args) -> int:
        try:
            return handler(args)
        except (SweepError, OSError) as exc:
            print(f"mpips sweep: error: {exc}", file=sys.stderr)
            return 2
    return run


def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sweep`` and its subcommands on the ``mpips`` command's subparsers."""
    sweep = subparsers.add_parser("sweep", help="hyper-parameter sweeps as job arrays: task "
                                                "options, task records, the results table",
                                  description=__doc__.split("\n\n")[0])
    sub = sweep.add_subparsers(dest="sweep_command", required=True)
    count = sub.add_parser("count", help="print the number of tasks (parameter sets)")
    count.add_argument("sweep", metavar="SWEEP", help="sweep file (.tsv with header, .jsonl)")
    count.set_defaults(handler=_guarded(_count))
    opts = sub.add_parser("args", help="print task TASK's job options, one per line")
    opts.add_argument("sweep", metavar="SWEEP", help="sweep file")
    opts.add_argument("task", metavar="TASK", type=int, help="task id (0-based)")
    opts.set_defaults(handler=_guarded(_args))
    rec = sub.add_parser("record", help="write a task's JSON record (exit code, metrics)")
    rec.add_argument("out", metavar="OUT.json", help="record file (replaced atomically)")
    rec.add_argument("--exit-code", type=int, default=None, help="the job's exit code")
    rec.add_argument("--stdout", metavar="FILE", help="the job's stdout: its last JSON line "
                                                      "is the metrics")
    rec.add_argument("--task", type=int, default=None, help="task id")
    rec.add_argument("--sweep", metavar="SWEEP", help="sweep file: record the task's parameters")
    rec.add_argument("--started", action="store_true",
                     help="record that the task started (no exit code yet)")
    rec.set_defaults(handler=_guarded(_record))
    col = sub.add_parser("collect", help="one table of every task's metrics: prints it, "
                                         "writes CSV; marks failed and missing tasks")
    col.add_argument("dir", metavar="DIR", help="directory of task-*.json records")
    col.add_argument("--sweep", metavar="SWEEP", help="sweep file (default: DIR/sweep.tsv, "
                                                      ".jsonl or .json): tasks without a record "
                                                      "are missing")
    col.add_argument("--csv", metavar="OUT", help="CSV file (default DIR/results.csv)")
    col.add_argument("--metrics", metavar="A,B", help="metric columns (default: "
                                                       + ",".join(DEFAULT_METRICS) + ")")
    col.add_argument("--strict", action="store_true", help="exit 1 unless every task is ok")
    col.set_defaults(handler=_guarded(_collect))
    return sweep
