#!/usr/bin/env python
"""Segment every expression of a queries file in many videos, with the models loaded once.

The command line of ``aamn.cli.infer``: ``python -m aamn.cli.infer``
runs the same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.infer import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.infer import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
