"""A job that creates a table and does one push: the smallest thing `mpips run` can run."""
import numpy as np


def add_arguments(parser):
    parser.add_argument("--keys", type=int, default=10)


def main(ps, args):
    table = ps.dense_table("t", args.keys)
    ps.run(lambda kv: kv.wait(kv.push(table, np.arange(args.keys), np.ones(args.keys))))
