#!/usr/bin/env python
"""What the training levers give, measured in one run.

The command line of ``aamn.cli.benchmark_training``: ``python -m aamn.cli.benchmark_training``
runs the same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.benchmark_training import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.benchmark_training import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(lambda argv: 0 if main(argv) else 1))
