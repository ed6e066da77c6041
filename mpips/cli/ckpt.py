"""``mpips ckpt ls|inspect|verify|export``: look at checkpoints from the shell (no MPI).

    mpips ckpt ls ROOT                      # every step directory, valid or not and why
    mpips ckpt inspect ROOT/step-000000000100
    mpips ckpt verify ROOT/step-000000000100   # exit 0 ok, 1 with the problems on stderr
    mpips ckpt export ROOT/step-000000000100 w w.npz
    mpips ckpt export ROOT/step-000000000100 w changes.npz --since 90   # rows changed since

An incremental checkpoint (a delta) is listed with the step it builds on and its chain's full
checkpoint, verified with its whole chain, and read (exported) as the model it saved.

A path that is no checkpoint at all (missing, a file, a checkpoint root) is a one-line
error with exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..errors import EXIT_USAGE, MpipsError, UsageError

LEVEL_HELP = ("quick: manifest, attributes, sizes; sha256: plus every shard's sha256; "
              "full: plus every dataset read (fletcher32 chunk checksums)")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _ls(args) -> int:
    from pathlib import Path

    from ..ckpt import list_checkpoints

    if not Path(args.root).is_dir():
        raise UsageError(f"{args.root}: no such directory")
    infos = list_checkpoints(args.root, level=args.level)
    print(f"{'STEP':>12}  {'SERVERS':>7}  {'SIZE':>10}  {'TABLES':<24}  {'KIND':<24}  STATUS")
    for info in infos:
        servers = "-" if info.num_servers is None else str(info.num_servers)
        tables = ",".join(sorted(info.tables)) or "-"
        status = "valid" if info.valid else f"INVALID ({info.reason})"
        kind = "-" if info.num_servers is None else info.kind if info.parent is None else \
            f"delta of {info.parent}, base {info.base}"
        print(f"{info.step:>12}  {servers:>7}  {_size(info.nbytes):>10}  {tables:<24}  "
              f"{kind:<24}  {status}")
    if not infos:
        print(f"(no step-* directories under {args.root})")
    return 0


def _inspect(args) -> int:
    from ..ckpt import chain_of, load_manifest
    from ..ckpt.verify import open_shard

    manifest = load_manifest(args.dir)
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(manifest.created))
    print(f"checkpoint {manifest.directory}\n  step {manifest.step}, format version "
          f"{manifest.version}, {manifest.num_servers} server(s), {_size(manifest.total_bytes)}, "
          f"created {created}")
    print(f"  run: {manifest.run or '-'}; job: {json.dumps(manifest.job, sort_keys=True)}")
    if manifest.delta:
        chain = " <- ".join(str(m.step) for m in chain_of(manifest))
        print(f"  incremental: the rows changed since step {manifest.parent['step']} "
              f"(depth {manifest.depth} of the chain {chain}; full checkpoint: step "
              f"{manifest.base})")
    else:
        print("  full: every row")
    for name, meta in sorted(manifest.tables.items()):
        print(f"table {name!r}: {meta.kind}, size {meta.size}, width {meta.width}, rule "
              f"{meta.rule} {json.dumps(meta.rule_params)}, init {meta.init}, id {meta.table_id}, "
              f"state {list(meta.state_names)}, placement {meta.placement}")
        what = "hashed positions" if meta.hashed else "keys"
        for shard in manifest.shards:
            rng = shard.ranges[name]
            with open_shard(manifest, shard) as f:
                group = f[f"tables/{name}"]
                shapes = []
                group.visititems(lambda n, o: shapes.append(_describe(n, o)) if hasattr(o, "shape")
                                 else None)
            rows = f"{rng.rows} rows" if rng.removed is None else \
                f"{rng.rows} rows changed, {rng.removed} keys removed"
            print(f"  {shard.file}: {what} {rng.key_range}, {rows}; {'; '.join(shapes)}")
    return 0


def _describe(name: str, dset) -> str:
    filters = ["fletcher32"] if dset.fletcher32 else []
    filters += [dset.compression] if dset.compression else []
    return f"{name} {dset.shape} {dset.dtype} chunks {dset.chunks} {'+'.join(filters)}"


def _verify(args) -> int:
    from ..ckpt import verify

    report = verify(args.dir, level=args.level)
    if report.errors and isinstance(report.errors[0], UsageError):
        raise report.errors[0]  # not a checkpoint at all: say what it is
    if not args.quiet:
        for line in report.checked:
            print(f"ok: {line}")
    if report.ok:
        print(f"OK: {report.directory} verified at level {args.level} "
              f"({_size(report.bytes_read)} read)")
        return 0
    for error in report.errors:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
    print(f"FAILED: {report.directory}: {len(report.errors)} problem(s)", file=sys.stderr)
    return 1


def _export(args) -> int:
    from ..ckpt import export_npz, load_manifest
    from ..core.partition import KeyRange

    meta = load_manifest(args.dir).table(args.table)
    end = meta.size if args.end is None else args.end
    path = export_npz(args.dir, args.table, args.out, KeyRange(args.begin, end),
                      since=args.since)
    if args.since is None:
        print(f"wrote {path}: table {args.table!r} keys [{args.begin}, {end})")
    else:
        import numpy as np

        with np.load(path) as data:
            rows, removed = data["keys"].size, data["removed"].size
        print(f"wrote {path}: table {args.table!r} keys [{args.begin}, {end}) changed since "
              f"step {args.since}: {rows} rows, {removed} keys removed")
    return 0


def _guarded(handler):
    def run(args) -> int:
        try:
            return handler(args)
        except UsageError as exc:  # the user named the wrong thing: one line, exit 2
            print(f"mpips ckpt {args.ckpt_command}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (MpipsError, ValueError) as exc:
            print(f"mpips ckpt {args.ckpt_command}: error: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return 1
    return run


def add_ckpt_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``ckpt`` and its subcommands on the ``mpips`` command's subparsers."""
    ckpt = subparsers.add_parser("ckpt", help="list, inspect, verify or export HDF5 checkpoints",
                                 description="Inspect durable checkpoints (no MPI needed).")
    sub = ckpt.add_subparsers(dest="ckpt_command", required=True)
    ls = sub.add_parser("ls", help="list the checkpoints under ROOT, valid or not and why",
                        description="List step-* directories: step, servers, size, tables, "
                                    "valid/INVALID with the reason.")
    ls.add_argument("root", metavar="ROOT", help="directory holding step-* checkpoint directories")
    ls.add_argument("--level", choices=("quick", "sha256", "full"), default="quick", help=LEVEL_HELP)
    ls.set_defaults(handler=_guarded(_ls))
    ins = sub.add_parser("inspect", help="show a checkpoint's step, tables, rules, key ranges, "
                                         "dataset shapes", description="Describe one checkpoint.")
    ins.add_argument("dir", metavar="DIR", help="a checkpoint directory (ROOT/step-N)")
    ins.set_defaults(handler=_guarded(_inspect))
    ver = sub.add_parser("verify", help="verify checksums; exit 0 if intact, 1 with the problems",
                         description="Check manifest, shards, attributes and checksums.")
    ver.add_argument("dir", metavar="DIR", help="a checkpoint directory (ROOT/step-N)")
    ver.add_argument("--level", choices=("quick", "sha256", "full"), default="full", help=LEVEL_HELP)
    ver.add_argument("-q", "--quiet", action="store_true", help="print only the verdict")
    ver.set_defaults(handler=_guarded(_verify))
    exp = sub.add_parser("export", help="write one table (keys, values, state) to an .npz file",
                         description="Export TABLE as OUT.npz: keys, values, state_<name>, meta "
                                     "(with --since: only changed rows, and removed).")
    exp.add_argument("dir", metavar="DIR", help="a checkpoint directory (ROOT/step-N)")
    exp.add_argument("table", metavar="TABLE", help="table name")
    exp.add_argument("out", metavar="OUT.npz", help="output file (replaced atomically)")
    exp.add_argument("--begin", type=int, default=0, help="first key to export (default 0)")
    exp.add_argument("--end", type=int, default=None, help="key past the last one (default: size)")
    exp.add_argument("--since", type=int, default=None, metavar="STEP",
                     help="only the rows changed since checkpoint STEP of DIR's chain of "
                          "incremental checkpoints (and, as 'removed', the keys removed since)")
    exp.set_defaults(handler=_guarded(_export))
    return ckpt
