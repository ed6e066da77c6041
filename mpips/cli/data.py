"""``mpips data convert|info``: make and look at mpips data files from the shell (no MPI).

    mpips data convert train.svm train.h5                    # LIBSVM (the default kind)
    mpips data convert u.data u.h5 --kind ratings
    mpips data convert text.cor text.h5 --kind corpus
    mpips data info train.h5 [--verify]

A data file (mpips.ml.csr_file) holds the rows of a text file in HDF5 so that every rank of a
job reads only its own rows; the jobs take it wherever they take the text. Mistakes (a
missing input, a malformed line, an output that exists, a file that is no data file) are one
line ``mpips data: error: ...`` and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import EXIT_USAGE, MpipsError

KIND_HELP = ("what IN holds (default libsvm): libsvm = '<label> <index>:<value> ...' lines; "
             "ratings = 'user item rating [timestamp]' lines; corpus = word2vec text, one "
             "sentence or document per line. The kind is never guessed")


def _convert(args) -> int:
    from ..ml.csr_write import convert

    if os.path.exists(args.out) and not args.overwrite:
        raise FileExistsError(f"{args.out}: exists (add --overwrite to replace it)")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{args.out}: no such directory {folder}")
    done = convert(args.input, args.out, args.kind, overwrite=True, shuffle=args.shuffle)
    print(f"wrote {done.path}: {done.kind}, {done.n_rows:,} rows, {done.n_entries:,} entries, "
          f"{done.n_bytes:,} bytes in {done.seconds:.2f} s")
    return 0


def _info(args) -> int:
    from ..ml.csr_file import open_data

    with open_data(args.file) as data:
        features = "" if data.n_features is None else f", {data.n_features:,} features"
        print(f"{data.path}: mpips data file version {data.version}, kind {data.kind}, "
              f"{data.n_rows:,} rows, {data.n_entries:,} entries{features}, "
              f"{os.path.getsize(data.path):,} bytes")
        if data.description:
            print(f"  {data.description}")
        for d in data.datasets():
            checksum = "fletcher32" if d.fletcher32 else "no checksum"
            print(f"  {d.name:<10} {str(d.shape):<12} {d.dtype:<8} chunks {d.chunks} "
                  f"{checksum}: {d.description}")
        if args.verify:
            n_bytes = data.verify()
            print(f"checksums and rows: ok ({n_bytes:,} bytes read and checked)")
        else:
            print("checksums: not read (add --verify to read and check every chunk and row)")
    return 0


def _guarded(handler):
    def run(args) -> int:
        try:
            return handler(args)
        except (MpipsError, OSError, ValueError) as exc:  # the user's file or option: one line
            print(f"mpips data: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
    return run


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:  # open()'s own errors
        return f"{exc.filename}: {exc.strerror or exc}"
    return " ".join(str(exc).split()) or type(exc).__name__


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``data`` and its subcommands on the ``mpips`` command's subparsers."""
    data = subparsers.add_parser("data", help="convert text training data to HDF5 data files "
                                              "that ranks read by row ranges; describe them",
                                 description="Make and inspect mpips data files (no MPI).")
    sub = data.add_subparsers(dest="data_command", required=True)
    conv = sub.add_parser("convert", help="convert a LIBSVM, ratings or corpus text file",
                          description="Convert IN (text) to OUT (an mpips data file, written "
                                      "to OUT.tmp-<pid> and renamed). Prints one summary "
                                      "line.")
    conv.add_argument("input", metavar="IN", help="text file to convert")
    conv.add_argument("out", metavar="OUT.h5", help="data file to write")
    conv.add_argument("--kind", choices=("libsvm", "ratings", "corpus"), default="libsvm",
                      help=KIND_HELP)
    conv.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    conv.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                      help="libsvm: write the rows in a random order drawn with SEED (for "
                           "files sorted by label, such as w8a, that jobs read in blocks of "
                           "consecutive rows: sparse_lr --assign dynamic). Reads the whole "
                           "text into memory; without it the text is converted in parts")
    conv.set_defaults(handler=_guarded(_convert))
    info = sub.add_parser("info", help="show a data file's kind, rows, entries, features, "
                                       "datasets, chunking and checksums",
                          description="Describe an mpips data file (validated on opening).")
    info.add_argument("file", metavar="FILE.h5", help="an mpips data file")
    info.add_argument("--verify", action="store_true",
                      help="read every chunk (fletcher32 checksums) and check every row")
    info.set_defaults(handler=_guarded(_info))
    return data
