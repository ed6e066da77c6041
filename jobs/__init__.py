"""Example jobs, installed as ``mpips.jobs``: run one with ``mpips run NAME`` on every rank.

A job module defines ``add_arguments(parser)`` and ``main(ps, args)``; see mpips/cli/main.py.
"""
