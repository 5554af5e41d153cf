#!/usr/bin/env python
"""Draw a model's masks (and AAMN's selected tubes) on data-set samples.

The command line of ``aamn.cli.visualize``: ``python -m aamn.cli.visualize`` runs the
same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.visualize import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.visualize import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
