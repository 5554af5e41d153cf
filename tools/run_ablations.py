#!/usr/bin/env python
"""Train and evaluate every row of one of the paper's ablation tables (or a chosen subset).

The command line of ``aamn.cli.run_ablations``: ``python -m aamn.cli.run_ablations``
runs the same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.run_ablations import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.run_ablations import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
