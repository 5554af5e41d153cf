#!/usr/bin/env python
"""Time the model of a config (AAMN or a comparison system) on synthetic random clips.

The command line of ``aamn.cli.benchmark_model``: ``python -m aamn.cli.benchmark_model``
runs the same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.benchmark_model import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.benchmark_model import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
